"""The Modbus drivers: planned reads decoded in batches, writes, errors as qualities.

:class:`ModbusDriver` holds everything but the transport: poll groups, request
plans per (unit id, table), decoding, clamping, retries, per-unit backoff,
writes and the request/timeout race. The transports:

- :class:`ModbusTcpDriver` opens a TCP connection per device, of its own
  (:mod:`drivers.modbus.tcp_link`: MBAP framing and transaction ids, register reads
  decoded from the answer's bytes, pymodbus's PDUs for the rest); :class:`ModbusUdpDriver`
  a UDP socket (pymodbus's client);
- :class:`ModbusRtuDriver` and :class:`ModbusAsciiDriver` attach to the
  :class:`~drivers.modbus.bus.SerialBus` of their port, shared with the other
  devices on that RS-485 line through the runtime's
  :class:`~gateway.serial_ports.SerialPorts`;
- :class:`ModbusRtuOverTcpDriver` dials a serial device server and
  :class:`ModbusDtuDriver` takes the connection its DTU dialled in on
  (:mod:`drivers.modbus.dtu`, kept in the runtime's
  :class:`~gateway.listen_ports.ListenPorts`); both carry RTU frames on a
  :class:`~drivers.modbus.rtu_stream.RtuStream`.

pymodbus is reached through :mod:`drivers.modbus.pymodbus_adapter` only, imported the
first time a device needs it (a Modbus TCP device polled for registers never does;
:mod:`drivers.modbus.requests`): its clients
never reconnect or retry on their own (the device runner owns the connection's life,
with backoff), and the configured ``timeout`` is enforced by the adapter for the connect
and for every request (pymodbus's own timeout is only a backstop set a little longer
for the connect, and off for requests).

Errors, see README.md: an exception response, a timeout or a malformed answer
makes the tags of that one request BAD (NaN) and counts the error; a closed
connection raises :class:`ConnectionLost`, and so do
:data:`MAX_SILENT_REQUESTS` timeouts in a row (a half-open TCP connection
otherwise stays silent for many minutes).
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from dataclasses import replace as dataclass_replace
from typing import TYPE_CHECKING, NoReturn, TypeVar

import numpy as np
import numpy.typing as npt

from drivers.base import Driver, PollGroup
from drivers.modbus.bus import Link, SerialBus
from drivers.modbus.codec import DecodePlan, Field, encode, encode_string
from drivers.modbus.config import (
    DEFAULT_GROUP,
    ModbusAsciiDeviceConfig,
    ModbusDeviceConfig,
    ModbusDtuDeviceConfig,
    ModbusRtuDeviceConfig,
    ModbusRtuOverTcpDeviceConfig,
    ModbusSerialDeviceConfig,
    ModbusTagConfig,
    ModbusTcpDeviceConfig,
    ModbusUdpDeviceConfig,
)
from drivers.modbus.dtu import DtuListener, DtuSlot, packets_of
from drivers.modbus.planner import ReadRequest, TagSpan, plan_requests
from drivers.modbus.requests import (
    BadFrames,
    check_write_answer,
    read_pdu,
    read_request,
    read_values,
    unanswered,
    write_coil_request,
    write_registers_request,
)
from drivers.modbus.rtu_stream import RtuStream
from drivers.modbus.tcp_link import MbapConnection, MbapDeviceClient
from gateway.backoff import Backoff
from gateway.errors import (
    ConnectionLost,
    DeviceUnreachable,
    DeviceWriteRefused,
    RegisterDecodeError,
    RequestFailed,
    UndecodableAnswer,
)
from gateway.listen_ports import ListenLease, ListenPorts, ListenUse
from gateway.serial_ports import PortLease, PortUse, SerialPorts
from gateway.types import DataType, Quality, SampleBatch

if TYPE_CHECKING:
    from drivers.modbus.pymodbus_adapter import Answer, Request

log = logging.getLogger(__name__)

#: timeouts in a row (across requests and polls) after which the connection is presumed dead
MAX_SILENT_REQUESTS = 3
#: failed requests in a row (timeouts, exceptions 10/11) after which a unit is backed off
UNIT_FAILURES_BEFORE_BACKOFF = 3
#: first and longest time a failing unit is skipped; doubles with each failed probe
UNIT_BACKOFF_INITIAL = 1.0
UNIT_BACKOFF_MAX = 60.0
#: failures that are worth sending the same request again
_RETRYABLE = frozenset({"timeout", "garbled", "decode", "exception_5", "exception_6"})
#: failures that say the unit itself is not there
_UNIT_ABSENT = frozenset({"timeout", "exception_10", "exception_11"})

_READ_ONLY_TABLES = frozenset({"input", "discrete"})
_REGISTER_TABLES = frozenset({"holding", "input"})
#: a register answer's data, as it comes
_BIG_ENDIAN_U16 = np.dtype(">u2")

_A = TypeVar("_A")
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _PlannedRead:
    """A read request with its decoder and the slice of the batch its tags fill."""

    request: ReadRequest
    call: Request
    decoder: DecodePlan
    out: slice
    what: str  # "read holding 0..9 (10 registers)", for messages
    pdu: bytes  # the request's PDU, from its function code on (Modbus TCP sends it as is)


@dataclass(frozen=True, slots=True)
class _PollPlan:
    reads: tuple[_PlannedRead, ...]
    tag_ids: npt.NDArray[np.int32]  # batch order: request by request
    has_objects: bool
    #: clamp limits in raw units per batch position (-inf/inf: none); None when no tag clamps
    clamp: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None


@dataclass(slots=True)
class UnitHealth:
    """How one unit id answers: failures in a row, and when it may be asked again."""

    failures: int = 0
    skip_until: float = 0.0
    backoff: Backoff = dataclass_field(
        default_factory=lambda: Backoff(UNIT_BACKOFF_INITIAL, UNIT_BACKOFF_MAX)
    )
    #: error counts of this unit by kind, plus ``skipped`` requests while backed off
    errors: Counter[str] = dataclass_field(default_factory=Counter)
    #: requests sent to this unit (reads, their retries, and writes)
    requests: int = 0
    #: reads sent again after a transient failure
    retries: int = 0


class ModbusDriver(Driver):
    """One Modbus device, whatever the transport. Subclasses open and release the link."""

    config: ModbusDeviceConfig

    def __init__(self, config: ModbusDeviceConfig, tag_ids: Sequence[int]) -> None:
        super().__init__(config.name, tag_ids, len(config.tags))
        self.config = config
        self._units = sorted({config.unit_of(t) for t in config.tags})
        self._groups = self._make_groups()
        self._plans: dict[tuple[int, ...], _PollPlan] = {}
        for group in self._groups:
            self._plan_for(group)  # plan errors show at construction
        self._link: Link | None = None
        self._silent_requests = 0
        self._silent_units: set[int] = set()
        #: per unit id: failures in a row, backoff, error counts
        self.units: dict[int, UnitHealth] = {u: UnitHealth() for u in self._units}
        #: requests currently failing, with their error counter, to log transitions only
        self._failing: dict[ReadRequest, str] = {}

    # -- description ------------------------------------------------------------------

    @property
    def address(self) -> str:
        """Where the device is: ``host:port``, or the serial device."""
        raise NotImplementedError

    @property
    def requests(self) -> tuple[ReadRequest, ...]:
        """The read requests of one poll of all tags, as planned (planned again: the plan
        keeps them without their members)."""
        return tuple(self._requests_for(self.tag_ids)[0])

    @property
    def connected(self) -> bool:
        link = self._link
        return link is not None and not link.lost.done() and link.client.connected

    def _describe(self, request: ReadRequest) -> str:
        text = request.describe()
        return f"unit {request.unit} {text}" if len(self._units) > 1 else text

    # -- connection -------------------------------------------------------------------

    async def _open(self) -> Link:
        """Open the transport; raise :class:`DeviceUnreachable` with a readable reason."""
        raise NotImplementedError

    def _release(self, link: Link) -> None:
        """Give the transport back (close it, or detach from a shared bus)."""
        raise NotImplementedError

    async def connect(self) -> None:
        await self.close()
        self._link = await self._open()
        self._silent_requests = 0
        self._silent_units.clear()
        units = ", ".join(str(u) for u in self._units)
        log.info("%s: connected to %s (unit %s)", self.device_name, self.address, units)

    async def close(self) -> None:
        link, self._link = self._link, None
        if link is None:
            return
        if not link.lost.done():
            link.lost.set_result(None)  # a request in flight ends now, not at its timeout
        try:
            self._release(link)
        except Exception:  # close must not raise (Driver contract)
            log.exception("%s: error while closing the Modbus client", self.device_name)

    # -- poll groups ------------------------------------------------------------------

    def _make_groups(self) -> tuple[PollGroup, ...]:
        """One group per configured poll group with tags; string tags read in a group of
        their own (``<group>/strings``) so that numeric batches stay float64."""
        cfg = self.config
        members: dict[tuple[str, bool], list[int]] = {}
        for tag_id, tag in zip(self.tag_ids, cfg.tags, strict=True):
            key = (tag.poll_group, tag.type is DataType.STRING)
            members.setdefault(key, []).append(tag_id)
        names = [DEFAULT_GROUP, *(g.name for g in cfg.poll_groups)]
        groups = []
        for name in names:
            for strings in (False, True):
                ids = members.get((name, strings))
                if ids:
                    label = f"{name}/strings" if strings else name
                    groups.append(PollGroup(label, cfg.interval_of(name), tuple(ids)))
        return tuple(groups)

    def poll_groups(self) -> Sequence[PollGroup]:
        return self._groups

    # -- reading ----------------------------------------------------------------------

    async def read(self, group: PollGroup) -> SampleBatch:
        plan = self._plan_for(group)
        n = len(plan.tag_ids)
        values = np.empty(n, dtype=object if plan.has_objects else np.float64)
        ts_ns = np.empty(n, dtype=np.int64)
        quality = np.zeros(n, dtype=np.uint8)  # Quality.GOOD is 0 (np.full with the enum: 20x)
        bad_value = None if plan.has_objects else np.nan
        loop = asyncio.get_running_loop()
        for read in plan.reads:
            sent = [time.time_ns()]  # replaced by the time the request is actually sent
            unit = read.request.unit
            health = self.units[unit]
            if health.skip_until > loop.time():
                ts_ns[read.out] = sent[0]
                values[read.out] = bad_value
                quality[read.out] = Quality.BAD
                health.errors["skipped"] += 1
                continue
            try:
                registers = await self._read_with_retries(read, sent)
                read.decoder.decode(registers, out=values[read.out])
            except RequestFailed as failure:
                values[read.out] = bad_value
                quality[read.out] = Quality.BAD
                self._note_failure(read.request, failure)
            except RegisterDecodeError as exc:
                values[read.out] = bad_value
                quality[read.out] = Quality.BAD
                self._note_failure(read.request, RequestFailed("decode", str(exc)))
            else:
                self._note_success(read.request)
            ts_ns[read.out] = sent[0]
        if plan.clamp is not None:
            _clamp(values, quality, *plan.clamp)
        return SampleBatch(plan.tag_ids.copy(), values, ts_ns, quality)

    async def _read_with_retries(
        self, read: _PlannedRead, sent: list[int]
    ) -> npt.NDArray[np.uint16]:
        """The registers of ``read``; sent up to ``retries`` more times on transient errors."""
        attempts = self.config.retries + 1
        for attempt in range(attempts):
            try:
                return await self._read_registers(read, sent)
            except RequestFailed as failure:
                last = attempt == attempts - 1
                if last or failure.counter not in _RETRYABLE:
                    raise
                self.errors[failure.counter] += 1
                health = self.units[read.request.unit]
                health.errors[failure.counter] += 1
                health.retries += 1
                log.debug("%s: %s; retrying", self.device_name, failure.reason)
        raise AssertionError("unreachable")

    async def _read_registers(
        self, read: _PlannedRead, sent: list[int] | None = None
    ) -> npt.NDArray[np.uint16]:
        req = read.request
        answer = await self._call(read.what, read.call, req.unit, sent)
        return read_values(answer, req.table, req.count, read.what)

    def _note_failure(self, request: ReadRequest, failure: RequestFailed) -> None:
        self.errors[failure.counter] += 1
        health = self.units[request.unit]
        health.errors[failure.counter] += 1
        if self._failing.get(request) != failure.counter:
            log.warning("%s: %s; its tags are BAD", self.device_name, failure.reason)
        else:
            log.debug("%s: %s", self.device_name, failure.reason)
        self._failing[request] = failure.counter
        if failure.counter in _UNIT_ABSENT:
            health.failures += 1
            if health.failures >= UNIT_FAILURES_BEFORE_BACKOFF:
                delay = health.backoff.next_delay()
                health.skip_until = asyncio.get_running_loop().time() + delay
                self.errors["unit_backoff"] += 1
                health.errors["backoff"] += 1
                log.warning(
                    "%s: unit %d failed %d requests in a row; not asked for %.1f s",
                    self.device_name,
                    request.unit,
                    health.failures,
                    delay,
                )

    def _note_success(self, request: ReadRequest) -> None:
        health = self.units[request.unit]
        if health.failures >= UNIT_FAILURES_BEFORE_BACKOFF:
            log.info("%s: unit %d answers again", self.device_name, request.unit)
        health.failures = 0
        health.backoff.reset()
        if self._failing.pop(request, None) is not None:
            log.info("%s: %s answers again", self.device_name, self._describe(request))

    # -- writing ----------------------------------------------------------------------

    async def write(self, tag_id: int, value: float | bool | str) -> None:
        position = self.tag_position.get(tag_id)  # no map of its own: a tag's bytes (issue 21)
        tag = None if position is None else self.config.tags[position]
        if tag is None:
            raise DeviceWriteRefused(f"tag id {tag_id} is not a tag of device {self.device_name!r}")
        if tag.table in _READ_ONLY_TABLES:
            raise DeviceWriteRefused(f"{tag.name}: {tag.table} tags are read-only in Modbus")
        if tag.bit is not None:
            raise DeviceWriteRefused(f"{tag.name}: a bit inside a register is read-only")
        if isinstance(value, str) and tag.type is not DataType.STRING:
            raise DeviceWriteRefused(f"{tag.name}: expects a number, got the text {value!r}")
        if tag.type is DataType.STRING and not isinstance(value, str):
            raise DeviceWriteRefused(f"{tag.name}: expects a text, got {value!r}")
        try:
            call = self._write_request(tag, value)
        except ValueError as exc:
            raise DeviceWriteRefused(f"{tag.name}: {exc}") from exc

        unit = self.config.unit_of(tag)
        what = f"write {tag.name} ({tag.table} {tag.address})"
        try:
            check_write_answer(await self._call(what, call, unit), what)
        except RequestFailed as failure:
            self.errors[failure.counter] += 1
            self.units[unit].errors[failure.counter] += 1
            if failure.counter in ("timeout", "garbled"):
                failure.reason += "; the value may or may not have been written"
            raise DeviceWriteRefused(failure.reason) from None
        log.info("%s: wrote %r to %s", self.device_name, value, tag.name)

    def _write_request(self, tag: ModbusTagConfig, value: float | bool | str) -> Request:
        """The request writing ``value`` to ``tag``: FC5/FC15 for a coil, FC6/FC16 for registers."""
        unit, address = self.config.unit_of(tag), tag.address
        multiple = self.config.write_multiple
        if tag.table == "coil":
            on = encode(value, DataType.BOOL)[0] == 1  # type: ignore[arg-type]  # a coil's value is checked as a number
            return write_coil_request(address, on, unit, multiple)
        if isinstance(value, str):
            registers = encode_string(value, tag.register_count, tag.byte_order)
        else:
            if not math.isfinite(float(value)):
                raise ValueError(f"{value!r} is not a finite number")
            registers = encode(value, tag.type, tag.byte_order)
        return write_registers_request(address, registers, unit, multiple)

    # -- one request ------------------------------------------------------------------

    async def _call(
        self, what: str, request: Request, unit: int, sent: list[int] | None = None
    ) -> Answer:
        """Run one request on the link (:func:`~drivers.modbus.pymodbus_adapter.exchange`:
        the timeout and the connection dropping, whichever first); see :meth:`_on_link`."""
        return await self._on_link(what, unit, sent, self._exchange, request)

    async def _exchange(self, link: Link, request: Request, what: str) -> Answer:
        from drivers.modbus.pymodbus_adapter import exchange

        return await exchange(link, request, self.config.timeout, what, self.address)

    async def _on_link(self, what: str, unit: int, sent: list[int] | None,
                       run: Callable[[Link, _A, str], Awaitable[_T]], arg: _A) -> _T:
        """``run(link, arg, what)`` on the link, one request at a time: the request's
        bookkeeping (silent requests, a lost connection, counters) around it.

        ``sent[0]`` gets the time the request left (after waiting for the connection
        or the bus). Raises :class:`ConnectionLost` (the client is dropped), or
        :class:`RequestFailed` for a timeout or an answer that is of no use.
        """
        link = self._link
        if link is None:
            raise ConnectionLost(f"{self.device_name}: not connected to {self.address}")
        async with link.lock:
            if self._link is not link or link.lost.done() or not link.client.connected:
                await self._check_link(link, what)  # raises (no coroutine when all is well)
            if sent is not None:
                sent[0] = time.time_ns()
            self.units[unit].requests += 1
            try:
                answer = await run(link, arg, what)
            except RequestFailed as failure:
                if failure.counter == "timeout":
                    await self._timed_out(failure, unit)
                self._answered()  # an answer came, of no use
                raise
            except ConnectionLost as lost:
                if self._link is not link:  # close() was called meanwhile: not a loss
                    raise ConnectionLost(f"{self.device_name}: closed during {what}") from None
                if isinstance(lost, UndecodableAnswer):  # a garbled answer of this unit
                    self.errors["garbled"] += 1
                    self.units[unit].errors["garbled"] += 1
                raise await self._lose(str(lost)) from None
            self._answered()
            return answer

    async def _check_link(self, link: Link, what: str) -> None:
        """After waiting for the lock: is ``link`` still ours and open?"""
        if self._link is not link:
            raise ConnectionLost(f"{self.device_name}: closed during {what}")
        if link.lost.done() or not link.client.connected:
            raise await self._lose(self._why_closed())

    def _why_closed(self) -> str:
        """Why the connection is gone, for the lost-connection message."""
        return f"the connection to {self.address} was closed"

    def _answered(self) -> None:
        self._silent_requests = 0
        self._silent_units.clear()

    async def _timed_out(self, failure: RequestFailed, unit: int) -> NoReturn:
        """Raise ``failure``, or :class:`ConnectionLost` when too many requests in a row
        got no answer."""
        self._silent_requests += 1
        self._silent_units.add(unit)
        # with several units, one absent unit is backed off, not a dead connection
        enough_units = len(self._units) == 1 or len(self._silent_units) > 1
        if self._silent_requests < MAX_SILENT_REQUESTS or not enough_units:
            raise failure
        self.errors["timeout"] += 1
        self.units[unit].errors["timeout"] += 1
        raise await self._lose(
            f"{failure.reason}; {self._silent_requests} requests in a row got no answer: "
            "the connection is presumed dead"
        )

    async def _lose(self, reason: str) -> ConnectionLost:
        """Count a lost connection, drop the client, return the error to raise (the
        device runner logs it)."""
        self.errors["connection_lost"] += 1
        log.debug("%s: %s", self.device_name, reason)
        await self.close()
        return ConnectionLost(f"{self.device_name}: {reason}")

    # -- planning ---------------------------------------------------------------------

    def _plan_for(self, group: PollGroup) -> _PollPlan:
        return self._plan_for_ids(group.tag_ids)

    def _plan_for_ids(self, tag_ids: tuple[int, ...]) -> _PollPlan:
        plan = self._plans.get(tag_ids)
        if plan is None:
            plan = self._plans[tag_ids] = self._build_plan(tag_ids)
        return plan

    def _requests_for(self, tag_ids: Sequence[int]) -> tuple[list[ReadRequest], dict[int, int]]:
        """The read requests of ``tag_ids``, and the registers of each tag (by index)."""
        unknown = [t for t in tag_ids if t not in self.tag_position]
        if unknown:
            raise ValueError(f"tag ids {unknown} are not tags of device {self.device_name!r}")
        cfg = self.config
        wanted = dict.fromkeys(tag_ids)  # unique, in order
        spans = []
        tags, position, unit_id = cfg.tags, self.tag_position, cfg.unit_id
        counts: dict[int, int] = {}  # tag index -> registers (a property: asked once)
        for tag_id in wanted:
            index = position[tag_id]
            tag = tags[index]
            count = counts[index] = tag.register_count
            unit = unit_id if tag.unit_id is None else tag.unit_id
            spans.append(TagSpan(index, tag.table, tag.address, count, tag.name, unit))
        requests = plan_requests(
            spans,
            max_registers=cfg.max_request_registers,
            max_bits=cfg.max_request_bits,
            max_gap=cfg.max_gap,
        )
        return requests, counts

    def _build_plan(self, tag_ids: Sequence[int]) -> _PollPlan:
        requests, counts = self._requests_for(tag_ids)
        tags = self.config.tags
        reads: list[_PlannedRead] = []
        batch_ids: list[int] = []
        batch_tags: list[ModbusTagConfig] = []
        ids, string = self.tag_ids, DataType.STRING
        for request in requests:
            fields = []
            for member in request.members:
                tag = tags[member.index]
                length = counts[member.index] if tag.type is string else None
                fields.append(Field(member.offset, tag.type, tag.byte_order, tag.bit, length))
                batch_ids.append(ids[member.index])
                batch_tags.append(tag)
            start = len(batch_ids) - len(fields)
            call = read_request(request.table, request.address, request.count, request.unit)
            reads.append(
                _PlannedRead(
                    # without its members: the decode plan has them as arrays, and a Member
                    # a tag kept here was 48 B (9 MB at 200,000 tags, issue 21)
                    dataclass_replace(request, members=()),
                    call,
                    DecodePlan(fields, request.count),
                    slice(start, len(batch_ids)),
                    f"read {self._describe(request)}",
                    read_pdu(request.table, request.address, request.count),
                )
            )
        log.debug(
            "%s: %d tags in %d requests: %s",
            self.config.name,
            len(batch_ids),
            len(reads),
            ", ".join(self._describe(r.request) for r in reads),
        )
        has_objects = any(read.decoder.has_objects for read in reads)  # of their fields' types
        return _PollPlan(
            tuple(reads), np.array(batch_ids, dtype=np.int32), has_objects, _raw_clamp(batch_tags)
        )


class _IpDriver(ModbusDriver):
    """A Modbus device at a host and port (TCP or UDP)."""

    config: ModbusTcpDeviceConfig

    def __init__(self, config: ModbusTcpDeviceConfig, tag_ids: Sequence[int]) -> None:
        super().__init__(config, tag_ids)
        #: one request at a time, so that a write queued behind a slow read keeps its full timeout
        self._request_lock = asyncio.Lock()

    @property
    def address(self) -> str:
        return self.config.address

    def _release(self, link: Link) -> None:
        link.client.close()

    def _unreachable_reason(self, error: BaseException | None, timed_out: bool) -> str:
        return unreachable_reason(self.config.host, self.config.port, self.config.timeout,
                                  error, timed_out)


class ModbusTcpDriver(_IpDriver):
    """A Modbus TCP device (a PLC, a meter, a gateway to an RTU line, with several unit ids).

    The connection is the project's own (:class:`~drivers.modbus.tcp_link.MbapConnection`:
    MBAP framing, transaction ids, one timeout timer per connection), and register reads,
    the requests of every poll, go from prepared request bytes to registers decoded from
    the answer's bytes by NumPy; pymodbus builds and decodes everything else (bit reads,
    writes, an answer that is not the one expected: exceptions, another function code or
    size) through :class:`~drivers.modbus.pymodbus_adapter.MbapClient`, as it did on its
    own TCP client until 2026-12-05, whose transaction and timers were half of the
    gateway's Python per poll with 2,000 devices (issue 21)."""

    def __init__(self, config: ModbusTcpDeviceConfig, tag_ids: Sequence[int]) -> None:
        super().__init__(config, tag_ids)
        #: the connection and its pymodbus client, while connected
        self._mbap: tuple[MbapConnection, MbapDeviceClient] | None = None

    async def _open(self) -> Link:
        cfg = self.config
        bad = BadFrames()
        try:
            async with asyncio.timeout(cfg.timeout):
                _, connection = await asyncio.get_running_loop().create_connection(
                    lambda: MbapConnection(cfg.address, bad), cfg.host, cfg.port)
        except (OSError, TimeoutError, UnicodeError) as exc:
            timed_out = isinstance(exc, TimeoutError)
            reason = self._unreachable_reason(None if timed_out else exc, timed_out)
            log.debug("%s: %s", self.device_name, reason)  # the device runner logs it
            raise DeviceUnreachable(reason) from None
        client = MbapDeviceClient(connection)
        self._mbap = (connection, client)
        return Link(client, connection.lost, self._request_lock, rx=connection.rx, bad=bad)

    def _release(self, link: Link) -> None:
        self._mbap = None
        link.client.close()

    async def _read_registers(
        self, read: _PlannedRead, sent: list[int] | None = None
    ) -> npt.NDArray[np.uint16]:
        if read.request.table not in _REGISTER_TABLES:
            return await super()._read_registers(read, sent)  # bits: pymodbus decodes them
        return await self._on_link(read.what, read.request.unit, sent, self._read_answer, read)

    async def _read_answer(self, link: Link, read: _PlannedRead,
                           what: str) -> npt.NDArray[np.uint16]:
        """One register read on the connection: the registers, from the answer's bytes."""
        mbap = self._mbap
        if mbap is None:
            raise ConnectionLost(f"the connection to {self.address} closed during {what}")
        connection, client = mbap
        request, timeout = read.request, self.config.timeout
        undecodable = connection.bad.count
        answer = await connection.send(request.unit, read.pdu, timeout)
        if answer is None:
            raise unanswered(connection, 0, undecodable, timeout, what, self.address)
        count = request.count
        if len(answer) == 2 + 2 * count and answer[0] == read.pdu[0] and answer[1] == 2 * count:
            return np.frombuffer(answer, _BIG_ENDIAN_U16, count, 2).astype(np.uint16)
        # an exception, another function code or size: as pymodbus decodes it
        pdu = client.pymodbus().decode(request.unit, answer)
        if pdu is None:
            raise unanswered(connection, 0, undecodable, timeout, what, self.address)
        return read_values(pdu, request.table, count, what)


