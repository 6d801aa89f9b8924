"""Per-tag write rate: at most ``max_write_rate`` writes per minute, as a sliding window.

A rate of N/min (N >= 1) allows floor(N) writes in any window of ``60 * floor(N) / N``
seconds (60 s for whole numbers); a rate below 1/min allows one write per ``60 / N`` s.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable


def _window(per_minute: float) -> tuple[int, float]:
    allowed = max(1, math.floor(per_minute))
    return allowed, 60.0 * allowed / per_minute


class WriteRateLimiter:
    """Sliding-window counts of the writes sent to each tag."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._sent: dict[int, deque[float]] = {}

    def _recent(self, tag_id: int, window_s: float) -> deque[float]:
        sent = self._sent.setdefault(tag_id, deque())
        horizon = self._clock() - window_s
        while sent and sent[0] <= horizon:
            sent.popleft()
        return sent

    def wait_s(self, tag_id: int, per_minute: float, planned: int = 0) -> float:
        """0 when one more write fits (after ``planned`` ones not yet recorded); else the
        seconds until it would."""
        allowed, window_s = _window(per_minute)
        sent = self._recent(tag_id, window_s)
        over = len(sent) + planned - allowed
        if over < 0:
            return 0.0
        if over >= len(sent):
            return window_s
        return max(1e-3, sent[over] + window_s - self._clock())

    def record(self, tag_id: int, per_minute: float) -> None:
        self._recent(tag_id, _window(per_minute)[1]).append(self._clock())
