"""Feature windows: per-tag NumPy ring buffers and vectorised window aggregations.

A :class:`WindowStore` keeps the most recent ``capacity`` samples of every tag a
model reads, as ``[tags, capacity]`` arrays. Appending a batch and aggregating
any number of (tag, window, aggregation) requests are a handful of array
operations; nothing loops over samples in Python.

Window semantics (time-aligned): a window is the half-open interval
``(start_ns, end_ns]``; every input of one inference uses the same ``end_ns``
(the trigger time). Only good samples count. Aggregations over the good samples
of a window, in time order:

``last`` the latest value at or before the window's end, even when it is older
than the window (a value reported by exception holds until it changes);
``mean``, ``min``, ``max``; ``std`` (population); ``rms`` = sqrt(mean(v^2));
``slope`` least-squares slope in units per second (needs 2 distinct timestamps);
``integral`` the area under the good samples joined by straight lines, in units x
seconds, from the window's start to its end: the stretches before the first and
after the last sample are interpolated with the nearest good sample outside the
window when there is one, so back-to-back windows add up (a lone sample with no
neighbour outside gives NaN); ``count`` the number of good samples. An empty
window gives NaN for all but ``count`` (0) and ``last``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_models.manifest import Aggregation
from gateway.types import GOOD_CODE, SampleBatch, as_float

_NO_TS = np.iinfo(np.int64).min
AGGREGATION_CODES: dict[Aggregation, int] = {a: i for i, a in enumerate(Aggregation)}


class WindowStore:
    """Ring buffers of recent good samples of the watched tags, indexed by tag id."""

    def __init__(self, catalog_size: int, capacity: int = 4096) -> None:
        if capacity < 2:
            raise ValueError("window capacity must be at least 2 samples")
        self.capacity = capacity
        self._slot_of = np.full(catalog_size, -1, np.int64)
        self.tag_ids = np.empty(0, np.int64)
        self.values = np.empty((0, capacity), np.float64)
        self.ts_ns = np.empty((0, capacity), np.int64)
        self.good = np.empty((0, capacity), bool)
        self._head = np.empty(0, np.int64)

    def watch(self, tag_ids: Iterable[int]) -> None:
        """Start buffering these tags (those already watched keep their samples)."""
        new = sorted({int(t) for t in tag_ids if self._slot_of[int(t)] < 0})
        if not new:
            return
        k, cap = len(new), self.capacity
        self._slot_of[new] = np.arange(len(self.tag_ids), len(self.tag_ids) + k)
        self.tag_ids = np.concatenate([self.tag_ids, np.asarray(new, np.int64)])
        self.values = np.concatenate([self.values, np.full((k, cap), np.nan)])
        self.ts_ns = np.concatenate([self.ts_ns, np.full((k, cap), _NO_TS, np.int64)])
        self.good = np.concatenate([self.good, np.zeros((k, cap), bool)])
        self._head = np.concatenate([self._head, np.zeros(k, np.int64)])

    def grow(self, catalog_size: int) -> None:
        """The tag catalog grew (a live config change): room for the new ids."""
        more = catalog_size - len(self._slot_of)
        if more > 0:
            self._slot_of = np.concatenate([self._slot_of, np.full(more, -1, np.int64)])

    def forget(self, tag_ids: Iterable[int]) -> None:
        """Empty the windows of these tags (redefined or removed by a config change: their
        samples so far may not mean what the next ones mean)."""
        rows = [int(self._slot_of[t]) for t in tag_ids
                if t < len(self._slot_of) and self._slot_of[t] >= 0]
        if rows:
            self.values[rows] = np.nan
            self.ts_ns[rows] = _NO_TS
            self.good[rows] = False

    def slot(self, tag_id: int) -> int:
        """Row of a watched tag (-1 when not watched)."""
        return int(self._slot_of[tag_id])

    def append(self, batch: SampleBatch) -> None:
        """Buffer the samples of watched tags (any order, several per tag allowed)."""
        if not len(batch) or not len(self.tag_ids):
            return
        ids = batch.tag_ids.astype(np.int64)
        slots = self._slot_of[ids]
        sel = slots >= 0
        if not sel.any():
            return
        slots = slots[sel]
        values = as_float(batch.values[sel])
        ts = batch.ts_ns[sel]
        good = (batch.quality[sel] == GOOD_CODE) & np.isfinite(values)
        counts = np.bincount(slots, minlength=len(self.tag_ids))
        if counts.max() == 1:  # the usual batch: one sample per tag, no ordering to do
            pos = self._head[slots]
            self.values[slots, pos] = values
            self.ts_ns[slots, pos] = ts
            self.good[slots, pos] = good
            self._head[slots] = (pos + 1) % self.capacity
            return
        order = np.lexsort((ts, slots))
        slots, values, ts, good = slots[order], values[order], ts[order], good[order]
        uniq, first, counts = np.unique(slots, return_index=True, return_counts=True)
        rank = np.arange(len(slots)) - np.repeat(first, counts)
        keep = rank >= np.repeat(counts, counts) - self.capacity  # at most capacity per tag
        pos = (self._head[slots] + rank) % self.capacity
        slots, pos = slots[keep], pos[keep]
        self.values[slots, pos] = values[keep]
        self.ts_ns[slots, pos] = ts[keep]
        self.good[slots, pos] = good[keep]
        self._head[uniq] = (self._head[uniq] + counts) % self.capacity

    def aggregate(
        self,
        slots: npt.ArrayLike,
        start_ns: npt.ArrayLike,
        end_ns: npt.ArrayLike,
        codes: npt.ArrayLike,
    ) -> npt.NDArray[np.float64]:
        """One feature per request: row ``slots[i]`` over ``(start_ns[i], end_ns[i]]``
        aggregated by ``AGGREGATION_CODES`` code ``codes[i]``."""
        rows = np.asarray(slots, np.int64)
        return aggregate(
            self.values[rows],
            self.ts_ns[rows],
            self.good[rows],
            np.asarray(start_ns, np.int64),
            np.asarray(end_ns, np.int64),
            np.asarray(codes, np.int64),
        )


def aggregate(
    values: npt.NDArray[np.float64],
    ts_ns: npt.NDArray[np.int64],
    good: npt.NDArray[np.bool_],
    start_ns: npt.NDArray[np.int64],
    end_ns: npt.NDArray[np.int64],
    codes: npt.NDArray[np.int64],
) -> npt.NDArray[np.float64]:
    """Aggregate each row of ``[n, cap]`` sample arrays over its own window (see module doc).

    The window's samples are gathered once into flat arrays sorted by (row, time); every
    aggregation is then a per-row reduction of those (``bincount``, ``reduceat``), so the
    cost grows with the windows' sizes, not with the ring capacity."""
    n = len(values)
    out = np.full(n, np.nan)
    if n == 0:
        return out
    in_window = good & (ts_ns > start_ns[:, None]) & (ts_ns <= end_ns[:, None])
    flat = np.flatnonzero(in_window)  # row-major: rows ascending
    ri = flat // in_window.shape[1]
    t = ts_ns.reshape(-1)[flat]
    order = np.lexsort((t, ri))  # a ring buffer that wrapped is out of time order
    flat, ri, t = flat[order], ri[order], t[order]
    v = values.reshape(-1)[flat]
    count = np.bincount(ri, minlength=n)
    first = np.concatenate([[0], np.cumsum(count)[:-1]])
    last = first + np.maximum(count - 1, 0)
    has = count > 0
    safe_n = np.maximum(count, 1)

    def per_row(weights: np.ndarray) -> np.ndarray:
        return np.bincount(ri, weights=weights, minlength=n)

    def per_row_reduce(ufunc: np.ufunc) -> np.ndarray:
        full = np.full(n, np.nan)  # the segments of the non-empty rows, back to back
        full[has] = ufunc.reduceat(v, first[has])
        return full

    present = set(codes.tolist())
    for agg, code in AGGREGATION_CODES.items():
        if code not in present:
            continue
        rows = codes == code
        if agg is Aggregation.COUNT:
            out[rows] = count[rows]
            continue
        if agg is Aggregation.LAST:  # held: the latest good value up to the window's end
            out[rows & has] = v[last[rows & has]]  # the window's last sample, else older ones
            old = rows & ~has
            if old.any():
                upto = good[old] & (ts_ns[old] <= end_ns[old, None])
                i = np.argmax(np.where(upto, ts_ns[old], np.iinfo(np.int64).min), axis=1)
                held = values[old][np.arange(int(old.sum())), i]
                out[old] = np.where(upto.any(axis=1), held, np.nan)
            continue
        r = rows & has
        if not r.any():
            continue
        if agg is Aggregation.MEAN:
            out[r] = (per_row(v) / safe_n)[r]
        elif agg is Aggregation.MIN:
            out[r] = per_row_reduce(np.minimum)[r]
        elif agg is Aggregation.MAX:
            out[r] = per_row_reduce(np.maximum)[r]
        elif agg is Aggregation.STD:
            dev = v - (per_row(v) / safe_n)[ri]
            out[r] = np.sqrt(per_row(dev * dev) / safe_n)[r]
        elif agg is Aggregation.RMS:
            out[r] = np.sqrt(per_row(v * v) / safe_n)[r]
        elif agg is Aggregation.SLOPE:
            out[r] = _slope(v, t, ri, t[first], safe_n)[r]
        elif agg is Aggregation.INTEGRAL:
            out[r] = _integral(v, t, ri, count)[r]
    integral = (codes == AGGREGATION_CODES[Aggregation.INTEGRAL]) & has
    if integral.any():  # the stretches between the window's bounds and its outer samples
        f, la = first[integral], last[integral]
        out[integral] = _bounded_integral(
            out[integral], values[integral], ts_ns[integral], good[integral],
            start_ns[integral], end_ns[integral], v[f], t[f], v[la], t[la], count[integral])
    return out


