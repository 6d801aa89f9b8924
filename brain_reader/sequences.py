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
from typing import Any, TypeGuard


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


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

    #: holes handed to another reader at most (the most recent; older ones are forgotten)
    MAX_EXPORTED_HOLES = 1000

    def export(self) -> dict[str, Any]:
        holes = self.holes()[-self.MAX_EXPORTED_HOLES:]
        return {"highest": self.highest, "holes": [list(h) for h in holes]}

    def restore(self, state: object) -> None:
        """``state`` from :meth:`export`, received as JSON: anything malformed is ignored."""
        if not isinstance(state, dict):
            return
        highest = state.get("highest")
        if not _is_int(highest):
            return
        holes = state.get("holes")
        pairs = [h for h in holes if isinstance(h, list) and len(h) == 2] if isinstance(
            holes, list) else []  # fmt: skip
        ranges = sorted((s, e) for s, e in pairs if _is_int(s) and _is_int(e) and s < e <= highest)
        self.highest = highest
        self._starts = [s for s, _ in ranges]
        self._ends = [e for _, e in ranges]

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

    def export(self) -> dict[str, Any]:
        return {"last": self.last, "recent": list(self._recent)}

    def restore(self, state: object) -> None:
        if not isinstance(state, dict):
            return
        last = state.get("last")
        recent = state.get("recent")
        self.last = last if _is_int(last) and 0 <= last < 256 else None
        self._recent.clear()
        if isinstance(recent, list):
            self._recent.extend(n for n in recent[-self.RECENT:]
                                if _is_int(n) and 0 <= n < 256)  # fmt: skip

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
