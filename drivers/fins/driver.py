"""The Omron FINS driver: planned reads decoded in batches, bit and word writes, end codes
as qualities.

One :class:`FinsDriver` per PLC, over FINS/UDP or FINS/TCP (:mod:`drivers.fins.link`).
Errors (README.md): an end code, a timeout or an answer of the wrong shape makes the tags
of that one read BAD and counts the error (``end_code_1103``, ``timeout``, ``garbled``,
``decode``); a broken transport raises :class:`ConnectionLost`, and so do
:data:`MAX_SILENT_REQUESTS` timeouts in a row (a PLC that went away over UDP, or a
half-open TCP connection, stays silent otherwise).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from drivers.base import Driver, PlanCache, PollGroup
from drivers.fins.address import Area
from drivers.fins.codec import (
    AnswerDecoder,
    DecodePlan,
    Field,
    bits_of,
    encode_bit,
    encode_words,
    words_of,
)
from drivers.fins.config import DEFAULT_GROUP, FinsDeviceConfig, FinsTagConfig
from drivers.fins.frames import (
    CONTROLLER_DATA_READ,
    MEMORY_AREA_READ,
    MEMORY_AREA_WRITE,
    MULTIPLE_MEMORY_AREA_READ,
    EndCode,
    Frame,
    MultipleReadLayout,
    memory_area_read,
    memory_area_write,
    multiple_memory_area_read,
    parse_controller_data,
    parse_frame,
)
from drivers.fins.link import FinsLink, LinkSettings, TcpLink, UdpLink
from drivers.fins.planner import ReadRequest, TagSpan, plan_requests
from gateway.errors import (
    ConnectionLost,
    DeviceWriteRefused,
    FinsFrameError,
    RequestFailed,
    RequestRefused,
)
from gateway.types import DataType, Quality, SampleBatch

__all__ = ["MAX_SILENT_REQUESTS", "FinsDriver"]

log = logging.getLogger(__name__)

#: timeouts in a row after which the PLC is presumed gone (reconnect with backoff)
MAX_SILENT_REQUESTS = 3
#: failures worth sending the same read again
_RETRYABLE = frozenset({"timeout", "garbled", "decode"})


@dataclass(frozen=True, slots=True)
class _PlannedRead:
    """A read with its command, decoder and the slice of the batch its tags fill."""

    request: ReadRequest
    code: int
    text: bytes
    decoder: AnswerDecoder | DecodePlan
    out: slice
    what: str
    layout: MultipleReadLayout | None = None  # where a multiple read's values lie
    body: bytes = b""  # the command code and text, as sent
    frame_size: int = 0  # bytes of a good answer frame to a word read (0: other reads)
    base: int = 0  # a word read: where its words go in the poll's word buffer
    bits_only: bool = False  # every tag a bit read with bit access, in answer order
    word_index: int = -1  # a word read: which of the plan's word reads it is


@dataclass(frozen=True, slots=True)
class _PollPlan:
    reads: tuple[_PlannedRead, ...]
    tag_ids: npt.NDArray[np.int32]
    has_objects: bool
    #: the word reads' words, one after another, and the decoder of all their tags at once
    #: (their batch positions): a few NumPy calls a poll instead of a few an answer
    words: int = 0
    words_decoder: AnswerDecoder | None = None
    word_reads: int = 0
    #: each read's command code and text, and its description (for the link)
    bodies: tuple[bytes, ...] = ()
    whats: tuple[str, ...] = ()
    #: each read's number of tags (its ``out`` slices are consecutive, in read order)
    sizes: npt.NDArray[np.intp] = field(default_factory=lambda: np.zeros(0, dtype=np.intp))


class FinsDriver(Driver):
    """One Omron PLC (CS/CJ/CP/NJ/NX) over FINS/UDP or FINS/TCP."""

    def __init__(self, config: FinsDeviceConfig, tag_ids: Sequence[int]) -> None:
        super().__init__(config.name, tag_ids, len(config.tags))
        self.config = config
        self._tags: dict[int, FinsTagConfig] = dict(zip(self.tag_ids, config.tags, strict=True))
        self._groups = self._make_groups()
        self._plans: PlanCache[_PollPlan] = PlanCache(self._build_plan)
        for group in self._groups:
            self._plan_for(group.tag_ids)  # plan errors show at construction
        self._link: FinsLink | None = None
        self._silent = 0
        self._failing: dict[ReadRequest, str] = {}
        self._identity: str | None = None

    # -- description ------------------------------------------------------------------

    @property
    def address(self) -> str:
        return self.config.address

    @property
    def requests(self) -> tuple[ReadRequest, ...]:
        """The reads of one poll of all tags, as planned."""
        return tuple(r.request for r in self._plan_for(self.tag_ids).reads)

    @property
    def route(self) -> str:
        """The FINS addresses in use (after connect), for messages."""
        link = self._link
        if link is None or link.route is None:
            return "not connected"
        return link.route.describe()

    # -- connection -------------------------------------------------------------------

    def _settings(self) -> LinkSettings:
        c = self.config
        return LinkSettings(c.host, c.port, c.timeout, c.default_node, c.source_node,
                            c.network, c.unit, c.source_network, c.source_unit,
                            c.gateway_count, c.local_port)

    async def connect(self) -> None:
        await self.close()
        settings = self._settings()
        link: FinsLink = TcpLink(settings) if self.config.transport == "tcp" else UdpLink(settings)
        try:
            await link.open()
        except BaseException:
            link.close()
            raise
        self._link = link
        self._silent = 0
        if isinstance(link, UdpLink) and link.probe is not None:
            self._identity = self._identity_of(link.probe)
        log.info("%s: connected to %s (FINS/%s, %s)%s", self.device_name, self.address,
                 self.config.transport.upper(), self.route,
                 f": {self._identity}" if self._identity else "")

    async def close(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            try:
                link.close()
            except Exception:  # close must not raise (Driver contract)
                log.exception("%s: error while closing the FINS link", self.device_name)

    async def identity(self) -> str | None:
        """The CPU's model and version (CONTROLLER DATA READ, 05 01)."""
        if self._identity is None:
            frame = await self._call("controller data read", CONTROLLER_DATA_READ, b"")
            self._identity = self._identity_of(frame)
        return self._identity

    def _identity_of(self, frame: Frame) -> str:
        end = EndCode(frame.end_code or 0)
        if not end.ok:
            return f"unknown (controller data read answered {end.describe()})"
        try:
            return parse_controller_data(frame.text).describe()
        except FinsFrameError as exc:
            return f"unknown ({exc})"

    # -- poll groups ------------------------------------------------------------------

    def _make_groups(self) -> tuple[PollGroup, ...]:
        """One group per configured poll group with tags; string tags in a group of their
        own (``<group>/strings``) so that numeric batches stay float64."""
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

    # -- reading ----------------------------------------------------------------------

    async def read(self, group: PollGroup) -> SampleBatch:
        """Read the group's planned reads one after another (:meth:`FinsLink.exchange_all`:
        a good answer sends the next read from the callback it came in; :class:`_Poll`
        decodes each answer while the next read is on its way). A read whose answer is not
        good (an end code, a wrong length or shape, no answer, garbage) is settled on its
        own with its retries, then the rest go on."""
        plan = self._plan_for(group.tag_ids)
        reads = plan.reads
        poll = _Poll(self, plan)
        at = 0
        while at < len(reads):
            link = self._link
            if link is None or not link.is_open:
                raise ConnectionLost(f"{self.device_name}: not connected to {self.address}")
            at, outcome = await link.exchange_all(plan.bodies, at, self.config.timeout,
                                                  plan.whats, poll.sent_ns, poll.take,
                                                  poll.sent)
            if outcome is None:  # all done, or the link given to another command meanwhile
                continue
            read = reads[at]
            sent = [poll.sent_ns[at]]
            poll.start()
            try:
                data = await self._read_with_retries(read, sent, poll.decode, (link, outcome))
            except RequestFailed as failure:
                self._note_failure(read, failure)
                poll.failed(at, sent[0])
            else:
                poll.settled(at, data, sent[0])
            at += 1
        return poll.batch()

    def _answered_again(self, read: _PlannedRead) -> None:
        if self._failing and self._failing.pop(read.request, None) is not None:
            log.info("%s: %s answers again", self.device_name, read.what)

    async def _read_with_retries(self, read: _PlannedRead, sent: list[int],
                                 meanwhile: Callable[[], None] | None = None,
                                 first: tuple[FinsLink, bytes | RequestFailed | ConnectionLost]
                                 | None = None
                                 ) -> bytes | npt.NDArray[np.uint16]:
        """One read, checked (end code, length, shape), within the retries: a word read's
        answer frame (decoded later), another read's values. ``first``: the outcome of the
        first attempt, made already (:meth:`FinsLink.exchange_all`), and its link."""
        attempts = self.config.retries + 1
        for attempt in range(attempts):
            try:
                if first is not None:
                    (link, outcome), first = first, None
                    data = await self._settle(link, outcome, read.what)
                else:
                    data = await self._call_raw(read.what, read.body, sent, meanwhile)
                end_code = (data[12] << 8) | data[13]
                if end_code:
                    self._check_end(end_code, read.what)
                if not read.frame_size:
                    return self._values_of(read, data)
                if len(data) != read.frame_size:
                    self._values_of(read, data)  # raises with the reason
                return data
            except RequestFailed as failure:
                if attempt == attempts - 1 or failure.counter not in _RETRYABLE:
                    raise
                self.errors[failure.counter] += 1
                log.debug("%s: %s; retrying", self.device_name, failure.reason)
        raise AssertionError("unreachable")

    @staticmethod
    def _values_of(read: _PlannedRead, data: bytes) -> npt.NDArray[np.uint16]:
        """The words (or bits) of one answer frame, checked: length, shape."""
        text = data[14:]
        request = read.request
        try:
            if read.layout is not None:
                return read.layout.values(text)
            if request.bits:
                return bits_of(text, request.count)
            return words_of(text, request.count)
        except FinsFrameError as exc:  # the frame was whole: its contents do not fit
            raise RequestFailed("decode", f"{read.what}: {exc}") from None

    def _check_end_code(self, frame: Frame, what: str) -> None:
        """Raise :class:`RequestRefused` for an end code that is not a success; count the
        PLC's own error flags of a success."""
        if frame.end_code:
            self._check_end(frame.end_code, what)

    def _check_end(self, end_code: int, what: str) -> None:
        end = EndCode(end_code)
        if end.ok:
            if end.cpu_fatal or end.cpu_non_fatal:
                self.errors["plc_error_flag"] += 1
            return
        raise RequestRefused(f"end_code_{end.code:04x}", f"{what}: the PLC answered "
                             f"{end.describe()}", end.code)

    def _note_failure(self, read: _PlannedRead, failure: RequestFailed) -> None:
        self.errors[failure.counter] += 1
        if self._failing.get(read.request) != failure.counter:
            log.warning("%s: %s; its tags are BAD", self.device_name, failure.reason)
        else:
            log.debug("%s: %s", self.device_name, failure.reason)
        self._failing[read.request] = failure.counter

    async def read_words(self, area: Area, start: int, count: int) -> npt.NDArray[np.uint16]:
        """``count`` words of ``area`` from ``start`` (in reads of at most
        ``max_request_words``): for ``scan``. Raises :class:`RequestFailed` with the reason."""
        out = []
        step = self.config.max_request_words
        for first in range(start, start + count, step):
            n = min(step, start + count - first)
            what = f"read {area.name}{first}..{area.name}{first + n - 1}"
            frame = await self._call(what, MEMORY_AREA_READ,
                                     memory_area_read(area.word_code, first, 0, n))
            self._check_end_code(frame, what)
            try:
                out.append(words_of(frame.text, n))
            except FinsFrameError as exc:
                raise RequestFailed("decode", f"{what}: {exc}") from None
        return np.concatenate(out)

    # -- writing ----------------------------------------------------------------------

    async def write(self, tag_id: int, value: float | bool | str) -> None:
        tag = self._tags.get(tag_id)
        if tag is None:
            raise DeviceWriteRefused(f"tag id {tag_id} is not a tag of device {self.device_name!r}")
        where = tag.fins
        if where.word < where.area.read_only_below:
            raise DeviceWriteRefused(f"{tag.name}: {where} is read-only")
        try:
            if tag.type is DataType.BOOL:
                if isinstance(value, str):
                    raise ValueError(f"expects true or false, got the text {value!r}")
                data, count = encode_bit(value), 1
            else:
                data = encode_words(value, tag.type, tag.order, tag.length)
                count = len(data) // 2
        except ValueError as exc:
            raise DeviceWriteRefused(f"{tag.name}: {exc}") from None
        text = memory_area_write(where.code, where.word, where.bit or 0, count, data)
        what = f"write {tag.name} ({where})"
        try:
            frame = await self._call(what, MEMORY_AREA_WRITE, text)
            self._check_end_code(frame, what)
        except RequestFailed as failure:
            self.errors[failure.counter] += 1
            reason = failure.reason
            if failure.counter in ("timeout", "garbled"):
                reason += "; the value may or may not have been written"
            raise DeviceWriteRefused(reason) from None
        log.info("%s: wrote %r to %s", self.device_name, value, tag.name)

    # -- one command ------------------------------------------------------------------

    async def _call(self, what: str, code: int, text: bytes) -> Frame:
        """One command on the link, its response frame (see :meth:`_call_raw`)."""
        return parse_frame(await self._call_raw(what, code.to_bytes(2, "big") + text))

    async def _call_raw(self, what: str, body: bytes, sent: list[int] | None = None,
                        meanwhile: Callable[[], None] | None = None) -> bytes:
        """One command (its code and text: ``body``) on the link; the bytes of its response
        frame. :class:`ConnectionLost` drops the link (and so do :data:`MAX_SILENT_REQUESTS`
        timeouts in a row); :class:`RequestFailed` otherwise."""
        link = self._link
        if link is None or not link.is_open:
            raise ConnectionLost(f"{self.device_name}: not connected to {self.address}")
        try:
            data = await link.exchange_raw(body, self.config.timeout, what, sent, meanwhile)
        except (RequestFailed, ConnectionLost) as failure:
            return await self._settle(link, failure, what)
        self._silent = 0
        return data

    async def _settle(self, link: FinsLink, outcome: bytes | RequestFailed | ConnectionLost,
                      what: str) -> bytes:
        """The outcome of one command on ``link``: its answer, or the failure raised (see
        :meth:`_call_raw`)."""
        if isinstance(outcome, bytes):
            self._silent = 0
            return outcome
        if isinstance(outcome, RequestFailed):
            if outcome.counter == "timeout":
                self._silent += 1
                if self._silent >= MAX_SILENT_REQUESTS:
                    self.errors["timeout"] += 1
                    raise await self._lose(f"{outcome.reason}; {self._silent} requests in a row "
                                           "got no answer: the PLC is presumed gone") from None
            else:
                self._silent = 0
            raise outcome
        if self._link is not link:  # closed meanwhile: not a loss
            raise ConnectionLost(f"{self.device_name}: closed during {what}") from None
        raise await self._lose(str(outcome)) from None

    async def _lose(self, reason: str) -> ConnectionLost:
        self.errors["connection_lost"] += 1
        log.debug("%s: %s", self.device_name, reason)
        await self.close()
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
            index = self.tag_position[tag_id]
            tag = cfg.tags[index]
            where = tag.fins
            spans.append(TagSpan(index, where.area, where.word, tag.words, where.bit, tag.name))
        requests = plan_requests(
            spans, max_words=cfg.max_request_words, max_gap=cfg.max_gap,
            multiple_items=cfg.max_multiple_items if cfg.multiple_read else 0)
        reads: list[_PlannedRead] = []
        batch_ids: list[int] = []
        batch_tags: list[FinsTagConfig] = []
        word_fields: list[Field] = []
        word_positions: list[int] = []
        word_count = 0
        for request in requests:
            fields = []
            for member in request.members:
                tag = cfg.tags[member.index]
                if tag.type is DataType.BOOL:
                    field = Field(member.offset, DataType.BOOL, "ABCD", member.bit)
                else:
                    length = tag.words if tag.type is DataType.STRING else None
                    field = Field(member.offset, tag.type, tag.order, None, length)
                fields.append(field)
                batch_ids.append(self.tag_ids[member.index])
                batch_tags.append(tag)
            start = len(batch_ids) - len(fields)
            layout = None
            if request.is_multiple:
                code, text = MULTIPLE_MEMORY_AREA_READ, multiple_memory_area_read(request.items)
                layout = MultipleReadLayout([c for c, _, _ in request.items])
            else:
                assert request.area is not None
                area = request.area
                if request.bits:
                    text = memory_area_read(area.bit_code, request.start // 16,
                                            request.start % 16, request.count)
                else:
                    text = memory_area_read(area.word_code, request.start, 0, request.count)
                code = MEMORY_AREA_READ
            words = not request.is_multiple and not request.bits
            decoder = (AnswerDecoder(fields, request.size) if words
                       else DecodePlan(fields, request.size))
            reads.append(_PlannedRead(request, code, text, decoder,
                                      slice(start, len(batch_ids)), f"read {request.describe()}",
                                      layout, code.to_bytes(2, "big") + text,
                                      14 + 2 * request.count if words else 0, word_count,
                                      not words and all(
                                          f.type is DataType.BOOL and f.bit is None
                                          and f.offset == i for i, f in enumerate(fields))
                                      and len(fields) == request.size,
                                      word_index=sum(1 for r in reads if r.frame_size)
                                      if words else -1))
            if words:
                word_fields += [replace(f, offset=f.offset + word_count) for f in fields]
                word_positions += range(start, len(batch_ids))
                word_count += request.count
        log.debug("%s: %d tags in %d reads: %s", cfg.name, len(batch_ids), len(reads),
                  ", ".join(r.request.describe() for r in reads))
        has_objects = any(t.type.is_object for t in batch_tags)
        words_decoder = (AnswerDecoder(word_fields, word_count, word_positions)
                         if word_fields else None)
        return _PollPlan(tuple(reads), np.array(batch_ids, dtype=np.int32), has_objects,
                         word_count, words_decoder, sum(1 for r in reads if r.frame_size),
                         tuple(r.body for r in reads), tuple(r.what for r in reads),
                         np.array([r.out.stop - r.out.start for r in reads], dtype=np.intp))