def unreachable_reason(host: str, port: int, timeout: float, error: BaseException | None,
                   timed_out: bool) -> str:
    """Why a TCP connection to ``host:port`` could not be opened, in words."""
    address = f"{host}:{port}"
    if timed_out or isinstance(error, TimeoutError):
        return f"no answer from {address} within {timeout:g} s (connect timed out)"
    if isinstance(error, socket.gaierror):
        return f"cannot resolve host name {host!r} (DNS lookup failed: {error.strerror})"
    if isinstance(error, ConnectionRefusedError):
        return (
            f"connection refused by {address}: nothing listens on port {port} "
            "or a firewall rejects it"
        )
    if isinstance(error, OSError):
        return f"cannot connect to {address}: {error.strerror or error}"
    if error is not None:
        return f"cannot connect to {address}: {error}"
    return f"cannot connect to {address}"


class ModbusUdpDriver(_IpDriver):
    """A Modbus device answering Modbus TCP frames in UDP datagrams (pymodbus's UDP
    client). There is no connection to lose: a device that stopped answering shows as
    timeouts, and after :data:`MAX_SILENT_REQUESTS` of them as a lost connection (a
    fresh socket)."""

    config: ModbusUdpDeviceConfig  # type: ignore[assignment]  # the UDP device has the TCP device's host and port

    def __init__(self, config: ModbusUdpDeviceConfig, tag_ids: Sequence[int]) -> None:
        super().__init__(config, tag_ids)  # type: ignore[arg-type]  # same keys as TCP

    async def _open(self) -> Link:
        from drivers.modbus.pymodbus_adapter import connect, udp_client

        cfg = self.config
        lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        bad = BadFrames()
        client = udp_client(cfg.host, cfg.port, self.device_name, cfg.timeout,
                            _watch_disconnect(lost), bad)
        try:
            await connect(client, cfg.timeout, self._unreachable_reason)
        except DeviceUnreachable as exc:
            log.debug("%s: %s", self.device_name, exc)  # the device runner logs it
            raise
        return Link(client, lost, self._request_lock, bad=bad)


