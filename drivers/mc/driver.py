"""The MC protocol (SLMP) driver: planned batch and random reads decoded in batches, writes,
errors as qualities.

One device, one connection (TCP or UDP, :mod:`drivers.mc.transport`), one request
at a time. The device runner owns the connection's life; inside a connection the
driver reopens the link by itself when an answer went missing or came garbled
(a 3E stream is out of step then: see transport.py), counting ``resync``.

Errors, see README.md: an end code, a timeout, an answer cut off or garbled makes
the tags of that one request BAD (NaN) and counts the error; a connection closed by
the device, a link that cannot be reopened, or :data:`MAX_SILENT_REQUESTS` requests in a
row without an answer raise :class:`ConnectionLost`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from drivers.base import Driver, PlanCache, PollGroup
from drivers.mc import frames
from drivers.mc.codec import AnswerDecoder, field_of, tag_words, words_of
from drivers.mc.config import McDeviceConfig, McTagConfig
from drivers.mc.devices import DEVICES, Address
from drivers.mc.end_codes import counter_of, describe_end_code
from drivers.mc.frames import DeviceRef
from drivers.mc.planner import BatchRead, RandomRead, ReadRequest, TagSpan, plan_reads
from drivers.mc.transport import Link, TcpLink, UdpLink
from drivers.modbus.codec import Field
from gateway.errors import (
    ConnectionLost,
    DeviceUnreachable,
    DeviceWriteRefused,
    McFrameError,
    RegisterDecodeError,
    RequestFailed,
    RequestRefused,
)
from gateway.types import DataType, Quality, SampleBatch

log = logging.getLogger(__name__)

#: requests in a row without a whole answer after which the connection is presumed dead
MAX_SILENT_REQUESTS = 3
#: failures worth sending the same read again
_RETRYABLE = frozenset({"timeout", "short_answer", "garbled", "decode"})
DEFAULT_GROUP = "default"
#: the end code of a command the device does not have (C059H): for a random read, the
#: driver falls back to batch reads
_UNSUPPORTED = counter_of(0xC059)


@dataclass(frozen=True, slots=True)
class _PlannedRead:
    """A read with its request frame, its decoder and the slice of the batch its tags fill."""

    request: ReadRequest
    frame: bytes  # the whole request (4E: its serial number is set per exchange)
    answer_bytes: int  # data bytes a good answer carries
    gather: npt.NDArray[np.intp] | None  # random reads: answer words -> segment order
    out: slice
    what: str
    base: int  # where its words go in the poll's word buffer
    words: int  # how many (a random read's count is a sum over its segments: kept here)


@dataclass(frozen=True, slots=True)
class _PollPlan:
    reads: tuple[_PlannedRead, ...]
    tag_ids: npt.NDArray[np.int32]
    has_objects: bool
    #: the reads' words one after another (each in segment order), and the decoder of all
    #: the poll's tags at once from them: a few NumPy calls a poll, not a few an answer
    words: int
    decoder: AnswerDecoder | None


class McDriver(Driver):
    """A MELSEC CPU or Ethernet module on the MC protocol, 3E or 4E binary frames."""

    def __init__(self, config: McDeviceConfig, tag_ids: Sequence[int]) -> None:
        super().__init__(config.name, tag_ids, len(config.tags))
        self.config = config
        self._series = config.plc_series
        self._long = config.plc_series == "iq-r"  # 4-byte device numbers, subcommands 0002/3
        self._route = config.route
        self._route_bytes = self._route.pack()
        self._answer_head = b"\xd0\x00" + self._route_bytes  # a 3E answer's first 7 bytes
        self._timer = config.timer_units
        self._tags: dict[int, McTagConfig] = dict(zip(self.tag_ids, config.tags, strict=True))
        self._where: dict[int, Address] = {
            tag_id: tag.location(self._series) for tag_id, tag in self._tags.items()}
        self._group = PollGroup(DEFAULT_GROUP, config.poll_interval, self.tag_ids)
        self._plans: PlanCache[_PollPlan] = PlanCache(self._build_plan)
        #: random reads planned; off when the config says so or the device refused them
        self._random_reads = config.random_reads
        self._plan_for(self.tag_ids)  # plan errors show at construction
        self._link: Link | None = None
        self._lock = asyncio.Lock()
        self._serial = 0
        self._silent = 0
        self._late_seen = 0
        #: reads currently failing (by description: a request's hash walks all its members),
        #: with their error counter, to log transitions only
        self._failing: dict[str, str] = {}
        #: what the CPU said it is (Read CPU model), once asked
        self.cpu_model: str | None = None

    # -- description ------------------------------------------------------------------

    @property
    def address(self) -> str:
        return self.config.address

    @property
    def requests(self) -> tuple[ReadRequest, ...]:
        """The reads of one poll of all tags, as planned."""
        return tuple(r.request for r in self._plan_for(self.tag_ids).reads)

    @property
    def connected(self) -> bool:
        return self._link is not None and self._link.is_open

    # -- connection -------------------------------------------------------------------

    def _new_link(self) -> Link:
        cfg = self.config
        link_class = TcpLink if cfg.transport == "tcp" else UdpLink
        return link_class(cfg.host, cfg.port, cfg.frame)

    async def connect(self) -> None:
        """TCP: connect. UDP has no connection: the CPU is asked its model, and an answer
        (any answer, an end code too) says it is there."""
        await self.close()
        link = self._new_link()
        try:
            async with asyncio.timeout(self.config.timeout):
                await link.open()
        except TimeoutError:
            link.close()
            raise DeviceUnreachable(f"no answer from {self.address} within "
                                    f"{self.config.timeout:g} s (connect timed out)") from None
        except BaseException:  # DeviceUnreachable with its reason, or cancelled
            link.close()
            raise
        self._link = link
        self._silent = 0
        self._late_seen = 0
        if self.config.transport == "udp":
            try:
                await self._ask_model()
            except RequestFailed as failure:
                if not failure.counter.startswith("mc_end_code_"):
                    await self.close()
                    raise DeviceUnreachable(f"{self.address}: {failure.reason}") from None
                self.cpu_model = f"unknown ({failure.reason})"  # it answered: it is there
            except ConnectionLost as exc:
                raise DeviceUnreachable(str(exc)) from None
        log.info("%s: connected to %s (%s, %s frames)", self.device_name, self.address,
                 self._series, self.config.frame.upper())

    async def close(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close()

    async def identity(self) -> str | None:
        """The CPU model (Read CPU model, 0101), e.g. ``Q03UDVCPU (model code 0268H)``."""
        if self.cpu_model is None:
            try:
                await self._ask_model()
            except RequestFailed as failure:
                return f"unknown ({failure.reason})"
        return self.cpu_model

    async def _ask_model(self) -> str:
        serial = self._next_serial()
        frame = frames.read_type_name(self._route, self._timer, serial)
        data = await self._request("read CPU model", frame, serial)
        if len(data) < 16:
            raise RequestFailed("decode", f"read CPU model: {len(data)} bytes of answer, "
                                 "expected 18")
        name = data[:16].split(b"\0", 1)[0].decode("ascii", errors="replace").strip()
        code = f" (model code {int.from_bytes(data[16:18], 'little'):04X}H)" if len(
            data) >= 18 else ""
        self.cpu_model = f"{name}{code}"
        return self.cpu_model

    # -- reading ----------------------------------------------------------------------

    def poll_groups(self) -> Sequence[PollGroup]:
        return (self._group,)

    async def read(self, group: PollGroup) -> SampleBatch:
        """The group's planned reads one after another (one request at a time); each
        answer is decoded while the next request is on its way, so decoding costs the poll
        no time of its own but the last answer's."""
        plan = self._plan_for(group.tag_ids)
        n = len(plan.tag_ids)
        values = np.empty(n, dtype=object if plan.has_objects else np.float64)
        ts_ns = np.empty(n, dtype=np.int64)
        quality = np.zeros(n, dtype=np.uint8)  # Quality.GOOD (np.full with the enum is slow)
        bad_value = None if plan.has_objects else np.nan
        words = np.zeros(plan.words, dtype="<u2")
        failed: list[slice] = []
        answered: list[tuple[_PlannedRead, bytes]] = []

        def decode_answered() -> None:
            while answered:  # each answer's words into the poll's buffer, in segment order
                read, data = answered.pop()
                answer = words_of(data)
                end = read.base + read.words
                words[read.base:end] = answer if read.gather is None else answer[read.gather]

        for read in plan.reads:
            sent = [time.time_ns()]  # replaced by the time the request actually leaves
            try:
                data = await self._read_with_retries(read, sent, decode_answered)
            except RequestFailed as failure:
                quality[read.out] = Quality.BAD
                failed.append(read.out)
                self._note_failure(read, failure)
            else:
                answered.append((read, data))
                if self._failing and self._failing.pop(read.what, None) is not None:
                    log.info("%s: %s answers again", self.device_name, read.what)
            ts_ns[read.out] = sent[0]
        decode_answered()
        if plan.decoder is not None:
            try:
                plan.decoder.decode(words, values)
            except RegisterDecodeError as exc:  # the lengths were checked: a codec bug
                values[:] = bad_value
                quality[:] = Quality.BAD
                for read in plan.reads:
                    self._note_failure(read, RequestFailed("decode", f"{read.what}: {exc}"))
        for out in failed:  # decoded from zeros: their tags are bad
            values[out] = bad_value
        return SampleBatch(plan.tag_ids.copy(), values, ts_ns, quality)

    async def _read_with_retries(self, read: _PlannedRead, sent: list[int],
                                 meanwhile: Callable[[], None] | None = None) -> bytes:
        attempts = self.config.retries + 1
        for attempt in range(attempts):
            serial = self._next_serial()
            frame = read.frame if serial is None else _with_serial(read.frame, serial)
            try:
                data = await self._request(read.what, frame, serial, sent, meanwhile)
                if len(data) != read.answer_bytes:
                    raise RequestFailed("decode", f"{read.what}: answer has {len(data)} bytes "
                                         f"of data, expected {read.answer_bytes}")
                return data
            except RequestFailed as failure:
                if attempt == attempts - 1 or failure.counter not in _RETRYABLE:
                    raise
                self.errors[failure.counter] += 1
                log.debug("%s: %s; retrying", self.device_name, failure.reason)
        raise AssertionError("unreachable")

    def _note_failure(self, read: _PlannedRead, failure: RequestFailed) -> None:
        self.errors[failure.counter] += 1
        if isinstance(read.request, RandomRead) and failure.counter == _UNSUPPORTED:
            # a CPU or module without the random read command: batch reads from the next poll
            self._random_reads = False
            self._plans.clear()
            self._failing.clear()
            log.warning("%s: %s; reading with batch reads only from now on (random_reads: "
                        "false skips the try)", self.device_name, failure.reason)
            return
        if self._failing.get(read.what) != failure.counter:
            log.warning("%s: %s; its tags are BAD", self.device_name, failure.reason)
        else:
            log.debug("%s: %s", self.device_name, failure.reason)
        self._failing[read.what] = failure.counter

    # -- writing ----------------------------------------------------------------------

    async def write(self, tag_id: int, value: float | bool | str) -> None:
        tag = self._tags.get(tag_id)
        if tag is None:
            raise DeviceWriteRefused(f"tag id {tag_id} is not a tag of device {self.device_name!r}")
        where = self._where[tag_id]
        if where.device.read_only:
            raise DeviceWriteRefused(f"{tag.name}: {where.device.read_only}")
        if where.bit is not None:
            raise DeviceWriteRefused(f"{tag.name}: a bit of a word device is read-only")
        ref = DeviceRef(where.device.code, where.number)
        serial = self._next_serial()
        try:
            if tag.type is DataType.BOOL:
                if isinstance(value, str) or value not in (0, 1):
                    raise ValueError(f"{value!r} is not a boolean (true/false or 0/1)")
                frame = frames.batch_write(self._route, self._timer, ref, [int(value)],
                                           bits=True, long=self._long, serial=serial)
            else:
                if not isinstance(value, str) and not math.isfinite(float(value)):
                    raise ValueError(f"{value!r} is not a finite number")
                words = tag_words(tag, value)
                frame = frames.batch_write(self._route, self._timer, ref, words,
                                           long=self._long, serial=serial)
        except ValueError as exc:
            raise DeviceWriteRefused(f"{tag.name}: {exc}") from None
        what = f"write {tag.name} ({tag.address})"
        try:
            await self._request(what, frame, serial)
        except RequestFailed as failure:
            self.errors[failure.counter] += 1
            if failure.counter in ("timeout", "short_answer", "garbled"):
                failure.reason += "; the value may or may not have been written"
            raise DeviceWriteRefused(failure.reason) from None
        log.info("%s: wrote %r to %s", self.device_name, value, tag.name)

    # -- one request ------------------------------------------------------------------

    def _next_serial(self) -> int | None:
        if self.config.frame != "4e":
            return None
        self._serial = (self._serial + 1) & 0xFFFF
        return self._serial

    async def _request(self, what: str, frame: bytes, serial: int | None,
                       sent: list[int] | None = None,
                       meanwhile: Callable[[], None] | None = None) -> bytes:
        """Send one request and return its answer's data (end code 0).

        ``sent[0]`` gets the time the request left; ``meanwhile`` runs while it is on its
        way. Raises :class:`RequestFailed` for a
        timeout, an answer cut off, garbled or not matching, or an end code, and
        :class:`ConnectionLost` when the connection is gone.
        """
        async with self._lock:
            link = self._link
            if link is None:
                raise ConnectionLost(f"{self.device_name}: not connected to {self.address}")
            if not link.is_open:  # closed after an answer went missing or came garbled
                await self._reopen(link, what)
            if sent is not None:
                sent[0] = time.time_ns()
            try:
                raw = await link.exchange(frame, serial, self.config.timeout, meanwhile)
            except RequestFailed as failure:  # timeout or short_answer, said with ``what``
                link.resync()
                self._count_late(link)
                self._silent += 1
                failure.reason = (f"no answer to {what} within {self.config.timeout:g} s"
                                  if failure.counter == "timeout"
                                  else f"{what}: {failure.reason}")
                if self._silent >= MAX_SILENT_REQUESTS:
                    self.errors[failure.counter] += 1
                    raise self._lose(f"{failure.reason}; {self._silent} requests in a row got "
                                     "no answer: the connection is presumed dead") from None
                raise failure from None
            except McFrameError as exc:  # bytes that are no answer frame: out of step
                link.resync()
                self._silent = 0
                raise RequestFailed("garbled", f"{what}: garbled answer ({exc.reason})") from None
            except ConnectionLost as exc:
                raise self._lose(f"{what}: {exc}") from None
            self._silent = 0
            if link.late_answers != self._late_seen:
                self._count_late(link)
        size = 9 if serial is None else 13
        expected = self._answer_head if serial is None else (
            b"\xd4\x00" + serial.to_bytes(2, "little") + b"\x00\x00" + self._route_bytes)
        if raw.startswith(expected) and raw[size:size + 2] == b"\x00\x00":
            return raw[size + 2:]  # the usual answer: from the route asked, end code 0
        try:
            response = frames.parse_response(raw, self.config.frame, self._route, serial)
        except McFrameError as exc:
            if exc.counter == "garbled":
                link.resync()
                raise RequestFailed("garbled", f"{what}: {exc.reason}") from None
            raise RequestFailed("decode", f"{what}: {exc.reason}") from None
        if response.end_code:
            raise RequestRefused(counter_of(response.end_code),
                                 f"{what}: the device answered end code "
                                 f"{describe_end_code(response.end_code)}", response.end_code)
        return response.data

    async def _reopen(self, link: Link, what: str) -> None:
        """A link dropped to resync (a TCP stream out of step, a 3E UDP socket that may get a
        late answer): a fresh one before the next request."""
        try:
            async with asyncio.timeout(self.config.timeout):
                await link.open()
        except (TimeoutError, DeviceUnreachable) as exc:
            link.close()
            reason = str(exc) if isinstance(exc, DeviceUnreachable) else "reconnect timed out"
            raise self._lose(f"cannot reopen the connection for {what}: {reason}") from None
        self.errors["resync"] += 1
        log.debug("%s: reopened the connection to %s", self.device_name, self.address)

    def _count_late(self, link: Link) -> None:
        late = link.late_answers - self._late_seen
        if late > 0:
            self.errors["late_answer"] += late
            self._late_seen = link.late_answers

    def _lose(self, reason: str) -> ConnectionLost:
        """Count a lost connection and close it; the error to raise (the runner logs it)."""
        self.errors["connection_lost"] += 1
        log.debug("%s: %s", self.device_name, reason)
        link, self._link = self._link, None
        if link is not None:
            link.close()
        return ConnectionLost(f"{self.device_name}: {reason}")

    # -- planning ---------------------------------------------------------------------

    def _plan_for(self, tag_ids: tuple[int, ...]) -> _PollPlan:
        return self._plans.get(tag_ids)

    def _build_plan(self, tag_ids: Sequence[int]) -> _PollPlan:
        unknown = [t for t in tag_ids if t not in self._tags]
        if unknown:
            raise ValueError(f"tag ids {unknown} are not tags of device {self.device_name!r}")
        cfg = self.config
        spans = []
        for tag_id in dict.fromkeys(tag_ids):
            tag, where = self._tags[tag_id], self._where[tag_id]
            start = where.number // 16 if where.device.bit else where.number
            spans.append(TagSpan(self.tag_position[tag_id], where.device.name, start,
                                 tag.words, tag.name))
        requests = plan_reads(spans, max_batch_words=cfg.max_batch_words,
                              max_random_points=cfg.random_points,
                              random_reads=self._random_reads, max_gap=cfg.max_gap)
        reads: list[_PlannedRead] = []
        batch_ids: list[int] = []
        has_objects = False
        all_fields: list[Field] = []
        words = 0
        for request in requests:
            fields = []
            for member in request.members:
                tag_id = self.tag_ids[member.index]
                tag = self._tags[tag_id]
                fields.append(field_of(tag, self._where[tag_id], member.offset))
                batch_ids.append(tag_id)
                has_objects |= tag.type.is_object
            AnswerDecoder(fields, request.words)  # its checks: each field within its answer
            start = len(batch_ids) - len(fields)
            frame, answer, gather = self._frame_of(request)
            reads.append(_PlannedRead(request, frame, answer, gather,
                                      slice(start, len(batch_ids)), request.describe(), words,
                                      request.words))
            all_fields += [replace(f, offset=f.offset + words) for f in fields]
            words += request.words
        log.debug("%s: %d tags in %d requests: %s", cfg.name, len(batch_ids), len(reads),
                  "; ".join(r.what for r in reads))
        decoder = AnswerDecoder(all_fields, words) if all_fields else None
        return _PollPlan(tuple(reads), np.array(batch_ids, dtype=np.int32), has_objects, words,
                         decoder)

    def _frame_of(self, request: ReadRequest
                  ) -> tuple[bytes, int, npt.NDArray[np.intp] | None]:
        """The request frame (serial 0 for 4E, set per exchange), the data bytes of its
        answer, and for a random read the gather of its words."""
        serial = 0 if self.config.frame == "4e" else None
        if isinstance(request, BatchRead):
            seg = request.segment
            ref = DeviceRef(DEVICES[seg.device].code, seg.head)
            frame = frames.batch_read(self._route, self._timer, ref, seg.words,
                                      long=self._long, serial=serial)
            return frame, 2 * seg.words, None
        assert isinstance(request, RandomRead)
        word_points, dword_points, gather = request.layout

        def refs(points: tuple[tuple[str, int], ...]) -> list[DeviceRef]:
            out = []
            for name, start in points:
                device = DEVICES[name]
                out.append(DeviceRef(device.code, start * 16 if device.bit else start))
            return out

        frame = frames.random_read(self._route, self._timer, refs(word_points),
                                   refs(dword_points), long=self._long, serial=serial)
        return frame, 2 * len(word_points) + 4 * len(dword_points), gather


def _with_serial(frame: bytes, serial: int) -> bytes:
    """A 4E request frame with its serial number (bytes 2-3) set."""
    return frame[:2] + serial.to_bytes(2, "little") + frame[4:]
