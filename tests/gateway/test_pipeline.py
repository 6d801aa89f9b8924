"""Pipeline: scaling, validity, deadband, heartbeat and quality transitions on whole batches."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.pipeline import Pipeline
from gateway.tags import TagCatalog
from gateway.types import Quality, SampleBatch
from tests.gateway.helpers import make_config

S = 1_000_000_000


def pipeline(*tags: dict) -> Pipeline:
    cfg = make_config(list(tags))
    return Pipeline(TagCatalog(cfg.devices))


def tag(name: str, address: int, **kw: object) -> dict:
    return {"name": name, "address": address, "type": "int16", **kw}


def test_scale_and_offset_apply_per_tag() -> None:
    p = pipeline(tag("a", 0, scale=0.1), tag("b", 1, scale=2, offset=-5), tag("c", 2))
    out = p.process(SampleBatch.of([0, 1, 2], [1234, 10, -7], 5 * S))
    np.testing.assert_allclose(out.values, [123.4, 15.0, -7.0])
    assert out.quality.tolist() == [Quality.GOOD] * 3
    assert out.ts_ns.tolist() == [5 * S] * 3


def test_a_negative_zero_keeps_its_sign_unless_an_offset_moves_it() -> None:
    """-0.0 + 0.0 is +0.0 in IEEE 754: an offset of 0 must not be added at all."""
    p = pipeline(tag("a", 0, type="float32"), tag("b", 2, type="float32", scale=2),
                 tag("c", 4, type="float32", offset=1.5))
    out = p.process(SampleBatch.of([0, 1, 2], [-0.0, -0.0, -0.0], 5 * S))
    assert np.signbit(out.values).tolist() == [True, True, False]
    assert out.values.tolist() == [0.0, 0.0, 1.5]


def test_without_deadband_every_sample_is_published() -> None:
    p = pipeline(tag("a", 0))
    for t in range(3):
        assert len(p.process(SampleBatch.of([0], [7], t * S))) == 1


def test_deadband_suppresses_small_moves_and_tracks_last_published() -> None:
    p = pipeline(tag("a", 0, deadband=1.0))
    sent = []
    for t, v in enumerate([10, 10.5, 10.9, 11.1, 11.5, 12.2, 9.0]):
        out = p.process(SampleBatch.of([0], [v], t * S))
        sent.extend(out.values.tolist())
    # compared with the last *published* value, not the last seen one
    assert sent == [10, 11.1, 12.2, 9.0]
    assert p.counters.samples_suppressed == 3


def test_deadband_zero_publishes_on_change_only() -> None:
    p = pipeline(tag("a", 0, deadband=0))
    outs = [len(p.process(SampleBatch.of([0], [v], t * S))) for t, v in enumerate([1, 1, 2, 2, 1])]
    assert outs == [1, 0, 1, 0, 1]


def test_heartbeat_republishes_unchanged_value() -> None:
    p = pipeline(tag("a", 0, deadband=0, heartbeat="2s"))
    outs = [len(p.process(SampleBatch.of([0], [5], t * S))) for t in range(6)]
    assert outs == [1, 0, 1, 0, 1, 0]


def test_quality_change_is_always_published_and_nan_becomes_bad() -> None:
    p = pipeline(tag("a", 0, deadband=100))
    assert len(p.process(SampleBatch.of([0], [1], 0))) == 1
    out = p.process(SampleBatch.of([0], [np.nan], S, Quality.BAD))
    assert out.quality.tolist() == [Quality.BAD] and np.isnan(out.values[0])
    assert len(p.process(SampleBatch.of([0], [np.nan], 2 * S, Quality.BAD))) == 0
    back = p.process(SampleBatch.of([0], [1], 3 * S))
    assert back.quality.tolist() == [Quality.GOOD] and back.values.tolist() == [1.0]
    # a good-quality NaN or inf from a device is not a value: published as bad, counted
    out = p.process(SampleBatch.of([0], [np.inf], 4 * S))
    assert out.quality.tolist() == [Quality.BAD] and np.isnan(out.values[0])
    assert p.counters.samples_invalid == 1


def test_batch_with_repeated_tags_is_filtered_in_time_order() -> None:
    p = pipeline(tag("a", 0, deadband=0), tag("b", 1, deadband=0))
    batch = SampleBatch.of([0, 1, 0, 0, 1], [1, 5, 1, 2, 6], [0, 0, S, 2 * S, S])
    out = p.process(batch)
    got = sorted(zip(out.tag_ids.tolist(), out.ts_ns.tolist(), out.values.tolist(), strict=True))
    assert got == [(0, 0, 1.0), (0, 2 * S, 2.0), (1, 0, 5.0), (1, S, 6.0)]
    assert p.latest_value[0] == 2.0 and p.latest_value[1] == 6.0


def test_large_batch_is_vectorised_consistently() -> None:
    n = 10_000
    tags = [tag(f"t{i}", i, deadband=0.5) for i in range(n)]
    p = pipeline(*tags)
    ids = np.arange(n)
    first = p.process(SampleBatch.of(ids, np.zeros(n), 0))
    assert len(first) == n
    moves = np.where(ids % 2 == 0, 0.4, 0.6)  # even tags stay inside the deadband
    second = p.process(SampleBatch.of(ids, moves, S))
    assert second.tag_ids.tolist() == ids[ids % 2 == 1].tolist()


def test_numbers_travelling_with_strings_are_still_scaled_and_filtered() -> None:
    p = pipeline(tag("a", 0, scale=0.1, deadband=0),
                 {"name": "s", "address": 1, "type": "string", "length": 2})
    mixed = np.array([123, "AB"], dtype=object)
    out = p.process(SampleBatch(np.array([0, 1], np.int32), mixed, np.zeros(2, np.int64),
                                np.zeros(2, np.uint8)))
    got = dict(zip(out.tag_ids.tolist(), out.values.tolist(), strict=True))
    assert got[0] == pytest.approx(12.3) and got[1] == "AB"
    again = p.process(SampleBatch(np.array([0, 1], np.int32), mixed, np.full(2, S, np.int64),
                                  np.zeros(2, np.uint8)))
    assert len(again) == 0  # unchanged number (deadband 0) and unchanged string
    assert p.latest(0) == pytest.approx(12.3) and p.latest(1) == "AB"


def test_burst_of_tags_without_deadband_goes_through_whole_and_keeps_the_latest() -> None:
    p = pipeline(tag("a", 0, scale=2), tag("b", 1, deadband=1.0))
    # out of time order on purpose; b has a deadband and is filtered sample by sample
    batch = SampleBatch.of([0, 1, 0, 1, 0, 1], [3, 10, 1, 10.5, 2, 12],
                           [2 * S, 0, 0, S, S, 2 * S])
    out = p.process(batch)
    got = sorted(zip(out.tag_ids.tolist(), out.ts_ns.tolist(), out.values.tolist(), strict=True))
    assert got == [(0, 0, 2.0), (0, S, 4.0), (0, 2 * S, 6.0), (1, 0, 10.0), (1, 2 * S, 12.0)]
    assert p.latest(0) == 6.0 and p.latest(1) == 12.0
    assert p.latest_ns[0] == 2 * S
    assert p.counters.samples_in == 6 and p.counters.samples_out == 5


def test_consecutive_and_scattered_tag_ids_give_the_same_result() -> None:
    """A run of consecutive ids reads and writes the per-tag state through slices; ids in
    another order through indexes: both publish the same samples and keep the same state."""
    tags = [tag("a", 0, scale=0.5), tag("b", 1, deadband=2.0), tag("c", 2, offset=1.0),
            tag("d", 3, heartbeat=5), tag("e", 4, deadband=0)]
    rng = np.random.default_rng(7)
    runs = pipeline(*tags), pipeline(*tags)
    for t in range(12):
        raw = rng.integers(0, 6, 5).astype(float)
        quality = rng.choice([Quality.GOOD, Quality.UNCERTAIN, Quality.BAD], 5, p=[.8, .1, .1])
        whole = SampleBatch.of([0, 1, 2, 3, 4], raw, t * S, quality.astype(np.uint8))
        together = runs[0].process(whole)
        apart = [runs[1].process(whole.select(np.array(rows))) for rows in ([4, 0, 2], [3, 1])]
        got = SampleBatch.concat(apart).select(np.argsort(SampleBatch.concat(apart).tag_ids))
        assert got.tag_ids.tolist() == together.tag_ids.tolist()
        np.testing.assert_array_equal(got.values, together.values)
        assert got.quality.tolist() == together.quality.tolist()
    for name in ("latest_value", "latest_quality", "latest_ns", "_sent_value", "_sent_quality",
                 "_sent_ns"):
        np.testing.assert_array_equal(getattr(runs[0], name), getattr(runs[1], name))
