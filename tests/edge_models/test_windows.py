"""Window aggregations against a plain NumPy reference, ring buffers, cycle edges."""

from __future__ import annotations

import numpy as np
import pytest

from edge_models.manifest import Aggregation
from edge_models.windows import AGGREGATION_CODES, WindowStore, cycle_edges
from gateway.types import Quality, SampleBatch

NS = 1_000_000_000


def reference(agg: Aggregation, v: np.ndarray, t_ns: np.ndarray, start: int = 0, end: int = 0,
              prev: tuple[int, float] | None = None, nxt: tuple[int, float] | None = None,
              last_held: tuple[int, float] | None = None) -> float:
    """The definition, written the obvious way on the window's good samples in time order."""
    if agg is Aggregation.COUNT:
        return float(len(v))
    if agg is Aggregation.LAST:  # held: may be older than the window
        return float(last_held[1]) if last_held else float("nan")
    if len(v) == 0:
        return float("nan")
    t = (t_ns - t_ns[0]) / 1e9
    if agg is Aggregation.MEAN:
        return float(np.mean(v))
    if agg is Aggregation.MIN:
        return float(np.min(v))
    if agg is Aggregation.MAX:
        return float(np.max(v))
    if agg is Aggregation.STD:
        return float(np.std(v))
    if agg is Aggregation.RMS:
        return float(np.sqrt(np.mean(v**2)))
    if agg is Aggregation.SLOPE:
        return float(np.polyfit(t, v, 1)[0]) if len(v) >= 2 else float("nan")
    assert agg is Aggregation.INTEGRAL
    # the samples joined by straight lines, with the nearest good samples outside the window,
    # integrated over the window's bounds
    pts = ([prev] if prev else []) + list(zip(t_ns.tolist(), v.tolist(), strict=True)) + (
        [nxt] if nxt else [])
    if len(pts) < 2:
        return float("nan")
    pt = np.array([p[0] for p in pts], np.float64)
    pv = np.array([p[1] for p in pts])
    lo, hi = max(float(start), pt[0]), min(float(end), pt[-1])
    xs = np.concatenate([[lo], pt[(pt > lo) & (pt < hi)], [hi]])
    ys = np.interp(xs, pt, pv)
    return float(np.sum((ys[1:] + ys[:-1]) / 2 * np.diff(xs)) / 1e9)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_aggregations_match_numpy_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, cap = 300, 128  # more samples than capacity: the ring wraps
    store = WindowStore(catalog_size=10, capacity=cap)
    store.watch([2, 5, 7, 9])
    ids = np.array([2, 5, 7, 9])
    history: dict[int, list[tuple[int, float, bool]]] = {int(i): [] for i in ids}
    ts = 0
    for _ in range(n // 3):  # batches of 3 polls, several samples per tag, shuffled
        rows = []
        for _ in range(3):
            ts += int(rng.integers(NS // 2, 2 * NS))
            for tag in ids:
                good = rng.random() > 0.1
                value = float(rng.normal(10, 3)) if good else float("nan")
                rows.append((int(tag), value, ts, Quality.GOOD if good else Quality.BAD))
                history[int(tag)].append((ts, value, good))
        order = rng.permutation(len(rows))
        rows = [rows[i] for i in order]
        store.append(SampleBatch.of([r[0] for r in rows], [r[1] for r in rows],
                                    [r[2] for r in rows], [r[3] for r in rows]))
    requests = []
    for tag in ids:
        kept = history[int(tag)][-cap:]
        for agg in Aggregation:
            for span in (0.5, 5.0, 40.0, 1e6):
                end = kept[-1][0] - int(rng.integers(0, 3 * NS))
                start = end - int(span * NS)
                inside = [(t, v) for t, v, g in kept if g and start < t <= end]
                before = [(t, v) for t, v, g in kept if g and t <= start]
                after = [(t, v) for t, v, g in kept if g and t > end]
                want = reference(agg, np.array([v for _, v in inside]),
                                 np.array([t for t, _ in inside], np.int64), start, end,
                                 max(before) if before else None,
                                 min(after) if after else None,
                                 max(((t, v) for t, v, g in kept if g and t <= end),
                                     default=None))
                requests.append((store.slot(int(tag)), start, end, AGGREGATION_CODES[agg], want,
                                 agg))
    got = store.aggregate([r[0] for r in requests], [r[1] for r in requests],
                          [r[2] for r in requests], [r[3] for r in requests])
    want = np.array([r[4] for r in requests])
    assert np.allclose(got, want, rtol=1e-9, atol=1e-9, equal_nan=True), [
        (r[5].value, g, w) for r, g, w in zip(requests, got, want, strict=True)
        if not np.isclose(g, w, equal_nan=True)
    ][:5]


def test_exact_values_and_empty_window() -> None:
    store = WindowStore(catalog_size=1, capacity=16)
    store.watch([0])
    ts = np.arange(1, 6) * NS
    store.append(SampleBatch.of([0] * 5, [1.0, 2.0, 3.0, 4.0, 5.0], ts))
    codes = [AGGREGATION_CODES[a] for a in Aggregation]
    k = len(codes)
    got = dict(zip(Aggregation, store.aggregate([0] * k, [0] * k, [5 * NS] * k, codes),
                   strict=True))
    assert got[Aggregation.LAST] == 5.0 and got[Aggregation.COUNT] == 5.0
    assert got[Aggregation.SLOPE] == pytest.approx(1.0)  # one unit per second
    assert got[Aggregation.INTEGRAL] == pytest.approx(12.0)  # trapezoid over 4 s
    assert got[Aggregation.RMS] == pytest.approx(np.sqrt(11.0))
    # from t=2.5 s (interpolated 2.5) to 5 s: the area under v = t
    integral = AGGREGATION_CODES[Aggregation.INTEGRAL]
    lead = store.aggregate([0], [int(2.5 * NS)], [5 * NS], [integral])
    assert lead[0] == pytest.approx((25 - 6.25) / 2)
    # back-to-back windows add up to the whole
    parts = store.aggregate([0] * 3, [NS, 2 * NS + 3, int(3.7 * NS)], [2 * NS + 3, int(3.7 * NS),
                            5 * NS], [integral] * 3)
    assert parts.sum() == pytest.approx(got[Aggregation.INTEGRAL])
    empty = store.aggregate([0] * k, [10 * NS] * k, [20 * NS] * k, codes)
    assert empty[AGGREGATION_CODES[Aggregation.COUNT]] == 0
    held = AGGREGATION_CODES[Aggregation.LAST]
    assert empty[held] == 5.0  # the last value holds
    assert np.isnan(np.delete(empty, [AGGREGATION_CODES[Aggregation.COUNT], held])).all()
    assert np.isnan(store.aggregate([0], [0], [NS // 2], [held])[0])  # nothing before the end


def test_unwatched_tags_and_strings_are_ignored() -> None:
    store = WindowStore(catalog_size=3, capacity=8)
    store.watch([1])
    batch = SampleBatch.of([0, 1, 2], np.array([1.0, "x", 3.0], dtype=object), NS)
    store.append(batch)
    assert store.good.sum() == 0  # the string is not a number: not a good sample
    store.append(SampleBatch.of([1], [7.0], 2 * NS))
    assert store.aggregate([0], [0], [3 * NS], [AGGREGATION_CODES[Aggregation.LAST]])[0] == 7.0


def test_cycle_edges() -> None:
    values = np.array([5.0, 5.0, 6.0, 6.0, 8.0, 0.0, 1.0])
    assert cycle_edges(np.nan, values, "increment").tolist() == [
        False, False, True, False, True, False, True]
    assert cycle_edges(4.0, values, "increment")[0]
    assert cycle_edges(0.0, np.array([1.0, 1.0, 0.0]), "rising").tolist() == [True, False, False]
    assert cycle_edges(0.0, np.array([1.0, 1.0, 0.0]), "falling").tolist() == [False, False, True]


def test_one_sample_per_tag_batches_fill_the_ring_like_bulk_batches() -> None:
    rng = np.random.default_rng(4)
    cap, polls = 16, 40  # the ring wraps
    one, bulk = WindowStore(6, cap), WindowStore(6, cap)
    for store in (one, bulk):
        store.watch([1, 4])
    ids, values, ts, quality = [], [], [], []
    for i in range(polls):
        v = rng.normal(10, 3, 2)
        q = [Quality.GOOD, Quality.GOOD if i % 7 else Quality.BAD]
        one.append(SampleBatch.of([4, 1, 3], [v[0], v[1], 0.0], (i + 1) * NS, [*q, Quality.GOOD]))
        ids += [4, 1]
        values += v.tolist()
        ts += [(i + 1) * NS] * 2
        quality += q
    bulk.append(SampleBatch.of(ids, values, ts, quality))
    for name in ("values", "ts_ns", "good", "_head"):
        assert np.array_equal(getattr(one, name), getattr(bulk, name), equal_nan=True), name
