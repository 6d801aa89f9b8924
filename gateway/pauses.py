"""Stop-the-world pauses of the gateway: the garbage collector's, and the event loop's stalls.

Every device's poll runs on one event loop, so anything that holds it (a collection of
the cyclic garbage collector over a large heap, a long synchronous step) delays every
poll at once: a poll late by more than its interval is a skipped poll. The collector's
pauses are timed by ``gc.callbacks``; stalls of any cause by a task that asks to wake
every :data:`STALL_PROBE_S` and notes how late it woke. Both are counted by duration
bucket for ``/metrics`` (``chenxing_gc_pause_seconds``, ``chenxing_event_loop_stall_seconds``).
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import time
from dataclasses import dataclass, field
from typing import Any

#: upper bounds of the duration buckets, seconds (a Prometheus histogram's ``le``)
BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
#: how often the stall probe asks to wake; a wake later than this plus 1 ms is a stall
STALL_PROBE_S = 0.1


@dataclass(slots=True)
class Durations:
    """Durations counted by bucket, their sum and the longest."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total_s: float = 0.0
    longest_s: float = 0.0

    def add(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total_s += seconds
        self.longest_s = max(self.longest_s, seconds)

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, count)`` pairs as a Prometheus histogram gives them, ``+Inf`` last."""
        out, running = [], 0
        for bound, n in zip((*map(str, BUCKETS), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


class Pauses:
    """The gateway's pause figures while :meth:`start`\\ ed: one per process at a time."""

    def __init__(self) -> None:
        #: per generation (0, 1, 2): collections and how long each held the process
        self.gc = [Durations(), Durations(), Durations()]
        self.stalls = Durations()
        self._gc_started = 0.0
        self._probe: asyncio.Task[None] | None = None

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started:
            self.gc[int(info.get("generation", 2))].add(time.perf_counter() - self._gc_started)

    async def _probe_stalls(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(STALL_PROBE_S)
            late = loop.time() - asked - STALL_PROBE_S
            if late > 0.001:
                self.stalls.add(late)

    def start(self) -> None:
        """Time the collector from now on, and probe the running loop for stalls."""
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)
        if self._probe is None:
            self._probe = asyncio.get_running_loop().create_task(
                self._probe_stalls(), name="stall-probe")

    async def stop(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)
