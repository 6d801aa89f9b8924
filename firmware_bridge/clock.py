"""Node ticks to wall-clock time: the smallest observed (arrival - tick time) wins.

Every READINGS or HEARTBEAT frame gives an estimate of the node's boot time on
the gateway's clock: ``arrival - newest_tick / tick_hz``. It is late by the
frame's transfer delay and never early, so the smallest of the last ``window``
estimates is the best one; a window (rather than all history) follows slow drift
of the node's crystal. A tick going backwards, or :meth:`reset` (a HELLO), starts over.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from gateway.types import IntArray


class TickClock:
    """Maps a node's ticks to ns since the Unix epoch."""

    def __init__(self, tick_hz: int = 1000, window: int = 32) -> None:
        self.tick_hz = tick_hz
        self._estimates: deque[int] = deque(maxlen=window)
        self._boot_ns: int | None = None
        self._last_tick = -1

    def reset(self, tick_hz: int | None = None) -> None:
        """Forget the estimates (the node rebooted); optionally a new tick rate."""
        if tick_hz is not None:
            self.tick_hz = tick_hz
        self._estimates.clear()
        self._boot_ns = None
        self._last_tick = -1

    def _tick_ns(self, tick: int) -> int:
        return tick * 1_000_000_000 // self.tick_hz

    def observe(self, newest_tick: int, arrival_ns: int) -> None:
        """A frame whose newest tick is ``newest_tick`` arrived at ``arrival_ns``."""
        if newest_tick < self._last_tick:
            self.reset()
        self._last_tick = newest_tick
        estimate = arrival_ns - self._tick_ns(newest_tick)
        estimates = self._estimates
        if len(estimates) == estimates.maxlen or self._boot_ns is None:
            estimates.append(estimate)
            self._boot_ns = min(estimates)
        else:
            estimates.append(estimate)
            self._boot_ns = min(self._boot_ns, estimate)

    @property
    def boot_ns(self) -> int | None:
        """The node's tick 0 on the gateway's clock (ns since the epoch), once observed."""
        return self._boot_ns

    def to_ns(self, ticks: IntArray) -> IntArray:
        """Wall-clock ns of ``ticks`` (call :meth:`observe` for their frame first)."""
        boot = self._boot_ns if self._boot_ns is not None else 0
        seconds = ticks.astype(np.float64) / self.tick_hz
        return boot + np.round(seconds * 1e9).astype(np.int64)
