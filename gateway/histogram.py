"""A latency histogram kept as plain counts by the object that measures.

Like the other counters of the runtime it is read at scrape time (gateway/metrics.py
turns it into a Prometheus histogram), so there is no registry and no lock: the
event loop observes, the scrape reads. Buckets are upper bounds in seconds; a value
lands in the first bucket it does not exceed (Prometheus ``le``), past the last in +Inf.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

#: seconds; a poll of a local device takes milliseconds, a slow serial line or a
#: timeout seconds
POLL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: seconds; values wait up to a publish interval (1 s) for their message, and minutes
#: or hours in the spool while the broker is away
AGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
               3600.0)


@dataclass(slots=True)
class Histogram:
    """Counts of observations per bucket, their sum and number."""

    buckets: tuple[float, ...]
    #: one more than ``buckets``: the last is +Inf
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if list(self.buckets) != sorted(set(self.buckets)):
            raise ValueError("histogram buckets must be increasing")
        if not self.counts:
            self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float, times: int = 1) -> None:
        """Count ``value`` (``times`` times: e.g. once per sample of a message)."""
        self.counts[bisect_left(self.buckets, value)] += times
        self.total += value * times
        self.count += times

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, count of observations <= le)`` for each bucket and +Inf, as Prometheus
        exposes them."""
        out: list[tuple[str, int]] = []
        running = 0
        for bound, n in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out
