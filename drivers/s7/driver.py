"""The S7 driver: planned multi-variable reads over python-snap7's ISO-on-TCP connection.

The only module that imports python-snap7 (pinned 3.3; ``tests/drivers/s7/
test_s7_snap7_pins.py`` pins what is relied on). From snap7 the driver takes the
connection: TCP, the COTP connection request with the TSAPs (connection type, rack,
slot), the PDU size negotiation, the raw exchange of one S7 PDU
(``AsyncClient.iso_exchange_buffer``, one request at a time under the client's lock)
and the SZL identification (``get_order_code``, ``get_cpu_info``). The read-var and
write-var PDUs are the gateway's own (drivers/s7/frames.py): snap7 3.3's
``AsyncClient.read_multi_vars`` sends one request per variable, and its optimiser (sync
``Client`` only) reads bytes alone and fails a whole request when one item fails.

Errors (README.md): an item answered with a return code (a DB that does not exist, an
address out of range or an optimized DB, access denied), a request the PLC refuses as
a whole (PUT/GET off on an S7-1200/1500), an answer whose S7 data does not fit its
request, a value that does not decode (a STRING header longer than its maximum): the
tags concerned are BAD and the error counted. Answers come in order on one connection,
so a request without an answer in time, or bytes that are no ISO-on-TCP frame, leave the
connection out of step: it is closed (:class:`ConnectionLost`) and the device runner
opens a new one.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import numpy.typing as npt
from snap7 import AsyncClient
from snap7.error import S7ConnectionError, S7Error, S7TimeoutError
from snap7.type import Parameter

from drivers.base import Driver, PlanCache, PollGroup
from drivers.s7.address import Area
from drivers.s7.codec import DecodePlan, Field, encode
from drivers.s7.config import DEFAULT_GROUP, S7DeviceConfig, S7TagConfig
from drivers.s7.frames import (
    ItemFailed,
    ReadAnswerShape,
    ReadItem,
    max_write_payload,
    parse_read_items,
    parse_read_response,
    parse_write_response,
    read_job,
    read_param,
    read_request,
    write_request,
)
from drivers.s7.planner import ReadRequest, TagSpan, plan_reads
from drivers.watchdog import Watchdog
from gateway.errors import (
    ConnectionLost,
    DeviceUnreachable,
    DeviceWriteRefused,
    DriverError,
    RequestFailed,
    S7FrameError,
    S7JobRefused,
)
from gateway.types import DataType, Quality, SampleBatch

log = logging.getLogger(__name__)
# snap7 logs every connect and disconnect at INFO; the driver says what matters itself
logging.getLogger("snap7").setLevel(logging.WARNING)

#: seconds snap7's own receive waits beyond the configured timeout (a backstop)
BACKSTOP_SECONDS = 1.0
PUT_GET_OFF = 0x8104


@dataclass(frozen=True, slots=True)
class _Job:
    """A planned read request with what every poll needs of it, computed once."""

    request: ReadRequest
    items: tuple[ReadItem, ...]
    param: bytes  # the read-var parameter; each poll adds a header with its reference
    description: str  # "DB1 bytes 0..17 (18 bytes), T1..2"
    what: str  # "read of ...", for messages
    wheres: tuple[str, ...]  # each item described
    starts: tuple[int, ...]  # where each item's bytes go in the poll buffer
    sizes: tuple[int, ...]  # each item's bytes
    blocks: tuple[int, ...]  # the blocks its items bring (each once)
    #: the shape of its usual answer, once one came whole: [(shape, answer bytes -> buffer)]
    #: and, when the job is the poll's only one, the poll's decoding over that answer's bytes
    learned: list[tuple[ReadAnswerShape, npt.NDArray[np.intp], npt.NDArray[np.intp],
                        DecodePlan | None]]


def _learn(job: _Job, answer: bytes, decoder: DecodePlan | None) -> None:
    """Keep the shape of an answer in which every item of ``job`` came (see
    :class:`ReadAnswerShape`) with the byte gather that puts its items into the buffer and,
    for the only job of a poll (``decoder``: the poll's), that decoding moved onto the
    answer's own bytes (:func:`_over_answer`)."""
    shape = ReadAnswerShape.of(answer, job.sizes)
    src = [np.arange(a, b, dtype=np.intp) for a, b in shape.spans]
    dst = [np.arange(start, start + size, dtype=np.intp)
           for start, size in zip(job.starts, job.sizes, strict=True)]
    direct = _over_answer(decoder, job, shape) if decoder is not None else None
    job.learned[:] = [(shape, np.concatenate(src), np.concatenate(dst), direct)]


def _over_answer(decoder: DecodePlan, job: _Job, shape: ReadAnswerShape) -> DecodePlan | None:
    """``decoder``'s fields at their places in an answer of ``shape`` (each field lies in
    one item, whose data the answer holds at the item's span): the values straight from the
    answer, without copying it into a poll buffer. None when a field spans two items."""
    fields = []
    for f in decoder.fields:
        for start, size, (first, _) in zip(job.starts, job.sizes, shape.spans, strict=True):
            if start <= f.offset and f.offset + f.address.size <= start + size:
                fields.append(Field(first + f.offset - start, f.address, f.encoding))
                break
        else:
            return None
    return DecodePlan(fields, shape.size)


@dataclass(frozen=True, slots=True)
class _PollPlan:
    requests: tuple[ReadRequest, ...]
    jobs: tuple[_Job, ...]
    block_offsets: tuple[int, ...]  # where each block starts in the poll buffer
    block_of_field: npt.NDArray[np.intp]
    decoder: DecodePlan
    tag_ids: npt.NDArray[np.int32]  # batch order: field order
    block_names: tuple[str, ...]


class S7Driver(Driver):
    """One S7 PLC (S7-200 SMART, 300, 400, 1200, 1500 with PUT/GET) on ISO-on-TCP."""

    def __init__(self, config: S7DeviceConfig, tag_ids: Sequence[int]) -> None:
        super().__init__(config.name, tag_ids, len(config.tags))
        self.config = config
        self._tags: dict[int, S7TagConfig] = dict(zip(self.tag_ids, config.tags, strict=True))
        self._groups = self._make_groups()
        self._client: AsyncClient | None = None
        self._ref = 0
        #: the PDU size the PLC granted on the last connection (None before one)
        self.pdu_size: int | None = None
        #: what the PLC said it is (SZL), shown by ``check``; None when it does not say
        self._identity: str | None = None
        #: the plans of each PDU size, found by their tag ids' identity (drivers/base.py)
        self._plans: dict[int, PlanCache[_PollPlan]] = {}
        self._waiting: asyncio.Task[object] | None = None  # the task waiting for an answer
        self._expired = False  # its deadline cancelled it
        self._watchdog = Watchdog(self._expire)
        self._failing: dict[str, str] = {}
        self._fresh: dict[str, list[str]] = {}
        self._recovered: list[str] = []
        # a plan for the smallest PDU shows planning errors at construction
        for group in self._groups:
            self._plan_for(group.tag_ids, 240)

    # -- description ------------------------------------------------------------------
    @property
    def address(self) -> str:
        return self.config.address

    @property
    def connected(self) -> bool:
        client = self._client
        return client is not None and client.get_connected()

    def requests(self, pdu_size: int | None = None) -> tuple[ReadRequest, ...]:
        """The read requests of one poll of every tag at ``pdu_size`` (default: the
        negotiated one, or 240)."""
        size = pdu_size or self.pdu_size or 240
        return tuple(r for g in self._groups for r in self._plan_for(g.tag_ids, size).requests)

    # -- connection -------------------------------------------------------------------
    async def connect(self) -> None:
        await self.close()
        cfg = self.config
        local, remote = cfg.tsaps
        client = AsyncClient()
        client.set_connection_params(cfg.host, local, remote)
        client.set_connection_type(remote >> 8)
        client.set_param(Parameter.PDURequest, cfg.pdu_size)
        cancels = _cancels()
        try:
            async with asyncio.timeout(cfg.timeout):
                await client.connect(cfg.host, (remote >> 5) & 7, remote & 31, cfg.port)
            _honour_cancel(cancels)
        except BaseException as exc:
            await _quietly_disconnect(client)
            if isinstance(exc, TimeoutError | S7Error | OSError):
                reason = self._unreachable_reason(exc)
                log.debug("%s: %s", self.device_name, reason)
                raise DeviceUnreachable(reason) from None
            raise
        if client.connection is not None:  # snap7's receive timeout: a backstop to ours
            client.connection.timeout = cfg.timeout + BACKSTOP_SECONDS
        self._client = client
        self.pdu_size = client.get_pdu_length()
        self._identity = await self._identify(client)
        log.info("%s: connected to %s, PDU %d bytes%s", self.device_name,
                 cfg.describe_connection(), self.pdu_size,
                 f" ({self._identity})" if self._identity else "")

    async def identity(self) -> str | None:
        """The CPU's model, order number and firmware from the SZL, read at connect (also
        with PUT/GET off); None when the CPU did not say."""
        return self._identity

    async def close(self) -> None:
        client, self._client = self._client, None
        self._waiting = None
        self._watchdog.stop()
        if client is not None:
            await _quietly_disconnect(client)

    def _unreachable_reason(self, exc: BaseException) -> str:
        cfg = self.config
        remote = cfg.tsaps[1]
        text = str(exc)
        if isinstance(exc, TimeoutError | S7TimeoutError):
            return f"no answer from {cfg.address} within {cfg.timeout:g} s (connect timed out)"
        if "Expected COTP CC, got 0x80" in text or "Connection closed by peer" in text:
            kind = {1: "PG", 2: "OP", 3: "S7 basic"}.get(remote >> 8, f"type {remote >> 8}")
            return (f"the PLC at {cfg.address} refused the ISO connection to TSAP "
                    f"{remote >> 8:02X}.{remote & 0xFF:02X} ({kind}, rack {(remote >> 5) & 7} "
                    f"slot {remote & 31}): the rack or slot is wrong for this CPU (S7-300: "
                    f"slot 2; S7-1200/1500, S7-200 SMART: slot 1), or all its {kind} "
                    "connections are in use")
        cause = _root(exc)
        if isinstance(cause, ConnectionRefusedError):
            return (f"connection refused by {cfg.address}: nothing listens on port {cfg.port} "
                    "or a firewall rejects it")
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve host name {cfg.host!r} (DNS lookup failed: {cause.strerror})"
        if isinstance(cause, OSError) and cause.strerror:
            return f"cannot connect to {cfg.address}: {cause.strerror}"
        return f"cannot connect to {cfg.address}: {text}"

    async def _identify(self, client: AsyncClient) -> str | None:
        """CPU module and order number from the SZL (0x001C, 0x0011), where the PLC tells."""
        parts: list[str] = []
        cancels = _cancels()
        try:
            async with asyncio.timeout(self.config.timeout):
                info = await client.get_cpu_info()
                module = (info.ModuleTypeName or info.ModuleName or b"").decode("ascii", "replace")
                if module.strip():
                    parts.append(module.strip())
                order = await client.get_order_code()
                number = order.OrderCode.decode("ascii", "replace").strip()
                if number:
                    parts.append(number)
                    if order.V1 or order.V2 or order.V3:
                        parts.append(f"firmware V{order.V1}.{order.V2}.{order.V3}")
            _honour_cancel(cancels)
        except TimeoutError:
            await self.close()
            raise DeviceUnreachable(f"{self.config.address}: no answer to the identification "
                                    f"(SZL) request within {self.config.timeout:g} s") from None
        except (S7ConnectionError, OSError) as exc:
            await self.close()
            raise DeviceUnreachable(f"{self.config.address}: the connection closed during "
                                    f"identification (SZL): {exc}") from None
        except Exception as exc:  # the PLC does not tell, or tells in a form snap7 cannot parse
            log.debug("%s: no identification from the SZL: %r", self.device_name, exc)
        return ", ".join(parts) or None

    async def _exchange(self, pdu: bytes, what: str) -> bytes:
        """Send one PDU and return the answer; a lost or out-of-step connection raises
        :class:`ConnectionLost`."""
        client = self._client
        if client is None:
            raise ConnectionLost(f"{self.device_name}: not connected")
        task = asyncio.current_task()
        assert task is not None
        cancels = task.cancelling()
        self._arm(task)
        try:
            answer = await client.iso_exchange_buffer(bytearray(pdu))
        except asyncio.CancelledError:
            expired = self._disarm()
            if not (expired and task.uncancel() <= cancels):
                raise  # cancelled from outside
        except (S7Error, OSError) as exc:
            if self._disarm():
                task.uncancel()
            text = str(exc)
            if "Invalid" in text or "Expected COTP" in text:
                self.errors["garbled"] += 1
                raise await self._lose(f"{what}: bytes that are no ISO-on-TCP frame came "
                                       f"({text}); the connection is closed to start afresh"
                                       ) from None
            raise await self._lose(f"the connection to {self.address} closed during {what} "
                                   f"({text})") from None
        else:
            if self._disarm():  # the answer came with the deadline and snap7 kept it: take it
                task.uncancel()
            if task.cancelling() > cancels:  # snap7 swallowed a cancel (see _honour_cancel)
                raise asyncio.CancelledError
            return bytes(answer)
        self.errors["timeout"] += 1
        raise await self._lose(f"no answer to {what} within {self.config.timeout:g} s; the "
                               "connection is closed (a late answer would be taken for the "
                               "next one's)")

    def _arm(self, task: asyncio.Task[object]) -> None:
        """Cancel ``task`` (waiting for an answer) when the timeout runs out: one watchdog
        timer per driver (drivers/watchdog.py) rather than a timer per request."""
        self._waiting, self._expired = task, False
        self._watchdog.arm(asyncio.get_running_loop(), self.config.timeout)

    def _disarm(self) -> bool:
        """The request is over; True when its deadline had cancelled the task."""
        self._waiting = None
        self._watchdog.disarm()
        return self._expired

    def _expire(self) -> None:
        task, self._waiting = self._waiting, None
        if task is not None:
            self._expired = True
            task.cancel()

    async def _lose(self, reason: str) -> ConnectionLost:
        self.errors["connection_lost"] += 1
        log.debug("%s: %s", self.device_name, reason)
        await self.close()
        return ConnectionLost(f"{self.device_name}: {reason}")

    def _next_ref(self) -> int:
        self._ref = self._ref % 0xFFFF + 1
        return self._ref

    # -- poll groups ------------------------------------------------------------------
    def _make_groups(self) -> tuple[PollGroup, ...]:
        """One group per configured poll group; string tags in one of their own
        (``<group>/strings``) so that numeric batches stay float64."""
        cfg = self.config
        members: dict[tuple[str, bool], list[int]] = {}
        for tag_id, tag in self._tags.items():
            members.setdefault((tag.poll_group, tag.type is DataType.STRING), []).append(tag_id)
        groups = []
        for name in [DEFAULT_GROUP, *(g.name for g in cfg.poll_groups)]:
            for strings in (False, True):
                ids = members.get((name, strings))
                if ids:
                    label = f"{name}/strings" if strings else name
                    groups.append(PollGroup(label, cfg.interval_of(name), tuple(ids)))
        return tuple(groups)

    def poll_groups(self) -> Sequence[PollGroup]:
        return self._groups

    def _plan_for(self, tag_ids: tuple[int, ...], pdu_size: int) -> _PollPlan:
        plans = self._plans.get(pdu_size)
        if plans is None:
            plans = self._plans[pdu_size] = PlanCache(partial(self._build_plan,
                                                              pdu_size=pdu_size))
        return plans.get(tag_ids)

    def _build_plan(self, tag_ids: tuple[int, ...], pdu_size: int) -> _PollPlan:
        cfg = self.config
        spans = []
        for tag_id in dict.fromkeys(tag_ids):
            tag = self._tags[tag_id]
            a = tag.s7
            spans.append(TagSpan(self.tag_position[tag_id], a.area, a.db, a.start, a.units,
                                 tag.name))
        plan = plan_reads(spans, pdu_size=pdu_size, max_items=cfg.max_items,
                          max_gap=cfg.max_gap)
        offsets = []
        fields: list[Field] = []
        field_blocks: list[int] = []
        ids: list[int] = []
        size = 0
        names = []
        for number, block in enumerate(plan.blocks):
            offsets.append(size)
            first = ReadItem(block.area, block.db, block.start, block.units)
            names.append(first.describe())
            for index, offset in block.members:
                tag = cfg.tags[index]
                fields.append(Field(size + offset, tag.s7, tag.encoding))
                field_blocks.append(number)
                ids.append(self.tag_ids[index])
            size += block.byte_length
        log.debug("%s: %d tags in %d requests at PDU %d: %s", cfg.name, len(ids),
                  len(plan.requests), pdu_size, "; ".join(r.describe() for r in plan.requests))
        jobs = tuple(
            _Job(r, r.items, read_param(r.items), r.describe(), f"read of {r.describe()}",
                 tuple(c.item.describe() for c in r.chunks),
                 tuple(offsets[c.block] + c.offset for c in r.chunks),
                 tuple(c.item.byte_length for c in r.chunks),
                 tuple(dict.fromkeys(c.block for c in r.chunks)), [])
            for r in plan.requests)
        return _PollPlan(plan.requests, jobs, tuple(offsets),
                         np.array(field_blocks, dtype=np.intp), DecodePlan(fields, size),
                         np.array(ids, dtype=np.int32), tuple(names))

    # -- reading ----------------------------------------------------------------------
    async def read(self, group: PollGroup) -> SampleBatch:
        if self._client is None or self.pdu_size is None:
            raise ConnectionLost(f"{self.device_name}: not connected")
        plan = self._plan_for(group.tag_ids, self.pdu_size)
        buffer = bytearray(plan.decoder.size)
        blocks = len(plan.block_offsets)
        failed: set[int] = set()  # blocks with a chunk that did not come
        block_ts = [0] * blocks
        view = np.frombuffer(buffer, dtype=np.uint8)  # writable: the buffer's own bytes
        only: tuple[DecodePlan, bytes] | None = None  # a poll of one answer, decoded as it is
        for job in plan.jobs:
            request = job.request
            sent = time.time_ns()
            ref = self._next_ref()
            try:
                answer = await self._exchange(read_job(ref, job.param), job.what)
                if job.learned and not self._failing:
                    shape, src, dst, direct = job.learned[0]
                    if shape.matches(answer, ref):  # the usual answer: every item came
                        if direct is not None:  # the poll's one answer: decoded as it is
                            only = (direct, answer)
                        else:
                            view[dst] = np.frombuffer(answer, dtype=np.uint8)[src]
                        for block in job.blocks:
                            block_ts[block] = block_ts[block] or sent
                        continue
                results = self._read_items(job, answer, ref)
            except RequestFailed as failure:
                self.errors[failure.counter] += 1
                self._note(job.description, failure.counter, failure.reason)
                for chunk in request.chunks:
                    failed.add(chunk.block)
                    block_ts[chunk.block] = block_ts[chunk.block] or sent
                continue
            if self._failing:
                self._note(job.description, None, "")  # the request as a whole is answered
            whole = True
            for chunk, result, where, start in zip(request.chunks, results, job.wheres,
                                                   job.starts, strict=True):
                block_ts[chunk.block] = block_ts[chunk.block] or sent
                if isinstance(result, ItemFailed):
                    whole = False
                    failed.add(chunk.block)
                    item_failure = _item_failure(result.code,
                                                 self._item_reason(chunk.item, result))
                    self.errors[item_failure.counter] += 1
                    self._note(where, item_failure.counter, item_failure.reason)
                    continue
                buffer[start:start + len(result)] = result
                if self._failing:
                    self._note(where, None, "")
            if whole:
                _learn(job, answer, plan.decoder if len(plan.jobs) == 1 else None)
        n = len(plan.tag_ids)
        values = np.empty(n, dtype=object if plan.decoder.has_objects else np.float64)
        undecodable = (only[0].decode(only[1], values) if only is not None
                       else plan.decoder.decode(buffer, values))
        if len(plan.jobs) == 1:  # one request: one read time for every tag
            ts_ns = np.empty(n, dtype=np.int64)
            ts_ns.fill(block_ts[0] if block_ts else 0)  # cheaper than np.full
        else:
            ts_ns = np.array(block_ts, dtype=np.int64)[plan.block_of_field]
        quality = np.zeros(n, dtype=np.uint8)  # Quality.GOOD
        if failed:
            bad = np.isin(plan.block_of_field, list(failed))
            quality[bad] = Quality.BAD
            values[bad] = None if values.dtype == object else np.nan
        for pos, reason in undecodable.items():
            if quality[pos] == Quality.GOOD:
                self.errors["bad_value"] += 1
                tag = self._tags[int(plan.tag_ids[pos])]
                self._note(f"tag {tag.name}", "bad_value",
                           f"tag {tag.name} ({tag.address}): {reason}")
            quality[pos] = Quality.BAD
        if self._fresh or self._recovered:
            self._log_notes()
        return SampleBatch(plan.tag_ids.copy(), values, ts_ns, quality)

    @staticmethod
    def _read_items(job: _Job, answer: bytes, ref: int) -> list[bytes | ItemFailed]:
        """Each item's data or failure from the answer to ``job`` (the full parse)."""
        what = job.what
        try:
            return parse_read_items(answer, ref, job.sizes, job.items)
        except S7JobRefused as exc:
            raise _refused(exc, what) from None
        except S7FrameError as exc:
            raise RequestFailed("garbled", f"{what}: unusable answer: {exc}") from None

    def _item_reason(self, item: ReadItem, failed: ItemFailed) -> str:
        reason = f"read of {item.describe()}: the PLC answered '{failed.reason}' " \
                 f"(return code 0x{failed.code:02X})"
        if failed.code == 0x05 and item.area is Area.DB:
            reason += (f"; DB{item.db} is shorter than that, or it has optimized block access "
                       "(S7-1200/1500: untick 'Optimized block access' in the DB's properties "
                       "and download it; only absolute addresses are readable over S7comm)")
        elif failed.code == 0x0A and item.area is Area.DB:
            reason += f"; DB{item.db} does not exist in the PLC"
        elif failed.code == 0x03:
            reason += "; the CPU's protection level forbids it (full access, or PUT/GET)"
        return reason

    def _note(self, where: str, counter: str | None, reason: str) -> None:
        """Note a failure (or the end of one) of ``where``; :meth:`_log_notes` says the new
        ones once per poll, one line per kind; repeats go to DEBUG."""
        before = self._failing.get(where)
        if counter is None:
            if before is not None:
                del self._failing[where]
                self._recovered.append(where)
            return
        if before != counter:
            self._fresh.setdefault(counter, []).append(reason)
        else:
            log.debug("%s: %s", self.device_name, reason)
        self._failing[where] = counter

    def _log_notes(self) -> None:
        for reasons in self._fresh.values():
            more = f" (and {len(reasons) - 1} more of this kind)" if len(reasons) > 1 else ""
            log.warning("%s: %s; its tags are BAD%s", self.device_name, reasons[0], more)
        if self._recovered:
            log.info("%s: %s read%s again", self.device_name, ", ".join(self._recovered),
                     "s" if len(self._recovered) == 1 else "")
        self._fresh.clear()
        self._recovered.clear()

    async def read_range(self, item: ReadItem) -> bytes:
        """The bytes of one range as the PLC answers them (``scan``); a refusal raises
        :class:`~gateway.errors.DriverError` with the reason in words."""
        ref = self._next_ref()
        what = f"read of {item.describe()}"
        answer = await self._exchange(read_request(ref, [item]), what)
        try:
            (result,) = parse_read_response(answer, ref, [item])
        except S7JobRefused as exc:
            raise DriverError(_refused(exc, what).reason) from None
        except S7FrameError as exc:
            raise DriverError(f"{what}: unusable answer: {exc}") from None
        if isinstance(result, ItemFailed):
            raise DriverError(self._item_reason(item, result))
        return result

    # -- writing ----------------------------------------------------------------------
    async def write(self, tag_id: int, value: float | bool | str) -> None:
        tag = self._tags.get(tag_id)
        if tag is None:
            raise DeviceWriteRefused(f"tag id {tag_id} is not a tag of device {self.device_name!r}")
        address = tag.s7
        try:
            data = encode(value, address, tag.encoding)
        except ValueError as exc:
            raise DeviceWriteRefused(f"{tag.name}: {exc}") from None
        if self._client is None or self.pdu_size is None:
            raise ConnectionLost(f"{self.device_name}: not connected")
        start = address.start
        if address.type.name == "STRING":
            await self._check_capacity(tag, 1, len(data) - 1)
            start += 1  # current length and characters; the maximum length byte is the PLC's
        elif address.type.name == "WSTRING":
            await self._check_capacity(tag, 2, (len(data) - 2) // 2)
            start += 2
        if address.type.name == "BOOL":
            await self._write_item(tag, ReadItem(address.area, address.db, start, 1,
                                                 address.bit), data)
        else:
            step = max_write_payload(self.pdu_size)
            for first in range(0, len(data), step):  # a long string in several requests
                part = data[first:first + step]
                item = ReadItem(address.area, address.db, start + first, len(part))
                await self._write_item(tag, item, part)
        log.info("%s: wrote %r to %s (%s)", self.device_name, value, tag.name, tag.address)

    async def _check_capacity(self, tag: S7TagConfig, width: int, wanted: int) -> None:
        """A string write must not run past the PLC's own maximum length (which the config
        may declare larger): read it first."""
        a = tag.s7
        item = ReadItem(a.area, a.db, a.start, width)
        ref = self._next_ref()
        what = f"read of the maximum length of {tag.name} ({a.text()})"
        answer = await self._exchange(read_request(ref, [item]), what)
        try:
            (result,) = parse_read_response(answer, ref, [item])
        except (S7JobRefused, S7FrameError) as exc:
            raise DeviceWriteRefused(f"{tag.name}: {what} failed: {exc}") from None
        if isinstance(result, ItemFailed):
            raise DeviceWriteRefused(f"{tag.name}: {self._item_reason(item, result)}")
        maximum = int.from_bytes(result, "big")
        if wanted > maximum:
            raise DeviceWriteRefused(
                f"{tag.name}: the text takes {wanted} characters but the PLC's "
                f"{a.type.name} holds {maximum}")

    async def _write_item(self, tag: S7TagConfig, item: ReadItem, data: bytes) -> None:
        ref = self._next_ref()
        what = f"write of {tag.name} ({item.describe()})"
        answer = await self._exchange(write_request(ref, item, data), what)
        try:
            (code,) = parse_write_response(answer, ref)
        except S7JobRefused as exc:
            raise DeviceWriteRefused(f"{tag.name}: {_refused(exc, what).reason}") from None
        except S7FrameError as exc:
            self.errors["garbled"] += 1
            raise DeviceWriteRefused(f"{tag.name}: unusable answer to the write: {exc}") from None
        if code != 0xFF:
            raise DeviceWriteRefused(f"{tag.name}: {self._item_reason(item, ItemFailed(code))}"
                                .replace("read of", "write of"))


def _cancels() -> int:
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


def _honour_cancel(before: int) -> None:
    """Raise the cancellation snap7 swallowed: on Python 3.11 its ``asyncio.wait_for``
    returns a result that came with the cancel and drops the cancel, and the polling task
    would go on (the gateway then waits 5 s for the device at shutdown)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError


def _root(exc: BaseException) -> BaseException:
    """The error snap7 wrapped (it raises its own from inside ``except``)."""
    seen = exc
    while True:
        inner = seen.__cause__ or seen.__context__
        if inner is None:
            return seen
        seen = inner


def _item_failure(code: int, reason: str) -> RequestFailed:
    """An item's return code as its counter."""
    match code:
        case 0x01:
            return RequestFailed("hardware_fault", reason)
        case 0x03:
            return RequestFailed("access_denied", reason)
        case 0x05:
            return RequestFailed("address_out_of_range", reason)
        case 0x06:
            return RequestFailed("type_unsupported", reason)
        case 0x07:
            return RequestFailed("type_inconsistent", reason)
        case 0x0A:
            return RequestFailed("object_missing", reason)
        case _:
            return RequestFailed("item_error", reason)


def _refused(exc: S7JobRefused, what: str) -> RequestFailed:
    if exc.code == PUT_GET_OFF:
        return RequestFailed("put_get_off", (
            f"{what}: the PLC refuses S7 reads and writes (error 0x8104): on an S7-1200/1500 "
            "enable 'Permit access with PUT/GET communication from remote partner' (CPU "
            "properties > Protection & Security > Connection mechanisms) and download the "
            "hardware configuration"))
    return RequestFailed("pdu_refused", f"{what}: {exc}")


async def _quietly_disconnect(client: AsyncClient) -> None:
    try:
        await client.disconnect()
    except Exception:  # close must not raise (Driver contract)
        log.debug("S7: error while disconnecting", exc_info=True)