def _slope(v: np.ndarray, t: np.ndarray, ri: np.ndarray, t0: np.ndarray, n: np.ndarray
           ) -> np.ndarray:
    """Least-squares slope per row of flat (row-sorted) samples; ``t0`` a per-row origin."""
    n_rows = len(n)
    sec = (t - t0[ri]).astype(np.float64) / 1e9
    tm = np.bincount(ri, weights=sec, minlength=n_rows) / n
    vm = np.bincount(ri, weights=v, minlength=n_rows) / n
    dt = sec - tm[ri]
    dv = v - vm[ri]
    sxx = np.bincount(ri, weights=dt * dt, minlength=n_rows)
    sxy = np.bincount(ri, weights=dt * dv, minlength=n_rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sxx > 0, sxy / np.where(sxx > 0, sxx, 1.0), np.nan)


def _integral(v: np.ndarray, t: np.ndarray, ri: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Trapezoids between consecutive samples of the same row (NaN below 2 samples)."""
    same = ri[1:] == ri[:-1]
    dt = (t[1:] - t[:-1]).astype(np.float64) / 1e9
    area = np.where(same, 0.5 * (v[1:] + v[:-1]) * dt, 0.0)
    inner = np.bincount(ri[:-1], weights=area, minlength=len(count)) if len(ri) > 1 else \
        np.zeros(len(count))
    return np.where(count >= 2, inner, np.nan)


def _bounded_integral(inner: np.ndarray, values: np.ndarray, ts: np.ndarray, good: np.ndarray,
                      start: np.ndarray, end: np.ndarray, v_first: np.ndarray,
                      t_first: np.ndarray, v_last: np.ndarray, t_last: np.ndarray,
                      count: np.ndarray) -> np.ndarray:
    """Add to the integral over the window's samples the stretch from ``start`` to the first
    sample and from the last sample to ``end``, interpolating linearly with the nearest good
    sample outside the window where there is one (none: that stretch is left out). Windows
    that meet at a bound thus add up to the integral over both."""
    lo = np.iinfo(np.int64).min
    before = good & (ts <= start[:, None])
    after = good & (ts > end[:, None])
    rows = np.arange(len(values))
    i = np.argmax(np.where(before, ts, lo), axis=1)
    j = np.argmin(np.where(after, ts, np.iinfo(np.int64).max), axis=1)
    has_prev, has_next = before.any(axis=1), after.any(axis=1)

    def stretch(t_out: np.ndarray, v_out: np.ndarray, t_in: np.ndarray, v_in: np.ndarray,
                bound: np.ndarray, use: Any) -> np.ndarray:
        span = (t_in - t_out).astype(np.float64)
        span = np.where(use & (span != 0), span, 1.0)
        v_bound = v_out + (v_in - v_out) * (bound - t_out).astype(np.float64) / span
        area = 0.5 * (v_bound + v_in) * np.abs(t_in - bound).astype(np.float64) / 1e9
        return np.where(use, area, 0.0)

    lead = stretch(ts[rows, i], values[rows, i], t_first, v_first, start, has_prev)
    tail = stretch(ts[rows, j], values[rows, j], t_last, v_last, end, has_next)
    total = np.where(count >= 2, inner, 0.0) + lead + tail
    return np.where((count < 2) & ~has_prev & ~has_next, np.nan, total)


def cycle_edges(
    prev: float, values: npt.NDArray[np.float64], edge: str
) -> npt.NDArray[np.bool_]:
    """Which samples of a cycle tag (in time order, ``prev`` the value before them) end a
    cycle: ``increment`` the value rose, ``rising`` 0 -> non-zero, ``falling`` non-zero -> 0.
    A NaN ``prev`` (nothing seen yet) never makes an edge."""
    before = np.concatenate([[prev], values[:-1]])
    with np.errstate(invalid="ignore"):
        if edge == "increment":
            hit = values > before
        elif edge == "rising":
            hit = (before == 0) & (values != 0)
        else:
            hit = (before != 0) & (values == 0)
    crossed: npt.NDArray[np.bool_] = hit & np.isfinite(before) & np.isfinite(values)
    return crossed