class ModbusSerialDriver(ModbusDriver):
    """A Modbus device on a serial line; devices on the same ``port`` share one bus.

    ``ports``: the runtime's serial ports, where the bus of each port is kept; a driver
    built without them has ports of its own (it shares its port with no other driver).
    """

    config: ModbusSerialDeviceConfig

    def __init__(self, config: ModbusSerialDeviceConfig, tag_ids: Sequence[int],
                 ports: SerialPorts | None = None) -> None:
        super().__init__(config, tag_ids)
        self._ports = ports if ports is not None else SerialPorts()
        self._lease: PortLease[SerialBus] | None = None

    @property
    def address(self) -> str:
        return self.config.port

    async def _open(self) -> Link:
        cfg = self.config
        use = PortUse(cfg.name, cfg.protocol, cfg.line_settings)
        lease = self._ports.claim(cfg.port, use, lambda: SerialBus(cfg))
        try:
            link = await lease.port.attach(cfg)
        except BaseException:
            lease.release()
            raise
        self._lease = lease
        return link

    def _release(self, link: Link) -> None:
        lease, self._lease = self._lease, None
        if link.bus is not None:
            link.bus.detach(link)
        if lease is not None:
            lease.release()


class ModbusRtuDriver(ModbusSerialDriver):
    """A Modbus RTU device on a serial line."""

    config: ModbusRtuDeviceConfig

    def __init__(self, config: ModbusRtuDeviceConfig, tag_ids: Sequence[int],
                 ports: SerialPorts | None = None) -> None:
        super().__init__(config, tag_ids, ports)


