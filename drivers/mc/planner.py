"""The request planner: which batch and random reads cover a device's tags. Pure logic.

Every read here is in word units: a word device's words, or a bit device's bits 16
to a word (M0..M15 is one word, M0 its least significant bit), so one request of
960 words covers 15,360 bits. The planner works in *word positions* per device:
the device number of a word device, the device number // 16 of a bit device.

Rules:

1. Per device, tags that sit next to each other (or within ``max_gap`` unused words)
   join one contiguous *segment* of at most ``max_batch_words`` words; a tag never
   straddles two segments.
2. With random reads on, segments are packed into random reads (0403) of at most
   ``max_random_points`` points, first fit by decreasing size: a segment of ``n``
   words costs ``n // 2`` double-word points and ``n % 2`` word points. Scattered
   tags (``D0``, ``D500``, ``M100``, ``W1F0``) then share one request instead of one
   batch read each.
3. A random read that holds a single segment is sent as a batch read (0401): the
   same one request, and the one command every MC protocol device has.

Each request's answer, as words, is the concatenation of its segments' words; a
tag's ``offset`` points into it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from drivers.mc.devices import DEVICES, WORD_BITS
from gateway.errors import PlanError

#: segments a random read's description names (messages, logs); the rest are counted
DESCRIBED_SEGMENTS = 12
#: order of the planned requests by device, then by position
DEVICE_ORDER = {name: i for i, name in enumerate(DEVICES)}


@dataclass(frozen=True, slots=True)
class TagSpan:
    """Where one tag lives: ``words`` words from word position ``start`` of ``device``.
    ``index`` is the tag's position in the device's tag list."""

    index: int
    device: str
    start: int
    words: int
    name: str = ""

    @property
    def end(self) -> int:
        return self.start + self.words

    def describe(self) -> str:
        return f"tag {self.name!r}" if self.name else f"tag #{self.index}"


@dataclass(frozen=True, slots=True)
class Member:
    """A tag inside a request: ``offset`` words from the start of the request's words."""

    index: int
    offset: int


@dataclass(frozen=True, slots=True)
class Segment:
    """Contiguous words of one device: ``words`` from word position ``start``."""

    device: str
    start: int
    words: int

    @property
    def head(self) -> int:
        """The device number of the first word on the wire (a bit device: its first bit)."""
        return self.start * WORD_BITS if DEVICES[self.device].bit else self.start

    @property
    def points(self) -> int:
        """Points this segment takes in a random read."""
        return self.words // 2 + self.words % 2

    def describe(self) -> str:
        device = DEVICES[self.device]
        if device.bit:
            return f"{device.name} bits {self.head}..{self.head + self.words * WORD_BITS - 1}"
        last = self.start + self.words - 1
        return f"{device.name} {self.start}..{last}" if self.words > 1 else (
            f"{device.name} {self.start}")


@dataclass(frozen=True, slots=True)
class BatchRead:
    """One batch read (0401) in word units of one segment."""

    segment: Segment
    members: tuple[Member, ...]

    @property
    def words(self) -> int:
        return self.segment.words

    def describe(self) -> str:
        plural = "" if self.words == 1 else "s"
        return f"batch read {self.segment.describe()} ({self.words} word{plural})"


