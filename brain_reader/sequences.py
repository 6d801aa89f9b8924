"""Loss and duplicate detection from sequence numbers.

JSON contract v1: every data message of a gateway carries a 64-bit ``seq`` that rises by
one per message, across restarts. After an outage the gateway replays its backlog
interleaved with live data, so numbers arrive out of order: a skipped number is a
*hole* until it arrives (then it was *late*); what is still a hole is *missing* (a gap).

Sparkplug B: ``seq`` is 0-255 per edge node session (NBIRTH has 0 and starts a session,
with its bdSeq), in order; a skip is a gap at once, a number seen among the last few is
a duplicate.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass
from enum import Enum


class SeqOutcome(Enum):
    IN_ORDER = "in_order"
    FIRST = "first"
    LATE = "late"  # filled a hole
    DUPLICATE = "duplicate"
    GAP = "gap"  # skipped numbers before it


@dataclass(slots=True)
class SeqResult:
    outcome: SeqOutcome
    skipped: int = 0


class JsonSequence:
    """The sequence numbers seen from one gateway; holes kept as sorted [start, end) ranges."""

    #: holes are not tracked further back than this many numbers below the highest seen
    MAX_TRACKED = 10_000_000

    def __init__(self) -> None:
        self.highest: int | None = None
        self._starts: list[int] = []
        self._ends: list[int] = []

    @property
    def missing(self) -> int:
        return sum(e - s for s, e in zip(self._starts, self._ends, strict=True))

    def holes(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends, strict=True))

    def observe(self, seq: int) -> SeqResult:
        if self.highest is None:
            self.highest = seq
            return SeqResult(SeqOutcome.FIRST)
        if seq == self.highest + 1:
            self.highest = seq
            return SeqResult(SeqOutcome.IN_ORDER)
        if seq > self.highest:
            skipped = seq - self.highest - 1
            self._starts.append(self.highest + 1)
            self._ends.append(seq)
            self.highest = seq
            self._forget_old()
            return SeqResult(SeqOutcome.GAP, skipped)
        i = bisect.bisect_right(self._starts, seq) - 1
        if i < 0 or seq >= self._ends[i]:
            return SeqResult(SeqOutcome.DUPLICATE)
        start, end = self._starts[i], self._ends[i]
        del self._starts[i], self._ends[i]
        if seq + 1 < end:
            self._starts.insert(i, seq + 1)
            self._ends.insert(i, end)
        if start < seq:
            self._starts.insert(i, start)
            self._ends.insert(i, seq)
        return SeqResult(SeqOutcome.LATE)

    def _forget_old(self) -> None:
        assert self.highest is not None
        floor = self.highest - self.MAX_TRACKED
        while self._starts and self._ends[0] <= floor:
            del self._starts[0], self._ends[0]
        if self._starts and self._starts[0] < floor:
            self._starts[0] = floor


class SparkplugSequence:
    """``seq`` 0-255 of one edge node session."""

    RECENT = 32

    def __init__(self) -> None:
        self.last: int | None = None
        self._recent: deque[int] = deque(maxlen=self.RECENT)

    def start_session(self, seq: int) -> None:
        """An NBIRTH: a new session starts at its seq (0)."""
        self.last = seq
        self._recent.clear()
        self._recent.append(seq)

    def end_session(self) -> None:
        self.last = None
        self._recent.clear()

    def observe(self, seq: int) -> SeqResult:
        if self.last is None:
            self.start_session(seq)
            return SeqResult(SeqOutcome.FIRST)
        if seq in self._recent:
            return SeqResult(SeqOutcome.DUPLICATE)
        expected = (self.last + 1) % 256
        skipped = (seq - expected) % 256
        self.last = seq
        self._recent.append(seq)
        if skipped:
            return SeqResult(SeqOutcome.GAP, skipped)
        return SeqResult(SeqOutcome.IN_ORDER)
