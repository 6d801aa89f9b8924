"""The request planner: coalescing, limits, gaps, overlaps, order independence."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modbus.planner import (
    MAX_BITS,
    MAX_REGISTERS,
    Member,
    PlanError,
    ReadRequest,
    TagSpan,
    plan_requests,
)


def spans(*layout: tuple[int, int], table: str = "holding") -> list[TagSpan]:
    """TagSpans from (address, count) pairs, indexed in the given order."""
    return [TagSpan(i, table, address, count) for i, (address, count) in enumerate(layout)]  # type: ignore[arg-type]


def shape(requests: list[ReadRequest]) -> list[tuple[str, int, int]]:
    return [(r.table, r.address, r.count) for r in requests]


def test_no_tags_no_requests() -> None:
    assert plan_requests([]) == []


def test_contiguous_tags_share_one_request() -> None:
    requests = plan_requests(spans((0, 1), (1, 2), (3, 4), (7, 1)))
    assert shape(requests) == [("holding", 0, 8)]
    assert requests[0].members == (Member(0, 0), Member(1, 1), Member(2, 3), Member(3, 7))


def test_a_gap_splits_requests_unless_max_gap_bridges_it() -> None:
    layout = spans((0, 2), (5, 2))  # registers 2, 3, 4 unused
    assert shape(plan_requests(layout)) == [("holding", 0, 2), ("holding", 5, 2)]
    assert shape(plan_requests(layout, max_gap=2)) == [("holding", 0, 2), ("holding", 5, 2)]
    assert shape(plan_requests(layout, max_gap=3)) == [("holding", 0, 7)]
    assert plan_requests(layout, max_gap=3)[0].members == (Member(0, 0), Member(1, 5))


def test_125_registers_fit_one_request_126_need_two() -> None:
    assert shape(plan_requests(spans(*[(a, 1) for a in range(125)]))) == [("holding", 0, 125)]
    requests = plan_requests(spans(*[(a, 1) for a in range(126)]))
    assert shape(requests) == [("holding", 0, 125), ("holding", 125, 1)]
    assert requests[1].members == (Member(125, 0),)


def test_four_register_value_ending_exactly_at_the_limit_fits() -> None:
    layout = spans(*[(a, 1) for a in range(121)], (121, 4))  # float64 at 121..124
    requests = plan_requests(layout)
    assert shape(requests) == [("holding", 0, 125)]
    assert requests[0].members[-1] == Member(121, 121)


def test_four_register_value_crossing_the_limit_starts_a_new_request() -> None:
    layout = spans(*[(a, 1) for a in range(122)], (122, 4))  # float64 at 122..125
    requests = plan_requests(layout)
    assert shape(requests) == [("holding", 0, 122), ("holding", 122, 4)]
    assert requests[1].members == (Member(122, 0),)


def test_smaller_configured_limit() -> None:
    layout = spans((0, 2), (2, 2), (4, 2), (6, 2))
    assert shape(plan_requests(layout, max_registers=4)) == [("holding", 0, 4), ("holding", 4, 4)]
    assert shape(plan_requests(layout, max_registers=5)) == [("holding", 0, 4), ("holding", 4, 4)]


def test_overlapping_tags_share_a_request() -> None:
    # a uint32 at 10 and views of its two halves
    requests = plan_requests(spans((10, 2), (11, 1), (10, 1)))
    assert shape(requests) == [("holding", 10, 2)]
    assert sorted(requests[0].members, key=lambda m: m.index) == [
        Member(0, 0),
        Member(1, 1),
        Member(2, 0),
    ]


def test_overlapping_tag_that_does_not_fit_is_read_again_whole() -> None:
    # singles at 0..122 and a uint32 at 123..124 fill a request; a float64 at 124..127
    # overlapping the uint32 cannot join it, so register 124 is read twice
    layout = spans(*[(a, 1) for a in range(123)], (123, 2), (124, 4))
    requests = plan_requests(layout)
    assert shape(requests) == [("holding", 0, 125), ("holding", 124, 4)]
    assert requests[0].members[-1] == Member(123, 123)
    assert requests[1].members == (Member(124, 0),)


def test_longer_tag_first_at_the_same_address() -> None:
    # at address 124 the float64 opens the next request and the uint16 there joins it
    layout = spans(*[(a, 1) for a in range(125)], (124, 4))
    requests = plan_requests(layout)
    assert shape(requests) == [("holding", 0, 124), ("holding", 124, 4)]
    assert requests[1].members == (Member(125, 0), Member(124, 0))


def test_order_of_the_tags_does_not_change_the_plan() -> None:
    layout = spans((40, 2), (0, 1), (3, 4), (1, 2), (200, 4), (120, 2), (41, 1))
    expected = plan_requests(layout, max_gap=5)
    shuffled = list(layout)
    random.Random(7).shuffle(shuffled)
    assert plan_requests(shuffled, max_gap=5) == expected
    assert shape(expected) == [
        ("holding", 0, 7),
        ("holding", 40, 2),
        ("holding", 120, 2),
        ("holding", 200, 4),
    ]


def test_tables_never_mix_and_come_in_a_fixed_order() -> None:
    layout = [
        TagSpan(0, "input", 0, 2),
        TagSpan(1, "holding", 0, 2),
        TagSpan(2, "discrete", 0, 1),
        TagSpan(3, "coil", 0, 1),
        TagSpan(4, "holding", 2, 1),
    ]
    assert shape(plan_requests(layout)) == [
        ("coil", 0, 1),
        ("discrete", 0, 1),
        ("holding", 0, 3),
        ("input", 0, 2),
    ]


def test_bits_are_limited_by_max_bits() -> None:
    coils = spans(*[(a, 1) for a in range(2001)], table="coil")
    assert shape(plan_requests(coils)) == [("coil", 0, 2000), ("coil", 2000, 1)]
    assert shape(plan_requests(coils[:2000])) == [("coil", 0, 2000)]
    assert shape(plan_requests(coils[:30], max_bits=16)) == [("coil", 0, 16), ("coil", 16, 14)]
    # the register limit does not apply to bits
    assert shape(plan_requests(coils[:200], max_registers=10)) == [("coil", 0, 200)]


def test_tag_at_the_top_of_the_address_space() -> None:
    assert shape(plan_requests(spans((65532, 4)))) == [("holding", 65532, 4)]
    with pytest.raises(PlanError, match="outside"):
        plan_requests(spans((65533, 4)))


def test_tag_larger_than_a_request_is_an_error_naming_it() -> None:
    with pytest.raises(
        PlanError, match=r"tag 'energy' needs 4 registers .* max_request_registers is 2"
    ):
        plan_requests([TagSpan(0, "holding", 0, 4, "energy")], max_registers=2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_registers": 0}, "max_request_registers"),
        ({"max_registers": 126}, "max_request_registers"),
        ({"max_bits": 2001}, "max_request_bits"),
        ({"max_gap": -1}, "max_gap"),
    ],
)
def test_limits_outside_the_protocol_are_errors(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(PlanError, match=message):
        plan_requests(spans((0, 1)), **kwargs)


span_lists = st.lists(
    st.tuples(
        st.sampled_from(["holding", "input", "coil"]),
        st.integers(0, 400),
        st.sampled_from([1, 1, 2, 4]),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    layout=span_lists,
    max_registers=st.integers(4, MAX_REGISTERS),
    max_bits=st.integers(1, MAX_BITS),
    max_gap=st.integers(0, 10),
)
def test_every_tag_lies_whole_in_exactly_one_request_within_the_limits(
    layout: list[tuple[str, int, int]], max_registers: int, max_bits: int, max_gap: int
) -> None:
    tags = [
        TagSpan(i, table, address, 1 if table == "coil" else count)  # type: ignore[arg-type]
        for i, (table, address, count) in enumerate(layout)
    ]
    requests = plan_requests(tags, max_registers=max_registers, max_bits=max_bits, max_gap=max_gap)
    seen: list[int] = []
    for request in requests:
        limit = max_bits if request.is_bits else max_registers
        assert 1 <= request.count <= limit
        covered = [False] * request.count
        for member in request.members:
            tag = tags[member.index]
            seen.append(member.index)
            assert tag.table == request.table
            assert request.address + member.offset == tag.address
            assert member.offset + tag.count <= request.count  # never straddles
            covered[member.offset : member.offset + tag.count] = [True] * tag.count
        # unused registers inside a request come in runs of at most max_gap
        run = longest = 0
        for used in covered:
            run = 0 if used else run + 1
            longest = max(longest, run)
        assert longest <= max_gap
        assert covered[0] and covered[-1]
    assert sorted(seen) == list(range(len(tags)))
