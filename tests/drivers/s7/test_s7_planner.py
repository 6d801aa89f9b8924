"""The S7 request planner: golden plans kept as data, and properties of any plan
(every tag covered whole, both budgets of the PDU kept, no more requests than needed)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from drivers.s7.address import Area
from drivers.s7.frames import read_cost
from drivers.s7.planner import PlanError, ReadPlan, TagSpan, plan_reads
from tests.drivers.s7.s7_golden import PLAN_CASES, load_plan_case


def _spans(device: object) -> list[TagSpan]:
    tags = device.tags  # type: ignore[attr-defined]
    return [TagSpan(i, t.s7.area, t.s7.db, t.s7.start, t.s7.units, t.name)
            for i, t in enumerate(tags)]


@pytest.mark.parametrize("case_name", PLAN_CASES)
def test_golden_plans(case_name: str) -> None:
    device, runs = load_plan_case(case_name)
    for run in runs:
        plan = plan_reads(_spans(device), pdu_size=run["pdu_size"], max_items=run["max_items"],
                          max_gap=device.max_gap)
        got = [[c.item.describe() for c in r.chunks] for r in plan.requests]
        assert got == run["requests"], run["pdu_size"]
        check_plan(plan, _spans(device), run["pdu_size"], run["max_items"])


def check_plan(plan: ReadPlan, spans: Sequence[TagSpan], pdu: int, max_items: int) -> None:
    """Each tag lies whole in one block; each block is covered exactly by its chunks; each
    request fits the PDU both ways and the item limit."""
    where = {}
    for number, block in enumerate(plan.blocks):
        for index, offset in block.members:
            assert index not in where
            where[index] = (number, offset)
    for span in spans:
        number, offset = where[span.index]
        block = plan.blocks[number]
        assert (block.area, block.db) == (span.area, span.db)
        scale = 2 if span.area.per_element else 1
        assert offset == (span.start - block.start) * scale
        assert block.start <= span.start and span.end <= block.start + block.units
    covered: dict[int, list[tuple[int, int]]] = {}
    for request in plan.requests:
        assert 1 <= len(request.chunks) <= max_items
        assert request.request_bytes() <= pdu
        assert request.answer_bytes() <= pdu
        for chunk in request.chunks:
            covered.setdefault(chunk.block, []).append((chunk.offset, chunk.item.byte_length))
    for number, block in enumerate(plan.blocks):
        position = 0
        for offset, length in sorted(covered[number]):
            assert offset == position
            position += length
        assert position == block.byte_length


def fewest_requests(costs: list[int], room: int, max_items: int) -> int:
    """The true minimum number of requests, by trying every assignment (small inputs)."""
    n = len(costs)
    for bins in range(1, n + 1):
        for assignment in itertools.product(range(bins), repeat=n):
            if assignment[0] != 0:
                continue
            used = [0] * bins
            count = [0] * bins
            for cost, b in zip(costs, assignment, strict=True):
                used[b] += cost
                count[b] += 1
            if all(u <= room for u in used) and all(c <= max_items for c in count):
                return bins
    return n


region = st.tuples(st.sampled_from([Area.DB, Area.M, Area.I, Area.Q, Area.T, Area.C]),
                   st.integers(1, 3))


@st.composite
def spans_strategy(draw: st.DrawFn, max_tags: int = 12) -> list[TagSpan]:
    n = draw(st.integers(1, max_tags))
    out = []
    for i in range(n):
        area, db = draw(region)
        units = draw(st.integers(1, 4)) if area.per_element else draw(
            st.sampled_from([1, 2, 4, 8, 22, 60, 130, 256]))
        start = draw(st.integers(0, 400))
        out.append(TagSpan(i, area, db if area is Area.DB else 0, start, units, f"t{i}"))
    return out


@settings(max_examples=150, deadline=None)
@given(spans_strategy(), st.sampled_from([240, 480, 960]), st.integers(1, 25),
       st.integers(0, 16))
def test_any_plan_covers_every_tag_within_the_pdu(
    spans: list[TagSpan], pdu: int, max_items: int, max_gap: int
) -> None:
    plan = plan_reads(spans, pdu_size=pdu, max_items=max_items, max_gap=max_gap)
    check_plan(plan, spans, pdu, max_items)


@settings(max_examples=120, deadline=None)
@given(spans_strategy(max_tags=7), st.sampled_from([240, 480]), st.integers(1, 6))
def test_the_requests_are_as_few_as_the_blocks_allow(
    spans: list[TagSpan], pdu: int, max_items: int
) -> None:
    """For the items the blocks give, no packing uses fewer requests (exhaustive check)."""
    plan = plan_reads(spans, pdu_size=pdu, max_items=max_items, max_gap=8)
    costs = [read_cost(c.item.byte_length)[1] for r in plan.requests for c in r.chunks]
    # the exhaustive check tries bins**n assignments: beyond 7 items it runs for hours and
    # grows to gigabytes (seen on a 2-core CI box: killed by the OOM killer)
    assume(len(costs) <= 7)
    room = pdu - 14
    limit = min(max_items, (pdu - 12) // 12)
    assert len(plan.requests) == fewest_requests(costs, room, limit)


def test_tags_next_to_each_other_share_one_item_and_far_ones_do_not() -> None:
    spans = [TagSpan(0, Area.DB, 1, 0, 4), TagSpan(1, Area.DB, 1, 4, 4),
             TagSpan(2, Area.DB, 1, 16, 2), TagSpan(3, Area.DB, 1, 100, 2)]
    plan = plan_reads(spans, pdu_size=240, max_gap=8)
    assert [b.units for b in plan.blocks] == [18, 2]
    assert len(plan.requests) == 1
    nogap = plan_reads(spans, pdu_size=240, max_gap=0)
    assert [b.units for b in nogap.blocks] == [8, 2, 2]


def test_limits_outside_the_protocol_are_refused() -> None:
    with pytest.raises(PlanError, match="PDU size 32"):
        plan_reads([TagSpan(0, Area.M, 0, 0, 1)], pdu_size=32)
    with pytest.raises(PlanError, match="max_items"):
        plan_reads([TagSpan(0, Area.M, 0, 0, 1)], pdu_size=240, max_items=0)
