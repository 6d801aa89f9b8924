"""The trend ring: every numeric tag's value once a period over the last few minutes, in
memory, for the console's sparklines and charts.

One row per tick holds every tag's value (float32) and quality (uint8), so recording a
tick is one row copy whatever the number of tags, and memory is fixed by the number of
rows: ``slots x tags x 5`` bytes (300 rows of 1 s at 10,000 tags: 15 MB; bench/console.py
measures it). Values that are not good or uncertain are kept as NaN: a gap in a chart,
with the quality beside it telling BAD from STALE. A 64-bit integer is kept as the nearest
float32: a trend is a picture, the exact value is in the tag table.

The ring's arrays are bounded by :data:`MAX_BYTES`: with more tags than fit 300 rows in
it (about 22,000), fewer rows are kept (5 minutes at 10,000 tags, about 1 minute at
100,000; never fewer than :data:`MIN_SLOTS`), so trends cannot take the memory a large
gateway needs for its tags (issue 21).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: rows kept (one a tick): 5 minutes at the console's 1 s tick
DEFAULT_SLOTS = 300
#: the most bytes the ring's value and quality arrays take; more tags, fewer rows
MAX_BYTES = 32 * 2**20
#: the fewest rows kept however many tags there are (a minute at 1 s)
MIN_SLOTS = 60
#: bytes a tag takes in one row: a float32 value and a uint8 quality
ROW_BYTES_PER_TAG = 5


@dataclass(frozen=True, slots=True)
class Trend:
    """The kept rows of some tags, oldest first: ``values[i][j]`` is tag ``i`` at ``ts_ms[j]``
    (None where it was not good or uncertain), ``quality[i][j]`` its quality code."""

    ts_ms: list[int]
    values: list[list[float | None]]
    quality: list[list[int]]


class TrendRing:
    def __init__(self, slots: int = DEFAULT_SLOTS, tags: int = 0,
                 max_bytes: int = MAX_BYTES) -> None:
        if slots < 2:
            raise ValueError("a trend needs at least 2 slots")
        #: rows wanted; :attr:`slots` is what the byte bound leaves of them
        self.wanted = slots
        self.max_bytes = max_bytes
        self.slots = self._slots_for(tags)
        slots = self.slots
        self._values: npt.NDArray[np.float32] = np.full((slots, tags), np.nan, np.float32)
        self._quality: npt.NDArray[np.uint8] = np.full((slots, tags), 255, np.uint8)
        self._ts_ms: npt.NDArray[np.int64] = np.zeros(slots, np.int64)
        self._next = 0  # the row the next tick writes
        self._filled = 0

    def _slots_for(self, tags: int) -> int:
        fit = self.max_bytes // max(1, tags * ROW_BYTES_PER_TAG)
        return max(2, min(self.wanted, max(fit, min(MIN_SLOTS, self.wanted))))

    def _grow(self, tags: int) -> None:
        """Room for ``tags`` tags (a live change added some: their past is empty), keeping
        the newest rows that still fit the byte bound, in order."""
        slots = self._slots_for(tags)
        rows = self._order(None)[-slots:]
        values = np.full((slots, tags), np.nan, np.float32)
        quality = np.full((slots, tags), 255, np.uint8)
        ts_ms = np.zeros(slots, np.int64)
        old = self.tags
        values[:len(rows), :old] = self._values[rows]
        quality[:len(rows), :old] = self._quality[rows]
        ts_ms[:len(rows)] = self._ts_ms[rows]
        self._values, self._quality, self._ts_ms = values, quality, ts_ms
        self.slots, self._filled = slots, len(rows)
        self._next = len(rows) % slots

    @property
    def tags(self) -> int:
        return int(self._values.shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes held by the ring's arrays."""
        return int(self._values.nbytes + self._quality.nbytes + self._ts_ms.nbytes)

    def record(self, ts_ms: int, values: npt.NDArray[np.float64], quality: npt.NDArray[np.uint8],
               usable: npt.NDArray[np.bool_]) -> None:
        """One tick: every tag's value (NaN where not ``usable``) and quality code."""
        n = len(values)
        if n > self.tags:  # the first tick, or a live change added tags
            self._grow(n)
        row = self._next
        np.copyto(self._values[row, :n], values, where=usable, casting="same_kind")
        self._values[row, :n][~usable] = np.nan
        self._values[row, n:] = np.nan
        self._quality[row, :n] = quality
        self._quality[row, n:] = 255
        self._ts_ms[row] = ts_ms
        self._next = (row + 1) % self.slots
        self._filled = min(self._filled + 1, self.slots)

    def newest_ms(self) -> int:
        """The time of the newest row (0: none yet)."""
        return int(self._ts_ms[(self._next - 1) % self.slots]) if self._filled else 0

    def _order(self, since_ms: int | None) -> npt.NDArray[np.int64]:
        start = (self._next - self._filled) % self.slots
        rows = (start + np.arange(self._filled)) % self.slots
        if since_ms is not None:
            rows = rows[self._ts_ms[rows] >= since_ms]
        return rows

    def trend(self, tag_ids: list[int], since_ms: int | None = None,
              points: int | None = None) -> Trend:
        """The kept rows of ``tag_ids`` since ``since_ms``; with ``points``, every k-th row so
        that at most that many remain (the newest always among them)."""
        rows = self._order(since_ms)
        if points is not None and len(rows) > points > 0:
            step = -(-len(rows) // points)
            rows = rows[::-1][::step][::-1]
        ids = np.array([t for t in tag_ids if 0 <= t < self.tags], np.int64)
        values = self._values[np.ix_(rows, ids)].T.astype(np.float64)
        quality = self._quality[np.ix_(rows, ids)].T
        as_lists = [[None if v != v else float(f"{v:.7g}") for v in col]  # float32's digits
                    for col in values.tolist()]
        known = {t: i for i, t in enumerate(ids.tolist())}
        empty: list[float | None] = [None] * len(rows)
        no_q = [255] * len(rows)
        return Trend(
            ts_ms=self._ts_ms[rows].tolist(),
            values=[as_lists[known[t]] if t in known else empty for t in tag_ids],
            quality=[quality[known[t]].tolist() if t in known else no_q for t in tag_ids],
        )