class ModbusAsciiDriver(ModbusSerialDriver):
    """A Modbus ASCII device on a serial line (pymodbus's ASCII framer on the bus)."""

    config: ModbusAsciiDeviceConfig

    def __init__(self, config: ModbusAsciiDeviceConfig, tag_ids: Sequence[int],
                 ports: SerialPorts | None = None) -> None:
        super().__init__(config, tag_ids, ports)


class ModbusRtuOverTcpDriver(ModbusDriver):
    """Modbus RTU devices behind a serial device server: the gateway dials the server and
    sends RTU frames through the connection (:class:`RtuStream`), one at a time."""

    config: ModbusRtuOverTcpDeviceConfig

    def __init__(self, config: ModbusRtuOverTcpDeviceConfig, tag_ids: Sequence[int]) -> None:
        super().__init__(config, tag_ids)
        self._request_lock = asyncio.Lock()

    @property
    def address(self) -> str:
        return self.config.address

    async def _open(self) -> Link:
        cfg = self.config
        bad = BadFrames()
        rx = [0]
        loop = asyncio.get_running_loop()
        packets = packets_of(cfg.heartbeat_packet)
        try:
            async with asyncio.timeout(cfg.timeout):
                _, stream = await loop.create_connection(
                    lambda: RtuStream(packets, bad, rx), cfg.host, cfg.port)
        except (OSError, TimeoutError, UnicodeError) as exc:
            timed_out = isinstance(exc, TimeoutError)
            reason = unreachable_reason(cfg.host, cfg.port, cfg.timeout,
                                        None if timed_out else exc, timed_out)
            raise DeviceUnreachable(reason) from None
        stream.peer = cfg.address
        from drivers.modbus.pymodbus_adapter import stream_client

        return Link(stream_client(stream), stream.lost, self._request_lock, rx=rx, bad=bad)

    def _release(self, link: Link) -> None:
        link.client.close()


