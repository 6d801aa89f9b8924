"""The DL/T 645 drivers: meters on an RS-485 line or behind a serial device server.

:class:`Dlt645Driver` holds everything but the line: the request plan (one read per
meter and data identifier, :mod:`.planner`), decoding the answers (:mod:`.codec`),
retries, writes, the meter's address for ``auto``, and errors as qualities.
:class:`Dlt645SerialDriver` claims its port in the runtime's
:class:`~gateway.serial_ports.SerialPorts` (the meters of one line share it);
:class:`Dlt645TcpDriver` opens its own TCP connection to the serial device server.

``connect`` succeeds once a meter answered (a read, or for ``meter_address: auto`` the
address read with the broadcast address), so a meter that is not there is reported
down with the reason instead of flapping. While connected, a timeout, a garbled answer
(wrong checksum, garbage), an answer that does not decode (wrong length, not BCD) or an
exception frame makes the tags of that one request BAD and counts the error;
:data:`MAX_SILENT_REQUESTS` requests in a row without any answer raise
:class:`ConnectionLost` (the runner reconnects with backoff; the others on the line
go on).

Counters in ``driver.errors``: ``timeout``, ``garbled``, ``decode``, ``unknown_di``
(the meter says it has no such data identifier), ``meter_error`` (any other exception
frame), ``bytes_discarded``, ``other_meter`` (answers of another address),
``connection_lost``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from drivers.base import Driver, PollGroup
from drivers.dlt645.codec import (
    BROADCAST,
    NO_DATA_BIT,
    READ,
    REPLY,
    WRITE,
    Format,
    Frame,
    Version,
    decode_integer,
    decode_value,
    describe_error,
    di_bytes,
    encode_number,
    parse_read_answer,
    read_address_request,
    read_request,
    write_request,
)
from drivers.dlt645.config import (
    AUTO,
    Dlt645DeviceConfig,
    Dlt645SerialDeviceConfig,
    Dlt645TagConfig,
    Dlt645TcpDeviceConfig,
)
from drivers.dlt645.link import Exchange, Line, SerialLine, TcpLine
from drivers.dlt645.planner import ReadRequest, TagSpec, plan_requests
from drivers.dlt645.table import table
from gateway.errors import (
    ConfigError,
    ConnectionLost,
    DeviceUnreachable,
    DeviceWriteRefused,
    Dlt645FrameError,
    RequestFailed,
)
from gateway.serial_ports import PortLease, PortUse, SerialPorts
from gateway.types import DataType, Quality, SampleBatch

log = logging.getLogger(__name__)

#: requests in a row without any answer after which the line is presumed dead
MAX_SILENT_REQUESTS = 3
#: the identifier a DL/T 645-1997 meter is asked for when its address is read (meter number)
_ADDRESS_DI_1997 = "C032"
#: failures worth sending the request again
_RETRYABLE = frozenset({"timeout", "garbled"})


@dataclass(frozen=True, slots=True)
class _Plan:
    requests: tuple[ReadRequest, ...]
    tag_ids: npt.NDArray[np.int32]  # batch order: request by request
    has_objects: bool
    #: per batch position: decode as an exact int (integer-typed tag)
    integer: tuple[bool, ...]
    #: per request: its frame and the identifier bytes its answer repeats, built once
    frames: tuple[tuple[bytes, bytes], ...]
    #: per request: (batch position, first and end byte in the answer's data, format,
    #: decode as an exact int) of each member
    decodes: tuple[tuple[tuple[int, int, int, Format, bool], ...], ...] = ()


class Dlt645Driver(Driver):
    """One DL/T 645 device (one meter, or several named by their tags), whatever the line."""

    config: Dlt645DeviceConfig

    def __init__(self, config: Dlt645DeviceConfig, tag_ids: Sequence[int]) -> None:
        super().__init__(config.name, tag_ids, len(config.tags))
        self.config = config
        self.version: Version = config.version
        #: the control code of a normal answer to a read (no exception, nothing to follow)
        self._read_reply = READ[config.version] | REPLY
        self._tags: dict[int, Dlt645TagConfig] = dict(zip(self.tag_ids, config.tags, strict=True))
        self._group = PollGroup("default", config.poll_interval, self.tag_ids)
        #: the meter address of ``auto`` once read (the configured one otherwise)
        self.meter_address: str | None = None if config.meter_address == AUTO \
            else config.meter_address
        self._plan: _Plan | None = None
        self._line: Line | None = None
        self._silent = 0
        self._silent_meters: set[str] = set()
        self._last_sent = 0
        #: (meter, block identifier) the meter refused: read one identifier at a time
        self._single_blocks: set[tuple[str, str]] = set()
        self._failing: dict[tuple[str, str], str] = {}
        #: requests sent (reads with their retries, address reads, writes)
        self.requests = 0
        if self.meter_address is not None:
            self._plan = self._make_plan(self.meter_address)

    # -- description ------------------------------------------------------------------
    async def identity(self) -> str | None:
        """What ``check`` reports of the device: the meter address (read for ``auto``)."""
        if self.meter_address is None:
            return None
        meters = sorted({self.config.meter_of(t) for t in self.config.tags} - {AUTO}
                        | {self.meter_address})
        return f"meter address {', '.join(meters)} (DL/T 645-{self.version})"

    @property
    def planned(self) -> tuple[ReadRequest, ...]:
        """The read requests of one poll (empty until an ``auto`` address was read)."""
        return self._plan.requests if self._plan is not None else ()

    # -- connection -------------------------------------------------------------------
    async def _open(self) -> Line:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError

    @property
    def where(self) -> str:
        raise NotImplementedError

    async def connect(self) -> None:
        await self.close()
        line = await self._open()
        self._line = line
        self._answered()
        try:
            await self._first_answer(line)
        except ConnectionLost as exc:  # the line broke before a meter answered
            await self.close()
            raise DeviceUnreachable(str(exc)) from None
        except BaseException:
            await self.close()
            raise
        log.info("%s: connected to meter %s on %s", self.device_name, self.meter_address,
                 self.where)

    async def _first_answer(self, line: Line) -> None:
        """Wait for one answer, so that "up" means a meter talks sense."""
        cfg = self.config
        if cfg.meter_address == AUTO:
            address = await self.read_meter_address()
            if self.meter_address != address:
                self.meter_address = address
                self._plan = self._make_plan(address)
            return
        assert self._plan is not None
        tried: list[str] = []
        frames = dict(zip(self._plan.requests, self._plan.frames, strict=True))
        for request in self._first_per_meter():
            try:
                await self._read_with_retries(request, frames[request])
                return
            except RequestFailed as failure:
                if failure.counter not in _RETRYABLE:
                    return  # an exception frame: the meter is there
                tried.append(failure.reason)
        raise DeviceUnreachable(f"{self.where}: " + "; ".join(tried))

    def _first_per_meter(self) -> list[ReadRequest]:
        seen: dict[str, ReadRequest] = {}
        for request in self.planned:
            seen.setdefault(request.meter, request)
        return list(seen.values())

    async def read_meter_address(self) -> str:
        """The address of the lone meter on the line (broadcast address; 2007: "read
        communication address", 1997: a read of the meter number). Raise
        :class:`DeviceUnreachable` when no meter answers it."""
        line = self._line
        if line is None:
            raise DeviceUnreachable(f"{self.where}: not connected")
        if self.version == 2007:
            request = read_address_request(self.config.preamble)
        else:
            request = read_request(BROADCAST, _ADDRESS_DI_1997, 1997, self.config.preamble)
        reasons = []
        for _ in range(self.config.retries + 1):
            self.requests += 1
            exchange = await line.exchange(request, None, self.config.timeout)
            self._count_line(exchange)
            frame = exchange.frame
            if frame is not None and frame.is_reply and not frame.is_error:
                return frame.address
            reasons.append(self._no_answer(exchange, "the meter address (broadcast)").reason
                           if frame is None else f"exception answer to the address read "
                           f"({describe_error(frame.data[0] if frame.data else 0, self.version)})")
        raise DeviceUnreachable(f"{self.where}: {reasons[-1]}; a lone meter on the line answers "
                                "the broadcast address (with several, give each one's address)")

    async def close(self) -> None:
        line, self._line = self._line, None
        if line is None:
            return
        try:
            self._release()
        except Exception:  # close must not raise (Driver contract)
            log.exception("%s: error while closing", self.device_name)

    # -- reading ----------------------------------------------------------------------
    def poll_groups(self) -> Sequence[PollGroup]:
        return (self._group,)

    async def read(self, group: PollGroup) -> SampleBatch:
        plan = self._plan
        if self._line is None or plan is None:
            raise ConnectionLost(f"{self.device_name}: not connected")
        n = len(plan.tag_ids)
        values = np.empty(n, dtype=object if plan.has_objects else np.float64)
        ts_ns = np.empty(n, dtype=np.int64)
        quality = np.zeros(n, dtype=np.uint8)  # Quality.GOOD (np.full with the enum is slow)
        bad_value = None if plan.has_objects else np.nan
        pos = 0
        refused: list[ReadRequest] = []
        for request, frame, decodes in zip(plan.requests, plan.frames, plan.decodes,
                                           strict=True):
            span = slice(pos, pos + len(request.members))
            pos = span.stop
            try:
                sent, data = await self._read_with_retries(request, frame)
                for i, first, end, fmt, integer in decodes:
                    raw = data[first:end]
                    values[i] = decode_integer(raw, fmt) if integer else decode_value(raw, fmt)
            except RequestFailed as failure:
                sent = self._last_sent
                values[span] = bad_value
                quality[span] = Quality.BAD
                self._note_failure(request, failure)
                if request.block and failure.counter == "unknown_di":
                    refused.append(request)
            except Dlt645FrameError as exc:
                values[span] = bad_value
                quality[span] = Quality.BAD
                self._note_failure(request, RequestFailed("decode", f"{request.describe()}: {exc}"))
            else:
                self._note_success(request)
            ts_ns[span] = sent
        if refused:
            self._read_singly(refused)
        return SampleBatch(plan.tag_ids.copy(), values, ts_ns, quality)

    def _read_singly(self, refused: list[ReadRequest]) -> None:
        """The meter has no such block: read its identifiers one by one from the next poll."""
        for request in refused:
            self._single_blocks.add((request.meter, request.di))
            log.warning("%s: meter %s does not answer block %s; its identifiers are read one "
                        "at a time", self.device_name, request.meter, request.di)
        if self.meter_address is not None:
            self._plan = self._make_plan(self.meter_address)

    async def _read_with_retries(self, request: ReadRequest,
                                 frame: tuple[bytes, bytes]) -> tuple[int, bytes]:
        attempts = self.config.retries + 1
        for attempt in range(attempts):
            try:
                return await self._request(request, frame)
            except RequestFailed as failure:
                if attempt == attempts - 1 or failure.counter not in _RETRYABLE:
                    raise
                self.errors[failure.counter] += 1
                log.debug("%s: %s; retrying", self.device_name, failure.reason)
        raise AssertionError("unreachable")

    async def _request(self, request: ReadRequest,
                       frame: tuple[bytes, bytes]) -> tuple[int, bytes]:
        """One read of ``request`` (``frame``: its bytes and the identifier's): (when it
        left, the value bytes)."""
        line = self._line
        if line is None:
            raise ConnectionLost(f"{self.device_name}: not connected")
        self.requests += 1
        frame_bytes, prefix = frame
        try:
            exchange = await line.exchange(frame_bytes, request.meter, self.config.timeout,
                                           prefix)
        except ConnectionLost:
            self.errors["connection_lost"] += 1
            raise
        self._last_sent = exchange.sent_ns
        if exchange.discarded or exchange.foreign:
            self._count_line(exchange)
        answered = exchange.frame
        if answered is None:
            failure = self._no_answer(exchange, request.describe())
            if failure.counter == "timeout":
                await self._timed_out(request.meter, failure.reason)
            else:
                self._answered()
            raise failure
        if self._silent or self._silent_meters:
            self._answered()
        data = answered.data
        if (answered.control == self._read_reply and data.startswith(prefix)
                and (request.record is None or len(data) - len(prefix) == request.record)
                and len(data) - len(prefix) >= request.need):
            # the usual answer: a normal reply to this read (no exception, nothing more to
            # follow), of this identifier, as long as it must be: what the full parse takes
            return exchange.sent_ns, data[len(prefix):]
        what = request.describe()
        try:
            answer = parse_read_answer(answered, request.di, self.version)
        except Dlt645FrameError as exc:
            raise RequestFailed("decode", f"{what}: {exc}") from None
        if answer.error is not None:
            words = describe_error(answer.error, self.version)
            if answer.error >> NO_DATA_BIT & 1:
                raise RequestFailed("unknown_di", f"{what}: the meter does not have it ({words})")
            raise RequestFailed("meter_error", f"{what}: exception answer ({words})")
        record = request.record
        if record is not None and len(answer.data) != record:
            raise RequestFailed("decode", f"{what}: answer has {len(answer.data)} data bytes, "
                              f"the identifier has {record}")
        if len(answer.data) < request.need:
            raise RequestFailed("decode", f"{what}: answer has {len(answer.data)} data bytes, "
                              f"the tags need {request.need}")
        return exchange.sent_ns, answer.data

    def _no_answer(self, exchange: Exchange, what: str) -> RequestFailed:
        """Why ``exchange`` brought no answer: garbled bytes, or nothing (a timeout)."""
        if exchange.rejected:
            return RequestFailed("garbled", f"{what}: garbled answer ({exchange.rejection})")
        if exchange.discarded or exchange.pending:
            return RequestFailed("garbled", f"{what}: garbled answer ({exchange.received} bytes, "
                               "no whole frame; check baud rate and parity)")
        if exchange.foreign:
            return RequestFailed("timeout", f"{what}: no answer within {self.config.timeout:g} s "
                               "(only answers of other meters: two meters with one address?)")
        return RequestFailed("timeout", f"{what}: no answer within {self.config.timeout:g} s")

    def _count_line(self, exchange: Exchange) -> None:
        if exchange.discarded:
            self.errors["bytes_discarded"] += exchange.discarded
        if exchange.foreign:
            self.errors["other_meter"] += exchange.foreign

    def _answered(self) -> None:
        self._silent = 0
        self._silent_meters.clear()

    async def _timed_out(self, meter: str, reason: str) -> None:
        """Count a silent request; raise :class:`ConnectionLost` after
        :data:`MAX_SILENT_REQUESTS` in a row from every meter of the device (one meter of
        several that is silent only makes its own tags BAD)."""
        self._silent += 1
        self._silent_meters.add(meter)
        meters = {r.meter for r in self.planned}
        if self._silent < MAX_SILENT_REQUESTS or not meters <= self._silent_meters:
            return
        self.errors["timeout"] += 1
        self.errors["connection_lost"] += 1
        silent = self._silent
        self._answered()
        await self.close()
        raise ConnectionLost(f"{self.device_name}: {reason}; {silent} requests in a row got no "
                             "answer: the meter is presumed gone")

    def _note_failure(self, request: ReadRequest, failure: RequestFailed) -> None:
        self.errors[failure.counter] += 1
        key = (request.meter, request.di)
        if self._failing.get(key) != failure.counter:
            log.warning("%s: %s; its tags are BAD", self.device_name, failure.reason)
        else:
            log.debug("%s: %s", self.device_name, failure.reason)
        self._failing[key] = failure.counter

    def _note_success(self, request: ReadRequest) -> None:
        if not self._failing:
            return
        key = (request.meter, request.di)
        if self._failing.pop(key, None) is not None:
            log.info("%s: %s answers again", self.device_name, request.describe())

    # -- writing ----------------------------------------------------------------------
    async def write(self, tag_id: int, value: float | bool | str) -> None:
        tag = self._tags.get(tag_id)
        if tag is None:
            raise DeviceWriteRefused(f"tag id {tag_id} is not a tag of device {self.device_name!r}")
        ident = tag.identifier
        if not tag.writable:
            raise DeviceWriteRefused(f"{tag.name}: not writable")
        if isinstance(value, str):
            raise DeviceWriteRefused(f"{tag.name}: expects a number, got the text {value!r}")
        if ident.offset or (ident.record is not None and ident.record != ident.end):
            raise DeviceWriteRefused(
                f"{tag.name}: a value inside a longer record cannot be written")
        try:
            data = encode_number(value, ident.format)
        except Dlt645FrameError as exc:
            raise DeviceWriteRefused(f"{tag.name}: {exc}") from None
        password, operator = self._credentials()
        line = self._line
        meter = self.config.meter_of(tag) if tag.meter_address else self.meter_address
        if line is None or meter is None:
            raise ConnectionLost(f"{self.device_name}: not connected")
        request = write_request(meter, ident.di, self.version, data, password, operator,
                                self.config.preamble)
        what = f"write {tag.name} (meter {meter} DI {ident.di})"
        self.requests += 1
        try:
            exchange = await line.exchange(request, meter, self.config.timeout)
        except ConnectionLost:
            self.errors["connection_lost"] += 1
            raise
        self._count_line(exchange)
        frame = exchange.frame
        if frame is None:
            failure = self._no_answer(exchange, what)
            self.errors[failure.counter] += 1
            raise DeviceWriteRefused(
                f"{failure.reason}; the value may or may not have been written")
        self._check_write_answer(frame, what)
        log.info("%s: wrote %r to %s", self.device_name, value, tag.name)

    def _check_write_answer(self, frame: Frame, what: str) -> None:
        expected = WRITE[self.version]
        if frame.function != expected:
            self.errors["decode"] += 1
            raise DeviceWriteRefused(f"{what}: answer has control code {frame.control:02X}, not "
                                f"{expected | REPLY:02X}")
        if frame.is_error:
            self.errors["meter_error"] += 1
            error = frame.data[0] if frame.data else 0
            words = describe_error(error, self.version)
            raise DeviceWriteRefused(f"{what}: the meter refused ({words})")

    def _credentials(self) -> tuple[bytes, bytes]:
        """(PA P0 P1 P2, C0 C1 C2 C3) of the config's password and operator code."""
        from gateway.config.secrets import resolve_secret

        ref = self.config.password
        if ref is None:
            raise DeviceWriteRefused("writes need the meter's password (device key 'password')")
        try:
            secret = resolve_secret(ref).strip()
        except ConfigError as exc:
            raise DeviceWriteRefused(f"the meter's password: {exc.problems[0].message}") from None
        if len(secret) != 8 or not secret.isdigit():
            raise DeviceWriteRefused(f"the meter's password ({ref.describe()}) is not 8 digits "
                                "(level and password, e.g. 02123456)")
        password = bytes([int(secret[:2], 16)]) + bytes.fromhex(secret[2:])[::-1]
        return password, bytes.fromhex(self.config.operator)[::-1]

    # -- planning ---------------------------------------------------------------------
    def _make_plan(self, address: str) -> _Plan:
        cfg = self.config
        specs = [TagSpec(i, tag.name, tag.meter_address or address, tag.identifier)
                 for i, tag in enumerate(cfg.tags)]
        blocks = table(self.version).blocks if cfg.block_reads else None
        requests = plan_requests(specs, self.version, blocks, self._single_blocks)
        order = [m.index for r in requests for m in r.members]
        tags = [cfg.tags[i] for i in order]
        integer = tuple(t.type not in (DataType.FLOAT32, DataType.FLOAT64, DataType.STRING)
                        for t in tags)
        has_objects = any(t.type.is_object for t in tags)
        log.debug("%s: %d tags in %d requests", cfg.name, len(tags), len(requests))
        frames = tuple((read_request(r.meter, r.di, self.version, cfg.preamble),
                        di_bytes(r.di, self.version)) for r in requests)
        decodes = []
        pos = 0
        for r in requests:
            members = []
            for m in r.members:
                fmt = m.identifier.format
                members.append((pos, m.at, m.at + fmt.size, fmt, integer[pos]))
                pos += 1
            decodes.append(tuple(members))
        return _Plan(tuple(requests), np.array([self.tag_ids[i] for i in order], np.int32),
                     has_objects, integer, frames, tuple(decodes))


class Dlt645SerialDriver(Dlt645Driver):
    """A meter on an RS-485 line; the meters on one ``port`` share it.

    ``ports``: the runtime's serial ports; a driver built without them has its own.
    """

    config: Dlt645SerialDeviceConfig

    def __init__(self, config: Dlt645SerialDeviceConfig, tag_ids: Sequence[int],
                 ports: SerialPorts | None = None) -> None:
        super().__init__(config, tag_ids)
        self._ports = ports if ports is not None else SerialPorts()
        self._lease: PortLease[SerialLine] | None = None

    @property
    def where(self) -> str:
        return f"{self.config.port} meter {self.meter_address or AUTO}"

    async def _open(self) -> Line:
        cfg = self.config
        use = PortUse(cfg.name, cfg.protocol, cfg.line_settings)
        lease = self._ports.claim(cfg.port, use, lambda: SerialLine(cfg.port, cfg.line_settings))
        try:
            lease.port.open()
        except BaseException:
            lease.release()
            raise
        self._lease = lease
        return lease.port

    def _release(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.release()


class Dlt645TcpDriver(Dlt645Driver):
    """A meter behind a serial device server (transparent TCP); one connection per device."""

    config: Dlt645TcpDeviceConfig

    def __init__(self, config: Dlt645TcpDeviceConfig, tag_ids: Sequence[int]) -> None:
        super().__init__(config, tag_ids)
        self._tcp: TcpLine | None = None

    @property
    def where(self) -> str:
        return f"{self.config.host}:{self.config.port} meter {self.meter_address or AUTO}"

    async def _open(self) -> Line:
        line = TcpLine(self.config.host, self.config.port)
        await line.open(self.config.timeout)
        self._tcp = line
        return line

    def _release(self) -> None:
        line, self._tcp = self._tcp, None
        if line is not None:
            line.close()