class _Poll:
    """One poll of a plan under way. Its arrays are made once its first read is on its way
    (the set-up costs the poll no time); each answer taken is decoded while the next read
    is on its way: the word reads' frames are kept and all their tags decoded at once when
    the last of them is in (a few NumPy calls a poll, not a few an answer), the read times
    set at once when the last read leaves. So the decoding costs no time of its own but
    the last read's."""

    __slots__ = ("answered", "driver", "failed_words", "plan", "quality", "sent_ns", "started",
                 "tag_ids", "timed", "ts_ns", "values", "word_parts", "words_to_come")

    values: np.ndarray
    ts_ns: npt.NDArray[np.int64]
    quality: npt.NDArray[np.uint8]
    tag_ids: npt.NDArray[np.int32]

    def __init__(self, driver: FinsDriver, plan: _PollPlan) -> None:
        self.driver = driver
        self.plan = plan
        #: when each read's command left, in ns (its tags' read time)
        self.sent_ns = [0] * len(plan.reads)
        #: ``ts_ns`` made from ``sent_ns`` (when the last read left)
        self.timed = False
        #: answers taken, still to decode: a word read's frame, another read's values (or
        #: bits as bytes of 0 and 1)
        self.answered: list[tuple[_PlannedRead, bytes | npt.NDArray[np.uint16]]] = []
        #: each word read's words as they came (big endian); a failed read's: zeros
        self.word_parts: list[bytes | memoryview] = [b""] * plan.word_reads
        self.failed_words: list[slice] = []  # (their tags' places)
        #: word reads whose words are not in ``word_parts`` yet; 0: decode them, -1: decoded
        self.words_to_come = plan.word_reads if plan.words_decoder is not None else -1
        self.started = False

    def start(self) -> None:
        """The poll's arrays (once)."""
        if self.started:
            return
        self.started = True
        plan = self.plan
        n = len(plan.tag_ids)
        self.values = np.empty(n, dtype=object if plan.has_objects else np.float64)
        self.quality = np.zeros(n, dtype=np.uint8)  # Quality.GOOD
        self.tag_ids = plan.tag_ids.copy()

    def sent(self, i: int) -> None:
        """Read i is on its way (:meth:`FinsLink.exchange_all`): the answers before it are
        decoded meanwhile; after the last read, the read times."""
        self.start()
        if i == len(self.sent_ns) - 1:
            self._time()
        self.decode()

    def _time(self) -> None:
        """Every tag's read time: when its read left (the last read has left)."""
        self.ts_ns = np.repeat(np.array(self.sent_ns, dtype=np.int64), self.plan.sizes)
        self.timed = True

    def take(self, i: int, data: bytes) -> bool:
        """A good answer to read i (no end code, the length or shape it must have): kept
        for :meth:`decode`; else False (the driver settles it with its retries)."""
        read = self.plan.reads[i]
        if data[12] or data[13]:  # an end code
            return False
        if read.frame_size:
            if len(data) != read.frame_size:
                return False
            self.answered.append((read, data))
        elif read.bits_only and read.layout is not None and (
                bits := read.layout.bits(data)) is not None:  # by byte slices
            self.answered.append((read, bits))
        else:
            try:
                self.answered.append((read, self.driver._values_of(read, data)))
            except RequestFailed:
                return False
        driver = self.driver
        driver._silent = 0
        if driver._failing:
            driver._answered_again(read)
        return True

    def _sent_at(self, i: int, sent_ns: int) -> None:
        """Read i (settled on its own) last left at ``sent_ns``."""
        self.sent_ns[i] = sent_ns
        if self.timed:
            self.ts_ns[self.plan.reads[i].out] = sent_ns

    def settled(self, i: int, data: bytes | npt.NDArray[np.uint16], sent_ns: int) -> None:
        """Read i answered on its own (after a failure or a retry), sent at ``sent_ns``."""
        read = self.plan.reads[i]
        self._sent_at(i, sent_ns)
        self.answered.append((read, data))  # decoded while the next read is on its way
        self.driver._answered_again(read)

    def failed(self, i: int, sent_ns: int) -> None:
        """Read i failed for good: its tags are BAD (NaN or None)."""
        read = self.plan.reads[i]
        self._sent_at(i, sent_ns)
        self.values[read.out] = None if self.plan.has_objects else np.nan
        self.quality[read.out] = Quality.BAD
        if read.frame_size:
            self.word_parts[read.word_index] = bytes(2 * read.request.count)
            self.failed_words.append(read.out)
            self.words_to_come -= 1
        self.decode()  # in case it was the last word read

    def decode(self) -> None:
        """The answers taken, into the batch's values (word reads: into ``word_parts``)."""
        answered = self.answered
        while answered:
            read, data = answered.pop()
            if read.frame_size:  # a word read: its words as they came
                assert isinstance(data, bytes)
                self.word_parts[read.word_index] = memoryview(data)[14:]
                self.words_to_come -= 1
            elif read.bits_only:  # each value a bit, 0 or 1: true when not 0
                self.values[read.out] = (np.frombuffer(data, np.bool_) if isinstance(data, bytes)
                                         else data != 0)  # bytes: 0 or 1 already (take)
            else:
                assert not isinstance(data, bytes)
                read.decoder.decode(data, self.values[read.out])
        if self.words_to_come == 0:  # all word reads in (or failed): their tags at once
            decoder = self.plan.words_decoder
            assert decoder is not None
            words = np.frombuffer(b"".join(self.word_parts), ">u2").astype("<u2")
            values = self.values
            decoder.decode(words, values)
            for out in self.failed_words:  # decoded from zeros: their tags stay bad
                values[out] = None if self.plan.has_objects else np.nan
            self.words_to_come = -1

    def batch(self) -> SampleBatch:
        """The poll's samples, once every read is settled."""
        self.start()
        if not self.timed:
            self._time()
        self.decode()
        return SampleBatch(self.tag_ids, self.values, self.ts_ns, self.quality)
