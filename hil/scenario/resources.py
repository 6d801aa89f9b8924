"""Memory and file-descriptor use of the gateway process over a run (Linux ``/proc``)."""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["ResourceGrowth", "ResourceSample", "growth_per_run", "read_usage", "sample_resources"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ResourceSample:
    """One reading of the gateway process: ``t`` in seconds after the first birth."""

    t: float
    run: int
    pid: int
    rss_kb: int
    fds: int


@dataclass(frozen=True, slots=True)
class ResourceGrowth:
    """Growth of one gateway run from its settled start to its end."""

    run: int
    rss_mb: float
    fds: float
    rss_start_mb: float
    fds_start: float
    samples: int


def read_usage(pid: int) -> tuple[int, int] | None:
    """(resident set size in KiB, open file descriptors) of ``pid``; None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError):
        return None
    return rss, fds


async def sample_resources(
    current: Callable[[], tuple[int, int] | None],
    clock: Callable[[], float],
    out: list[ResourceSample],
    interval: float,
) -> None:
    """Append a sample of ``current()`` (run number, pid) every ``interval`` s until cancelled."""
    while True:
        proc = current()
        if proc is not None:
            run, pid = proc
            usage = read_usage(pid)
            if usage is not None:
                out.append(ResourceSample(clock(), run, pid, usage[0], usage[1]))
        await asyncio.sleep(interval)


def growth_per_run(samples: Sequence[ResourceSample], warmup: float) -> list[ResourceGrowth]:
    """Per gateway run: the median of the last quarter of its samples minus the median of the
    first quarter, after ``warmup`` seconds of the run (imports, first connects) are skipped.
    Medians, so one transient peak (a spool replay) is not taken for a leak."""
    growths: list[ResourceGrowth] = []
    for run in sorted({s.run for s in samples}):
        mine = [s for s in samples if s.run == run]
        settled = [s for s in mine if s.t >= mine[0].t + warmup]
        if len(settled) < 4:
            continue
        q = max(1, len(settled) // 4)
        head, tail = settled[:q], settled[-q:]
        rss0 = statistics.median(s.rss_kb for s in head) / 1024
        fd0 = statistics.median(s.fds for s in head)
        growths.append(
            ResourceGrowth(
                run,
                statistics.median(s.rss_kb for s in tail) / 1024 - rss0,
                statistics.median(s.fds for s in tail) - fd0,
                rss0,
                fd0,
                len(settled),
            )
        )
    return growths
