"""Node ticks to wall-clock time: the smallest observed (arrival - tick time) wins.

Every READINGS or HEARTBEAT frame gives an estimate of the node's boot time on
the gateway's clock: ``arrival - newest_tick / tick_hz``. It is late by the
frame's transfer delay and never early, so the smallest of the last ``window``
estimates is the best one; a window (rather than all history) follows slow drift
of the node's crystal. A tick going backwards, or :meth:`reset` (a HELLO), starts over.

The arithmetic is exact on Python integers: a tick is any u64 and a reading's
offset adds up to 65535 more, so ``tick * 1e9`` needs far more than 64 bits
(and more than a float's 53). Only the result, a time near the frame's arrival,
has to fit in int64 ns. A tick that leaps ahead of the gateway's clock by more
than :data:`MAX_LEAP_NS` (a counter that jumped, say to 2**63) also starts over
at that frame: :meth:`TickClock.observe` returns True so the driver counts it.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from gateway.types import IntArray

NS = 1_000_000_000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: a tick this far ahead of the estimate (node time gained on the gateway's in one frame) is
#: a jump of the node's counter, not crystal drift (100 ppm gains 6 ms a minute)
MAX_LEAP_NS = 60 * NS


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
        return tick * NS // self.tick_hz

    def observe(self, newest_tick: int, arrival_ns: int) -> bool:
        """A frame whose newest tick is ``newest_tick`` arrived at ``arrival_ns``.

        Return True when the tick leapt ahead by more than :data:`MAX_LEAP_NS` and the
        estimate started over at this frame (a tick going backwards starts over silently:
        a reboot whose HELLO was lost, or a READINGS frame older than a HEARTBEAT).
        """
        if newest_tick < self._last_tick:
            self.reset()
        self._last_tick = newest_tick
        estimate = arrival_ns - self._tick_ns(newest_tick)
        leapt = self._boot_ns is not None and estimate < self._boot_ns - MAX_LEAP_NS
        if leapt:
            self._estimates.clear()
            self._boot_ns = None
        estimates = self._estimates
        if len(estimates) == estimates.maxlen or self._boot_ns is None:
            estimates.append(estimate)
            self._boot_ns = min(estimates)
        else:
            estimates.append(estimate)
            self._boot_ns = min(self._boot_ns, estimate)
        return leapt

    @property
    def boot_ns(self) -> int | None:
        """The node's tick 0 on the gateway's clock (ns since the epoch), once observed."""
        return self._boot_ns

    def to_ns(self, base: int, offsets: IntArray) -> IntArray | None:
        """Wall-clock ns of the ticks ``base + offsets`` (``offsets`` 0..65535), rounded down.

        Call :meth:`observe` with the frame's newest tick first: then the times lie
        between the oldest arrival in the window (less the frame's span) and this
        frame's arrival. None when they do not fit in int64 ns (no observation yet).
        """
        boot = self._boot_ns if self._boot_ns is not None else 0
        whole, rest = divmod(base * NS, self.tick_hz)
        first = boot + whole  # exact; the offsets' part below fits int64 (< 2**47)
        last = first + (int(offsets.max(initial=0)) * NS + rest) // self.tick_hz
        if first < INT64_MIN or last > INT64_MAX:
            return None
        return first + (offsets.astype(np.int64) * NS + rest) // self.tick_hz
