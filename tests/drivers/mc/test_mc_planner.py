"""The request planner: batch reads of contiguous words, random reads of scattered ones."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.mc.planner import BatchRead, RandomRead, TagSpan, plan_reads
from gateway.errors import PlanError


def describe(spans: list[TagSpan], **limits: object) -> list[str]:
    return [r.describe() for r in plan_reads(spans, **limits)]  # type: ignore[arg-type]


def test_neighbours_share_one_batch_read() -> None:
    spans = [TagSpan(0, "D", 100, 2), TagSpan(1, "D", 102, 2), TagSpan(2, "D", 104, 1)]
    assert describe(spans) == ["batch read D 100..104 (5 words)"]


def test_scattered_tags_share_one_random_read() -> None:
    spans = [TagSpan(0, "D", 0, 1), TagSpan(1, "D", 500, 2), TagSpan(2, "W", 0x1F0, 1),
             TagSpan(3, "M", 6, 1), TagSpan(4, "X", 0, 1)]
    assert describe(spans) == [
        "random read X bits 0..15, M bits 96..111, D 0, D 500..501, W 496 (5 points)"]
    assert describe(spans, random_reads=False) == [
        "batch read X bits 0..15 (1 word)", "batch read M bits 96..111 (1 word)",
        "batch read D 0 (1 word)", "batch read D 500..501 (2 words)", "batch read W 496 (1 word)"]


def test_one_segment_alone_is_a_batch_read_not_a_random_read() -> None:
    assert describe([TagSpan(0, "D", 7, 3)]) == ["batch read D 7..9 (3 words)"]


def test_max_gap_joins_tags_into_one_batch() -> None:
    spans = [TagSpan(0, "D", 0, 1), TagSpan(1, "D", 10, 1)]
    assert describe(spans, max_gap=9) == ["batch read D 0..10 (11 words)"]
    assert describe(spans, max_gap=8) == ["random read D 0, D 10 (2 points)"]


def test_batches_stop_at_max_batch_words_and_a_tag_never_straddles() -> None:
    spans = [TagSpan(i, "D", 2 * i, 2) for i in range(500)]  # D0..D999 in 32-bit tags
    reads = plan_reads(spans, random_reads=False)
    assert [r.describe() for r in reads] == ["batch read D 0..959 (960 words)",
                                             "batch read D 960..999 (40 words)"]
    with pytest.raises(PlanError, match="takes 961 words but max_batch_words is 960"):
        plan_reads([TagSpan(0, "D", 0, 961)])


def test_random_reads_fill_up_to_their_points_first_fit_decreasing() -> None:
    spans = [TagSpan(i, "D", 10 * i, 1) for i in range(200)]  # 200 scattered words
    reads = plan_reads(spans)
    assert [r.points for r in reads if isinstance(r, RandomRead)] == [192, 8]
    reads = plan_reads(spans, max_random_points=96)
    assert [r.points for r in reads if isinstance(r, RandomRead)] == [96, 96, 8]


def test_a_segment_too_large_for_a_random_read_stays_a_batch_read() -> None:
    spans = [TagSpan(0, "D", 0, 400), TagSpan(1, "D", 1000, 1), TagSpan(2, "D", 2000, 1)]
    assert describe(spans, max_random_points=96) == [
        "batch read D 0..399 (400 words)", "random read D 1000, D 2000 (2 points)"]


def test_the_random_layout_puts_word_points_first() -> None:
    read = plan_reads([TagSpan(0, "D", 0, 3), TagSpan(1, "W", 16, 2)])[0]
    assert isinstance(read, RandomRead)
    words, dwords, gather = read.layout
    assert words == (("D", 2),)
    assert dwords == (("D", 0), ("W", 16))
    # answer: [D2, D0, D1, W16, W17] -> segment order [D0, D1, D2, W16, W17]
    assert gather.tolist() == [1, 2, 0, 3, 4]


@pytest.mark.parametrize(("limits", "message"), [
    ({"max_batch_words": 961}, "max_batch_words must be 1..960"),
    ({"max_random_points": 0}, "max_random_points must be 1..192"),
    ({"max_gap": -1}, "max_gap must not be negative"),
])
def test_limits_outside_the_protocol_are_refused(limits: dict[str, int], message: str) -> None:
    with pytest.raises(PlanError, match=message):
        plan_reads([TagSpan(0, "D", 0, 1)], **limits)  # type: ignore[arg-type]


spans_strategy = st.lists(
    st.tuples(st.sampled_from(["D", "W", "M", "ZR"]), st.integers(0, 3000), st.integers(1, 8)),
    min_size=1, max_size=40)


@settings(deadline=None)  # timing is no verdict on a shared machine
@given(spans_strategy, st.integers(1, 960), st.integers(1, 192), st.booleans(),
       st.integers(0, 20))
def test_every_tag_is_read_whole_within_the_limits(
    raw: list[tuple[str, int, int]], max_words: int, max_points: int, random: bool, gap: int
) -> None:
    spans = [TagSpan(i, dev, start, min(words, max_words)) for i, (dev, start, words)
             in enumerate(raw)]
    reads = plan_reads(spans, max_batch_words=max_words, max_random_points=max_points,
                       random_reads=random, max_gap=gap)
    seen = sorted(m.index for r in reads for m in r.members)
    assert seen == list(range(len(spans)))
    memory = {(dev, pos): hash((dev, pos)) & 0xFFFF for dev in ("D", "W", "M", "ZR")
              for pos in range(0, 3100)}
    for read in reads:
        if isinstance(read, BatchRead):
            assert read.words <= max_words
            seg = read.segment
            words = [memory[(seg.device, seg.start + i)] for i in range(seg.words)]
        else:
            assert not random or read.points <= max_points
            word_points, dword_points, gather = read.layout
            answer = [memory[p] for p in word_points]
            for dev, pos in dword_points:
                answer += [memory[(dev, pos)], memory[(dev, pos + 1)]]
            words = [answer[i] for i in gather.tolist()]
            segs = [(s.device, s.start + i) for s in read.segments for i in range(s.words)]
            assert words == [memory[p] for p in segs]  # the gather restores segment order
            assert all(seg.words <= max_words for seg in read.segments)
        for member in read.members:  # each tag's words are its own, in order
            span = spans[member.index]
            mine = words[member.offset:member.offset + span.words]
            assert mine == [memory[(span.device, span.start + i)] for i in range(span.words)]


def test_a_long_random_read_is_described_briefly() -> None:
    (read,) = plan_reads([TagSpan(i, "D", 10 * i, 1) for i in range(30)])
    assert read.describe() == ("random read D 0, D 10, D 20, D 30, D 40, D 50, D 60, D 70, "
                               "D 80, D 90, D 100, D 110 and 18 more (30 points)")