@dataclass(frozen=True)
class RandomRead:
    """One random read (0403) of several segments: each in double words, an odd last word as
    a word point. The answer carries the word points first, then the double words."""

    segments: tuple[Segment, ...]
    members: tuple[Member, ...]

    @property
    def words(self) -> int:
        return sum(s.words for s in self.segments)

    @property
    def points(self) -> int:
        return sum(s.points for s in self.segments)

    @cached_property
    def layout(self) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...],
                              npt.NDArray[np.intp]]:
        """(word points, double-word points, gather): each point as (device, word position);
        ``answer_words[gather]`` puts the answer's words in segment order."""
        word_points: list[tuple[str, int]] = []
        dword_points: list[tuple[str, int]] = []
        word_at: list[tuple[int, int]] = []  # per concatenated word: (0 word / 1 dword, index)
        for seg in self.segments:
            for i in range(seg.words // 2):
                dword_points.append((seg.device, seg.start + 2 * i))
                word_at += [(1, 2 * (len(dword_points) - 1)), (1, 2 * (len(dword_points) - 1) + 1)]
            if seg.words % 2:
                word_points.append((seg.device, seg.start + seg.words - 1))
                word_at.append((0, len(word_points) - 1))
        n_words = len(word_points)
        gather = np.array([i if kind == 0 else n_words + i for kind, i in word_at], dtype=np.intp)
        return tuple(word_points), tuple(dword_points), gather

    def describe(self) -> str:
        """``random read D 0, D 500..501, M bits 96..111 (4 points)``; past
        :data:`DESCRIBED_SEGMENTS` segments the rest is counted, so log lines stay short."""
        shown = [s.describe() for s in self.segments[:DESCRIBED_SEGMENTS]]
        rest = len(self.segments) - len(shown)
        more = f" and {rest} more" if rest > 0 else ""
        return f"random read {', '.join(shown)}{more} ({self.points} points)"


ReadRequest = BatchRead | RandomRead


def plan_reads(
    spans: Iterable[TagSpan],
    *,
    max_batch_words: int = 960,
    max_random_points: int = 192,
    random_reads: bool = True,
    max_gap: int = 0,
) -> list[ReadRequest]:
    """The fewest reads covering ``spans`` within the limits (module docstring).
    :class:`PlanError` for limits out of range or a tag larger than one batch read."""
    if not 1 <= max_batch_words <= 960:
        raise PlanError(f"max_batch_words must be 1..960, not {max_batch_words}")
    if not 1 <= max_random_points <= 192:
        raise PlanError(f"max_random_points must be 1..192, not {max_random_points}")
    if max_gap < 0:
        raise PlanError(f"max_gap must not be negative, not {max_gap}")
    by_device: dict[str, list[TagSpan]] = {}
    for span in spans:
        if span.device not in DEVICES:
            raise PlanError(f"{span.describe()}: unknown device {span.device!r}")
        if span.words < 1 or span.start < 0:
            raise PlanError(f"{span.describe()}: {span.words} words from {span.start}")
        if span.words > max_batch_words:
            raise PlanError(f"{span.describe()} takes {span.words} words but max_batch_words "
                            f"is {max_batch_words}: a tag must fit in one request")
        by_device.setdefault(span.device, []).append(span)

    groups: list[tuple[Segment, list[TagSpan]]] = []
    for device in sorted(by_device, key=DEVICE_ORDER.__getitem__):
        groups += _segments(device, by_device[device], max_batch_words, max_gap)
    if not random_reads:
        return [_batch(seg, members) for seg, members in groups]

    bins: list[list[tuple[Segment, list[TagSpan]]]] = []
    room: list[int] = []
    for group in sorted(groups, key=lambda g: -g[0].points):  # stable: device, position
        cost = group[0].points
        fit = next((i for i, free in enumerate(room) if free >= cost), None)
        if cost > max_random_points:
            bins.append([group])
            room.append(-1)  # a batch read of its own
        elif fit is None:
            bins.append([group])
            room.append(max_random_points - cost)
        else:
            bins[fit].append(group)
            room[fit] -= cost
    requests: list[ReadRequest] = []
    for packed in bins:
        if len(packed) == 1:
            requests.append(_batch(*packed[0]))
            continue
        packed.sort(key=lambda g: (DEVICE_ORDER[g[0].device], g[0].start))
        members: list[Member] = []
        offset = 0
        for seg, spans_in in packed:
            members += [Member(s.index, offset + s.start - seg.start) for s in spans_in]
            offset += seg.words
        requests.append(RandomRead(tuple(seg for seg, _ in packed), tuple(members)))
    batches = [r for r in requests if isinstance(r, BatchRead)]
    randoms = [r for r in requests if isinstance(r, RandomRead)]
    batches.sort(key=lambda r: (DEVICE_ORDER[r.segment.device], r.segment.start))
    return [*batches, *randoms]


def _segments(device: str, spans: list[TagSpan], limit: int,
              max_gap: int) -> list[tuple[Segment, list[TagSpan]]]:
    # longest first at equal position, so an overlapping shorter tag never widens a segment
    ordered = sorted(spans, key=lambda s: (s.start, -s.words, s.index))
    out: list[tuple[Segment, list[TagSpan]]] = []
    start = end = 0
    members: list[TagSpan] = []
    for span in ordered:
        if members and span.start - end <= max_gap and max(end, span.end) - start <= limit:
            members.append(span)
            end = max(end, span.end)
            continue
        if members:
            out.append((Segment(device, start, end - start), members))
        members = [span]
        start, end = span.start, span.end
    if members:
        out.append((Segment(device, start, end - start), members))
    return out


def _batch(seg: Segment, spans: list[TagSpan]) -> BatchRead:
    return BatchRead(seg, tuple(Member(s.index, s.start - seg.start) for s in spans))
