"""The console's trend ring (gateway/console/trends.py): bounded, oldest first, gaps where a
tag was not good, grows with tags added live."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.console.trends import TrendRing


def record(ring: TrendRing, ts_ms: int, values: list[float], good: list[bool] | None = None,
           quality: list[int] | None = None) -> None:
    v = np.array(values, np.float64)
    usable = np.array(good if good is not None else [True] * len(values))
    q = np.array(quality if quality is not None else [0] * len(values), np.uint8)
    ring.record(ts_ms, v, q, usable)


def test_rows_come_back_oldest_first_and_the_ring_keeps_only_its_slots() -> None:
    ring = TrendRing(slots=3, tags=2)
    for i in range(5):
        record(ring, 1000 * i, [float(i), 10.0 * i])
    trend = ring.trend([0, 1])
    assert trend.ts_ms == [2000, 3000, 4000]
    assert trend.values == [[2.0, 3.0, 4.0], [20.0, 30.0, 40.0]]
    assert ring.newest_ms() == 4000
    assert ring.nbytes == 3 * 2 * 5 + 3 * 8


def test_a_bad_or_stale_sample_is_a_gap_with_its_quality_beside_it() -> None:
    ring = TrendRing(slots=4, tags=1)
    record(ring, 0, [1.5])
    record(ring, 1000, [np.nan], good=[False], quality=[2])
    record(ring, 2000, [7.0], good=[False], quality=[3])  # stale: the value is not shown
    record(ring, 3000, [2.25])
    trend = ring.trend([0])
    assert trend.values == [[1.5, None, None, 2.25]]
    assert trend.quality == [[0, 2, 3, 0]]


def test_since_and_points_thin_the_rows_and_keep_the_newest() -> None:
    ring = TrendRing(slots=10, tags=1)
    for i in range(10):
        record(ring, 1000 * i, [float(i)])
    assert ring.trend([0], since_ms=7000).values == [[7.0, 8.0, 9.0]]
    thinned = ring.trend([0], points=4)
    assert len(thinned.ts_ms) <= 4 and thinned.ts_ms[-1] == 9000
    assert thinned.ts_ms == sorted(thinned.ts_ms)


def test_tags_added_live_start_with_an_empty_past_and_unknown_ids_are_empty() -> None:
    ring = TrendRing(slots=3, tags=1)
    record(ring, 0, [1.0])
    record(ring, 1000, [2.0, 5.0])
    trend = ring.trend([1, 0, 99])
    assert trend.values == [[None, 5.0], [1.0, 2.0], [None, None]]
    assert trend.quality[0] == [255, 0]


def test_float32_digits_only_and_a_ring_needs_two_slots() -> None:
    ring = TrendRing(slots=2, tags=1)
    record(ring, 0, [230.1])
    assert ring.trend([0]).values == [[230.1]]  # not 230.10000610351562
    with pytest.raises(ValueError):
        TrendRing(slots=1)
