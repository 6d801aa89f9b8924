"""The console's trend ring (gateway/console/trends.py): bounded, oldest first, gaps where a
tag was not good, grows with tags added live."""

from __future__ import annotations

from pathlib import Path

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


def test_the_ring_keeps_fewer_rows_for_many_tags_within_its_byte_bound() -> None:
    """Trends must not take the memory a large gateway needs for its tags: 300 rows at
    10,000 tags fit 32 MiB; at 100,000 tags about a minute does."""
    small = TrendRing(300)
    small.record(1000, np.zeros(10_000), np.zeros(10_000, np.uint8), np.ones(10_000, bool))
    assert small.slots == 300 and small.nbytes <= 32 * 2**20
    large = TrendRing(300)
    large.record(1000, np.zeros(100_000), np.zeros(100_000, np.uint8), np.ones(100_000, bool))
    assert 60 <= large.slots < 300 and large.nbytes <= 32 * 2**20 + 8 * large.slots
    huge = TrendRing(300)
    huge.record(1000, np.zeros(400_000), np.zeros(400_000, np.uint8), np.ones(400_000, bool))
    assert huge.slots == 60  # never less than a minute


def test_tags_added_past_the_bound_keep_the_newest_rows_in_order() -> None:
    ring = TrendRing(200, max_bytes=5 * 100 * 100)  # 100 rows of 100 tags fit
    for t in range(100):
        ring.record(1000 * t, np.full(100, float(t)), np.zeros(100, np.uint8),
                    np.ones(100, bool))
    assert ring.slots == 100
    ring.record(100_000, np.full(125, 100.0), np.zeros(125, np.uint8), np.ones(125, bool))
    assert ring.slots == 80  # the bound leaves 80 rows of 125 tags: the newest kept
    trend = ring.trend([0, 110])
    assert trend.ts_ms == [1000 * t for t in range(21, 101)]
    assert trend.values[0] == [float(t) for t in range(21, 101)]
    assert trend.values[1] == [None] * 79 + [100.0]  # a tag added live: no past


def test_the_ring_records_only_while_the_console_is_used_and_is_let_go_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No memory for trends on a gateway nobody looks at: the ring starts with the first
    trend request or event stream and is dropped TREND_KEEP_S after the console's last use
    (a test clock stands in for time.monotonic)."""
    from gateway.console import live
    from gateway.runtime.gateway import Gateway
    from gateway.types import SampleBatch
    from tests.integration.gateway_harness import gateway_config, meter_device

    clock = [1000.0]
    monkeypatch.setattr(live.time, "monotonic", lambda: clock[0])
    gw = Gateway(gateway_config(tmp_path, 1883, [meter_device("m", 1502)]), tmp_path)
    ids = np.arange(len(gw.catalog), dtype=np.int32)
    watch = live.LineWatch(gw)

    def tick(second: int) -> None:
        gw.pipeline.process(SampleBatch.of(ids, np.full(len(ids), float(second)),
                                           second * 1_000_000_000))  # fmt: skip
        watch.tick(second * 1000)

    tick(1)
    assert watch.trends is None  # nobody asked: nothing recorded, nothing held
    ring = watch.recording_trends()
    tick(2)
    tick(3)
    assert ring.trend([0]).values == [[2.0, 3.0]]
    watch.streams = 1  # a page open: recording goes on however long it stays
    clock[0] += 2 * live.TREND_KEEP_S
    tick(4)
    assert watch.trends is ring and ring.trend([0]).values == [[2.0, 3.0, 4.0]]
    watch.streams = 0  # the page closed: kept for TREND_KEEP_S, then let go
    clock[0] += live.TREND_KEEP_S - 1
    tick(5)
    assert watch.trends is ring and ring.newest_ms() == 5000
    clock[0] += 2
    tick(6)
    assert watch.trends is None
    assert watch.recording_trends().trend([0]).ts_ms == []  # a new ring: starts afresh