class ModbusDtuDriver(ModbusDriver):
    """The Modbus RTU devices behind one 4G DTU that dials in to the gateway.

    ``listeners``: the runtime's listening ports, where the port the DTUs dial in to is
    kept (shared by the DTU devices that name it); a driver built without them has a
    port of its own. ``connect`` waits up to ``dial_in_timeout`` for the DTU to
    register (:class:`~drivers.modbus.dtu.DtuSlot`); the runner reconnects with backoff
    and finds the DTU's connection when it came meanwhile.
    """

    config: ModbusDtuDeviceConfig

    def __init__(self, config: ModbusDtuDeviceConfig, tag_ids: Sequence[int],
                 listeners: ListenPorts | None = None) -> None:
        super().__init__(config, tag_ids)
        self._listeners = listeners if listeners is not None else ListenPorts()
        self._lease: ListenLease[DtuListener] | None = None
        self._slot: DtuSlot | None = None
        self._stream: RtuStream | None = None
        self._request_lock = asyncio.Lock()

    @property
    def address(self) -> str:
        return self.config.address

    def _why_closed(self) -> str:
        stream = self._stream
        if stream is not None and stream.closed_because:
            return stream.closed_because
        return super()._why_closed()

    @property
    def slot(self) -> DtuSlot | None:
        """The device's place on the listener (its DTU's connection), once connected."""
        return self._slot

    @property
    def listener(self) -> DtuListener | None:
        """The listening port the DTU dials in to, while the driver holds it."""
        return self._lease.listener if self._lease is not None else None

    def awaited_peer(self) -> str:
        cfg = self.config
        return (f"the {cfg.registration_packet.describe()} DTU to dial in to port "
                f"{cfg.listen_port} and register")

    async def identity(self) -> str | None:
        slot = self._slot
        stream = slot.stream if slot is not None else None
        if slot is None or stream is None:
            return None
        return (f"{slot.describe()} on {self.config.listen_host}:{self.config.listen_port}, "
                f"connected from {stream.peer} (registered {slot.registrations} times)")

    async def _open(self) -> Link:
        cfg = self.config
        use = ListenUse(cfg.name, cfg.protocol, cfg.listen_host)
        lease: ListenLease[DtuListener] = self._listeners.claim(
            cfg.listen_port, use, lambda: DtuListener(cfg.listen_host, cfg.listen_port))
        try:
            listener = lease.listener
            slot = listener.enrol(cfg)
            await listener.start()
            stream = await slot.wait(cfg.dial_in_timeout, f"{listener.where}")
        except BaseException:
            lease.release()
            raise
        self._lease, self._slot, self._stream = lease, slot, stream
        bad = BadFrames()
        stream.rx, stream.on_bad = [0], bad
        from drivers.modbus.pymodbus_adapter import stream_client

        return Link(stream_client(stream), stream.lost, self._request_lock, rx=stream.rx,
                    bad=bad)

    def _release(self, link: Link) -> None:
        link.client.close()  # a DTU silent on an open connection must dial in afresh
        lease, self._lease = self._lease, None
        if self._slot is not None and lease is not None:
            lease.listener.leave(self._slot)
        if lease is not None:
            lease.release()


