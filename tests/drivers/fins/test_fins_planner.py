"""The FINS read planner: word runs, bits, multiple memory area reads, limits (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.fins.address import AREAS
from drivers.fins.planner import Member, ReadRequest, TagSpan, plan_requests
from gateway.errors import PlanError

D, CIO, W, E0 = AREAS["D"], AREAS["CIO"], AREAS["W"], AREAS["E0_"]


def words(index: int, area: object, word: int, n: int = 1) -> TagSpan:
    return TagSpan(index, area, word, n)  # type: ignore[arg-type]


def bit(index: int, area: object, word: int, b: int) -> TagSpan:
    return TagSpan(index, area, word, 1, b)  # type: ignore[arg-type]


def test_neighbours_share_a_read_and_a_gap_splits_it() -> None:
    spans = [words(0, D, 0, 2), words(1, D, 2, 1), words(2, D, 10, 2), words(3, D, 100)]
    plan = plan_requests(spans, max_gap=7)
    assert [(r.area.name, r.start, r.count) for r in plan if r.area] == [
        ("D", 0, 12), ("D", 100, 1)]
    assert plan[0].members == (Member(0, 0), Member(1, 2), Member(2, 10))


def test_a_read_stays_within_max_words_and_never_splits_a_tag() -> None:
    spans = [words(i, D, 4 * i, 4) for i in range(500)]  # D0..D1999
    plan = plan_requests(spans)
    assert [(r.start, r.count) for r in plan] == [(0, 996), (996, 996), (1992, 8)]
    with pytest.raises(PlanError, match="a tag must fit in one read"):
        plan_requests([words(0, D, 0, 20)], max_words=10)


def test_areas_are_never_mixed() -> None:
    plan = plan_requests([words(0, D, 0), words(1, W, 1), words(2, E0, 2)], max_gap=100)
    assert [(r.area.name, r.start) for r in plan if r.area] == [("W", 1), ("D", 0), ("E0_", 2)]


def test_a_bool_in_a_word_read_anyway_is_taken_from_that_word() -> None:
    plan = plan_requests([words(0, W, 10, 2), bit(1, W, 11, 3)])
    assert len(plan) == 1
    assert plan[0].members == (Member(0, 0), Member(1, 1, bit=3))


def test_other_bools_are_read_with_bit_access_across_word_boundaries() -> None:
    plan = plan_requests([bit(0, CIO, 100, 15), bit(1, CIO, 101, 0), bit(2, CIO, 101, 2)],
                         max_gap=1)
    assert len(plan) == 1
    read = plan[0]
    assert read.bits and (read.start, read.count) == (100 * 16 + 15, 4)
    assert read.members == (Member(0, 0), Member(1, 1), Member(2, 3))
    assert read.describe() == "CIO100.15..CIO101.02 (4 bits)"


def test_scattered_items_go_into_one_multiple_read() -> None:
    spans = [words(0, D, 0, 2), words(1, D, 5000), bit(2, CIO, 7, 1), words(3, E0, 30000),
             words(4, W, 400)]
    plan = plan_requests(spans, multiple_items=167)
    assert len(plan) == 1 and plan[0].is_multiple
    assert plan[0].items == ((0xB0 - 0x80, 7, 1), (0xB1, 400, 0), (0x82, 5000, 0),
                             (0xA0, 30000, 0), (0x82, 0, 0), (0x82, 1, 0))
    assert {m.index: m.offset for m in plan[0].members} == {2: 0, 4: 1, 1: 2, 3: 3, 0: 4}


def test_a_lone_run_or_a_big_one_stays_a_memory_area_read() -> None:
    assert not plan_requests([words(0, D, 0, 2)], multiple_items=167)[0].is_multiple
    plan = plan_requests([words(0, D, 0, 500), words(1, D, 5000), words(2, D, 9000)],
                         multiple_items=167)
    assert [(r.is_multiple, r.size) for r in plan] == [(False, 500), (True, 2)]


def test_multiple_reads_hold_at_most_the_item_limit() -> None:
    spans = [words(i, D, 100 * i, 2) for i in range(100)]  # 100 runs of 2 words
    plan = plan_requests(spans, multiple_items=167)
    assert [r.size for r in plan] == [166, 34]
    assert plan_requests(spans, multiple_items=0)[0].size == 2  # multiple reads off


def test_limits_outside_the_protocol_are_refused() -> None:
    with pytest.raises(PlanError, match=r"max_request_words must be 1\.\.999"):
        plan_requests([], max_words=1000)
    with pytest.raises(PlanError, match=r"max_multiple_items must be 1\.\.167"):
        plan_requests([], multiple_items=168)


areas = st.sampled_from([D, CIO, W, E0])


@st.composite
def span_lists(draw: st.DrawFn) -> list[TagSpan]:
    out = []
    for i in range(draw(st.integers(1, 40))):
        area = draw(areas)
        if draw(st.booleans()):
            out.append(bit(i, area, draw(st.integers(0, 300)), draw(st.integers(0, 15))))
        else:
            n = draw(st.integers(1, 8))
            out.append(words(i, area, draw(st.integers(0, 300)), n))
    return out


def _covered(request: ReadRequest, member: Member, span: TagSpan) -> bool:
    if request.is_multiple:
        if span.bit is not None and member.bit is None:
            return request.items[member.offset] == (span.area.bit_code, span.word, span.bit)
        return all(request.items[member.offset + k] == (span.area.word_code, span.word + k, 0)
                   for k in range(span.words))
    assert request.area is span.area
    if request.bits:
        return request.start + member.offset == span.word * 16 + (span.bit or 0)
    return (request.start + member.offset == span.word
            and member.offset + span.words <= request.count and member.bit == span.bit)


@settings(max_examples=200, deadline=None)
@given(span_lists(), st.integers(0, 40), st.integers(1, 999), st.sampled_from([0, 1, 5, 167]))
def test_every_tag_lies_whole_in_exactly_one_read_within_the_limits(
    spans: list[TagSpan], gap: int, limit: int, items: int
) -> None:
    limit = max(limit, 8)
    plan = plan_requests(spans, max_gap=gap, max_words=limit, multiple_items=items)
    seen: dict[int, int] = {}
    for request in plan:
        assert request.size <= (items if request.is_multiple else limit)
        for member in request.members:
            seen[member.index] = seen.get(member.index, 0) + 1
            assert _covered(request, member, spans[member.index])
    assert seen == {s.index: 1 for s in spans}
    without = plan_requests(spans, max_gap=gap, max_words=limit)
    assert len(plan) <= len(without)
