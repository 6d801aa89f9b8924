"""The Modbus TCP driver: planned reads decoded in batches, writes, errors as qualities.

The device runner owns the connection's life (reconnects with backoff), so the
pymodbus client is created with ``reconnect_delay=0`` and ``retries=0`` and
never reconnects or retries on its own. The driver enforces the configured
``timeout`` itself, for the connect and for every request; pymodbus's own
timeout is only a backstop set a little longer.

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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

import numpy as np
import numpy.typing as npt
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException
from pymodbus.pdu import ModbusPDU

from drivers.base import Driver, PollGroup
from drivers.modbus.codec import DecodeError, DecodePlan, Field, encode
from drivers.modbus.config import ModbusTagConfig, ModbusTcpDeviceConfig, Table
from drivers.modbus.planner import ReadRequest, TagSpan, plan_requests
from gateway.errors import ConnectionLost, DeviceUnreachable, WriteRejected
from gateway.types import DataType, Quality, SampleBatch

log = logging.getLogger(__name__)

#: timeouts in a row (across requests and polls) after which the connection is presumed dead
MAX_SILENT_REQUESTS = 3
#: pymodbus's own request timeout is ours plus this, so that ours always fires first
_BACKSTOP_SECONDS = 1.0

#: function code and client method reading each table
_READS: dict[Table, tuple[int, str]] = {
    "coil": (1, "read_coils"),
    "discrete": (2, "read_discrete_inputs"),
    "holding": (3, "read_holding_registers"),
    "input": (4, "read_input_registers"),
}
_READ_ONLY_TABLES = frozenset({"input", "discrete"})
#: Modbus exception codes as the specification names them
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal address",
    3: "illegal value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    7: "negative acknowledge",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}

Request = Callable[[AsyncModbusTcpClient], Awaitable[ModbusPDU]]


class _RequestFailed(Exception):
    """One request got no usable answer; its tags become BAD. Never leaves this module."""

    def __init__(self, counter: str, reason: str) -> None:
        super().__init__(reason)
        self.counter = counter
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _PlannedRead:
    """A read request with its decoder and the slice of the batch its tags fill."""

    request: ReadRequest
    function_code: int
    method: str
    decoder: DecodePlan
    out: slice


@dataclass(frozen=True, slots=True)
class _PollPlan:
    reads: tuple[_PlannedRead, ...]
    tag_ids: npt.NDArray[np.int32]  # batch order: request by request


class ModbusTcpDriver(Driver):
    """One Modbus TCP device (a PLC, a meter, a gateway to an RTU line)."""

    def __init__(self, config: ModbusTcpDeviceConfig, tag_ids: Sequence[int]) -> None:
        super().__init__(config.name, tag_ids)
        if len(self.tag_ids) != len(config.tags):
            raise ValueError(
                f"device {config.name!r} has {len(config.tags)} tags but {len(self.tag_ids)} "
                "tag ids were given"
            )
        self.config = config
        self._tags: dict[int, ModbusTagConfig] = dict(zip(self.tag_ids, config.tags, strict=True))
        self._position = {tag_id: i for i, tag_id in enumerate(self.tag_ids)}
        self._default_group = PollGroup("default", config.poll_interval, self.tag_ids)
        self._plans: dict[tuple[int, ...], _PollPlan] = {}
        self._plans[self.tag_ids] = self._build_plan(self.tag_ids)
        self._client: AsyncModbusTcpClient | None = None
        self._lost: asyncio.Future[None] | None = None
        self._silent_requests = 0
        #: one request at a time, so that a write queued behind a slow read keeps its full timeout
        self._request_lock = asyncio.Lock()
        #: requests currently failing, with their error counter, to log transitions only
        self._failing: dict[ReadRequest, str] = {}

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    @property
    def requests(self) -> tuple[ReadRequest, ...]:
        """The read requests of one poll of all tags, as planned."""
        return tuple(r.request for r in self._plans[self.tag_ids].reads)

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    # -- connection -------------------------------------------------------------------

    async def connect(self) -> None:
        await self.close()
        cfg = self.config
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[None] = loop.create_future()
        client = AsyncModbusTcpClient(
            cfg.host,
            port=cfg.port,
            name=self.device_name,
            timeout=cfg.timeout + _BACKSTOP_SECONDS,
            retries=0,
            reconnect_delay=0,
            trace_connect=_watch_disconnect(lost),
        )
        errors: list[BaseException] = []
        _record_connect_errors(client, errors)
        timed_out = False
        try:
            async with asyncio.timeout(cfg.timeout):
                ok = await client.connect()
        except TimeoutError:
            ok, timed_out = False, True
        except (OSError, ValueError) as exc:  # ValueError: e.g. a host name IDNA cannot encode
            ok = False
            errors.append(exc)
        except BaseException:  # cancelled: leave no half-open client behind
            client.close()
            raise
        if not ok:
            client.close()
            reason = self._unreachable_reason(errors[-1] if errors else None, timed_out)
            log.debug("%s: %s", self.device_name, reason)  # the device runner logs it
            raise DeviceUnreachable(reason)
        self._client, self._lost = client, lost
        self._silent_requests = 0
        log.info("%s: connected to %s (unit %d)", self.device_name, self.address, cfg.unit_id)

    async def close(self) -> None:
        client, self._client = self._client, None
        lost, self._lost = self._lost, None
        if lost is not None and not lost.done():
            lost.set_result(None)  # a request in flight ends now, not at its timeout
        if client is not None:
            try:
                client.close()
            except Exception:  # close must not raise (Driver contract)
                log.exception("%s: error while closing the Modbus client", self.device_name)

    def _unreachable_reason(self, error: BaseException | None, timed_out: bool) -> str:
        cfg = self.config
        if timed_out or isinstance(error, TimeoutError):
            return f"no answer from {self.address} within {cfg.timeout:g} s (connect timed out)"
        if isinstance(error, socket.gaierror):
            return f"cannot resolve host name {cfg.host!r} (DNS lookup failed: {error.strerror})"
        if isinstance(error, ConnectionRefusedError):
            return (
                f"connection refused by {self.address}: nothing listens on port {cfg.port} "
                "or a firewall rejects it"
            )
        if isinstance(error, OSError):
            return f"cannot connect to {self.address}: {error.strerror or error}"
        if error is not None:
            return f"cannot connect to {self.address}: {error}"
        return f"cannot connect to {self.address}"

    # -- reading ----------------------------------------------------------------------

    def poll_groups(self) -> Sequence[PollGroup]:
        return (self._default_group,)

    async def read(self, group: PollGroup) -> SampleBatch:
        plan = self._plan_for(group)
        n = len(plan.tag_ids)
        values = np.empty(n, dtype=np.float64)
        ts_ns = np.empty(n, dtype=np.int64)
        quality = np.full(n, Quality.GOOD, dtype=np.uint8)
        for read in plan.reads:
            ts_ns[read.out] = time.time_ns()
            try:
                registers = await self._read_registers(read)
                read.decoder.decode(registers, out=values[read.out])
            except _RequestFailed as failure:
                values[read.out] = np.nan
                quality[read.out] = Quality.BAD
                self._note_failure(read.request, failure)
            except DecodeError as exc:
                values[read.out] = np.nan
                quality[read.out] = Quality.BAD
                self._note_failure(read.request, _RequestFailed("decode", str(exc)))
            else:
                self._note_success(read.request)
        return SampleBatch(plan.tag_ids.copy(), values, ts_ns, quality)

    async def _read_registers(self, read: _PlannedRead) -> npt.NDArray[np.uint16]:
        req = read.request
        unit = self.config.unit_id

        def call(client: AsyncModbusTcpClient) -> Awaitable[ModbusPDU]:
            return getattr(client, read.method)(req.address, count=req.count, device_id=unit)

        what = f"read {req.describe()}"
        response = await self._call(what, call)
        if response.isError():
            raise _exception_failure(what, response.exception_code)
        if response.function_code != read.function_code:
            raise _RequestFailed(
                "decode", f"{what}: answer has function code {response.function_code}"
            )
        if req.is_bits:
            # bits come packed in whole bytes: the answer carries count rounded up to 8
            bits = response.bits
            if len(bits) != -(-req.count // 8) * 8:
                raise _RequestFailed(
                    "decode", f"{what}: answer has {len(bits)} bits for {req.count} asked"
                )
            return np.asarray(bits[: req.count], dtype=np.uint16)
        registers = response.registers
        if len(registers) != req.count:
            raise _RequestFailed(
                "decode", f"{what}: answer has {len(registers)} registers for {req.count} asked"
            )
        return np.asarray(registers, dtype=np.uint16)

    def _note_failure(self, request: ReadRequest, failure: _RequestFailed) -> None:
        self.errors[failure.counter] += 1
        if self._failing.get(request) != failure.counter:
            log.warning("%s: %s; its tags are BAD", self.device_name, failure.reason)
        else:
            log.debug("%s: %s", self.device_name, failure.reason)
        self._failing[request] = failure.counter

    def _note_success(self, request: ReadRequest) -> None:
        if self._failing.pop(request, None) is not None:
            log.info("%s: %s answers again", self.device_name, request.describe())

    # -- writing ----------------------------------------------------------------------

    async def write(self, tag_id: int, value: float | bool | str) -> None:
        tag = self._tags.get(tag_id)
        if tag is None:
            raise WriteRejected(f"tag id {tag_id} is not a tag of device {self.device_name!r}")
        if tag.table in _READ_ONLY_TABLES:
            raise WriteRejected(f"{tag.name}: {tag.table} tags are read-only in Modbus")
        if isinstance(value, str):
            raise WriteRejected(f"{tag.name}: expects a number, got the text {value!r}")
        try:
            call = self._write_request(tag, value)
        except ValueError as exc:
            raise WriteRejected(f"{tag.name}: {exc}") from exc

        what = f"write {tag.name} ({tag.table} {tag.address})"
        try:
            response = await self._call(what, call)
        except _RequestFailed as failure:
            self.errors[failure.counter] += 1
            if failure.counter == "timeout":
                failure.reason += "; the value may or may not have been written"
            raise WriteRejected(failure.reason) from None
        if response.isError():
            failure = _exception_failure(what, response.exception_code)
            self.errors[failure.counter] += 1
            raise WriteRejected(failure.reason)
        log.info("%s: wrote %r to %s", self.device_name, value, tag.name)

    def _write_request(self, tag: ModbusTagConfig, value: float | bool) -> Request:
        """The request writing ``value`` to ``tag``: FC5 for a coil, FC6 or FC16 for registers."""
        unit, address = self.config.unit_id, tag.address
        if tag.table == "coil":
            on = encode(value, DataType.BOOL)[0] == 1
            return lambda client: client.write_coil(address, on, device_id=unit)
        if not math.isfinite(float(value)):
            raise ValueError(f"{value!r} is not a finite number")
        registers = encode(value, tag.type, tag.byte_order)
        if len(registers) == 1:
            return lambda client: client.write_register(address, registers[0], device_id=unit)
        return lambda client: client.write_registers(address, registers, device_id=unit)

    # -- one request ------------------------------------------------------------------

    async def _call(self, what: str, request: Request) -> ModbusPDU:
        """Run one request against the timeout and the connection dropping, whichever first.

        Raises :class:`ConnectionLost`, or :class:`_RequestFailed` for a timeout
        or an answer pymodbus could not match to the request.
        """
        async with self._request_lock:
            client, lost = self._client, self._lost
            if client is None or lost is None:
                raise ConnectionLost(f"{self.device_name}: not connected to {self.address}")
            if lost.done() or not client.connected:
                raise await self._lose(f"the connection to {self.address} was closed")

            async def guarded() -> ModbusPDU:
                # checked in the same step in which pymodbus sends, so that it never
                # reconnects on its own (its execute() connects when there is no transport)
                if not client.connected:
                    raise ConnectionException("connection closed")
                return await request(client)

            task = asyncio.ensure_future(guarded())
            try:
                await asyncio.wait(
                    (task, lost), timeout=self.config.timeout, return_when=asyncio.FIRST_COMPLETED
                )
            except BaseException:  # cancelled from outside: do not leave the request running
                task.cancel()
                raise
            if not task.done():
                await _cancel(task)
                if lost.done():
                    if self._client is not client:  # close() was called meanwhile: not a loss
                        raise ConnectionLost(f"{self.device_name}: closed during {what}")
                    raise await self._lose(f"the connection to {self.address} closed during {what}")
                await self._timed_out(what)
            if task.cancelled():
                raise await self._lose(f"{what} was cancelled by the Modbus client")
            exc = task.exception()
            if exc is None:
                self._silent_requests = 0
                return task.result()
            if isinstance(exc, ConnectionException) or not client.connected:
                raise await self._lose(f"the connection to {self.address} closed during {what}")
            if isinstance(exc, ModbusException):
                # an answer came but pymodbus refused it (e.g. another unit id than asked)
                self._silent_requests = 0
                raise _RequestFailed("decode", f"{what}: bad answer: {exc}") from exc
            raise exc

    async def _timed_out(self, what: str) -> NoReturn:
        self._silent_requests += 1
        reason = f"no answer to {what} within {self.config.timeout:g} s"
        if self._silent_requests < MAX_SILENT_REQUESTS:
            raise _RequestFailed("timeout", reason)
        self.errors["timeout"] += 1
        raise await self._lose(
            f"{reason}; {self._silent_requests} requests in a row got no answer: "
            "the connection is presumed dead"
        )

    async def _lose(self, reason: str) -> ConnectionLost:
        """Count and log a lost connection, drop the client, return the error to raise."""
        self.errors["connection_lost"] += 1
        log.warning("%s: %s", self.device_name, reason)
        await self.close()
        return ConnectionLost(f"{self.device_name}: {reason}")

    # -- planning ---------------------------------------------------------------------

    def _plan_for(self, group: PollGroup) -> _PollPlan:
        plan = self._plans.get(group.tag_ids)
        if plan is None:
            plan = self._plans[group.tag_ids] = self._build_plan(group.tag_ids)
        return plan

    def _build_plan(self, tag_ids: Sequence[int]) -> _PollPlan:
        unknown = [t for t in tag_ids if t not in self._tags]
        if unknown:
            raise ValueError(f"tag ids {unknown} are not tags of device {self.device_name!r}")
        cfg = self.config
        wanted = dict.fromkeys(tag_ids)  # unique, in order
        spans = []
        for tag_id in wanted:
            index = self._position[tag_id]
            tag = cfg.tags[index]
            spans.append(TagSpan(index, tag.table, tag.address, tag.register_count, tag.name))
        requests = plan_requests(
            spans,
            max_registers=cfg.max_request_registers,
            max_bits=cfg.max_request_bits,
            max_gap=cfg.max_gap,
        )
        reads: list[_PlannedRead] = []
        batch_ids: list[int] = []
        for request in requests:
            fields = []
            for member in request.members:
                tag = cfg.tags[member.index]
                fields.append(Field(member.offset, tag.type, tag.byte_order))
                batch_ids.append(self.tag_ids[member.index])
            function_code, method = _READS[request.table]
            start = len(batch_ids) - len(fields)
            reads.append(
                _PlannedRead(
                    request,
                    function_code,
                    method,
                    DecodePlan(fields, request.count),
                    slice(start, len(batch_ids)),
                )
            )
        log.debug(
            "%s: %d tags in %d requests: %s",
            cfg.name,
            len(batch_ids),
            len(reads),
            ", ".join(r.request.describe() for r in reads),
        )
        return _PollPlan(tuple(reads), np.array(batch_ids, dtype=np.int32))


def _exception_failure(what: str, code: int) -> _RequestFailed:
    name = EXCEPTION_NAMES.get(code, "unknown exception code")
    return _RequestFailed(f"exception_{code}", f"{what}: device answered exception {code} ({name})")


def _watch_disconnect(lost: asyncio.Future[None]) -> Callable[[bool], None]:
    """pymodbus ``trace_connect`` callback resolving ``lost`` when the connection drops."""

    def on_change(connected: bool) -> None:
        if not connected and not lost.done():
            lost.set_result(None)

    return on_change


def _record_connect_errors(client: AsyncModbusTcpClient, errors: list[BaseException]) -> None:
    """Keep the OSError of a failed connect, which pymodbus logs and swallows.

    ``client.connect()`` only returns False; the reason (refused, DNS, no route)
    is the first thing an engineer needs. Wrapping pymodbus's connection factory
    keeps pymodbus's own connect path; without it the reason is just less precise.
    """
    ctx = getattr(client, "ctx", None)
    create = getattr(ctx, "call_create", None)
    if create is None:
        return

    async def create_recording() -> object:
        try:
            return await create()
        except (OSError, ValueError) as exc:
            errors.append(exc)
            raise

    ctx.call_create = create_recording  # type: ignore[union-attr]


async def _cancel(task: asyncio.Future[ModbusPDU]) -> None:
    """Cancel ``task`` and wait until it has finished, without swallowing our own cancellation."""
    task.cancel()
    await asyncio.wait((task,))
    if not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" warning