def _raw_clamp(
    tags: Sequence[ModbusTagConfig],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
    """Clamp limits of each batch position converted to raw units (before scale and offset)."""
    if not any(t.clamp is not None for t in tags):
        return None
    low = np.full(len(tags), -np.inf)
    high = np.full(len(tags), np.inf)
    for i, tag in enumerate(tags):
        if tag.clamp is None or tag.scale == 0:
            continue
        a, b = ((c - tag.offset) / tag.scale for c in tag.clamp)
        low[i], high[i] = min(a, b), max(a, b)
    return low, high


def _clamp(
    values: np.ndarray,
    quality: npt.NDArray[np.uint8],
    low: npt.NDArray[np.float64],
    high: npt.NDArray[np.float64],
) -> None:
    """Clamp ``values`` in place; good values that were outside become UNCERTAIN."""
    if values.dtype == object:
        _clamp_objects(values, quality, low, high)
        return
    numbers = values
    with np.errstate(invalid="ignore"):
        outside = ((numbers < low) | (numbers > high)) & (quality == Quality.GOOD)
    if outside.any():
        values[outside] = np.clip(numbers[outside], low[outside], high[outside])
        quality[outside] = Quality.UNCERTAIN


def _clamp_objects(
    values: np.ndarray,
    quality: npt.NDArray[np.uint8],
    low: npt.NDArray[np.float64],
    high: npt.NDArray[np.float64],
) -> None:
    """:func:`_clamp` for a batch with strings or 64-bit integers, one value at a time:
    Python compares an int with a float exactly, and an int clamped stays an int."""
    bounded = np.flatnonzero(np.isfinite(low) | np.isfinite(high))
    for i in bounded.tolist():
        value = values[i]
        if quality[i] != Quality.GOOD or isinstance(value, str) or value is None:
            continue
        lo, hi = float(low[i]), float(high[i])  # Python floats: compared with ints exactly
        if value < lo:  # an int clamps to the nearest int inside the bounds
            values[i] = math.ceil(lo) if isinstance(value, int) else lo
        elif value > hi:
            values[i] = math.floor(hi) if isinstance(value, int) else hi
        else:
            continue
        quality[i] = Quality.UNCERTAIN


def _watch_disconnect(lost: asyncio.Future[None]) -> Callable[[bool], None]:
    """pymodbus ``trace_connect`` callback resolving ``lost`` when the connection drops."""

    def on_change(connected: bool) -> None:
        if not connected and not lost.done():
            lost.set_result(None)

    return on_change
