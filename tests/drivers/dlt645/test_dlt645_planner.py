"""The request planner: one request per (meter, identifier), shared by the tags of one
record; with block reads, the phases or tariffs that two or more tags need in one."""

from __future__ import annotations

import pytest

from drivers.dlt645.codec import Format
from drivers.dlt645.planner import PlanError, TagSpec, plan_requests
from drivers.dlt645.table import DataIdentifier, table

T7 = table(2007)
A1, A2 = "000000000001", "000000000002"


def specs(*items: tuple[str, str]) -> list[TagSpec]:
    return [TagSpec(i, name.replace(".", "_"), meter, T7.by_name[name])
            for i, (meter, name) in enumerate(items)]


def shape(requests: list) -> list[tuple[str, str, list[tuple[str, int]]]]:
    return [(r.meter, r.di, [(m.name, m.at) for m in r.members]) for r in requests]


def test_one_request_per_meter_and_identifier() -> None:
    tags = specs((A1, "demand.import.total"), (A1, "voltage.a"), (A1, "demand.import.total.time"),
                 (A2, "voltage.a"), (A1, "voltage.a"))
    assert shape(plan_requests(tags, 2007)) == [
        (A1, "01010000", [("demand_import_total", 0), ("demand_import_total_time", 3)]),
        (A1, "02010100", [("voltage_a", 0), ("voltage_a", 0)]),
        (A2, "02010100", [("voltage_a", 0)]),
    ]
    assert [r.record for r in plan_requests(tags, 2007)] == [8, 2, 2]


def test_blocks_join_what_two_or_more_tags_need() -> None:
    tags = specs((A1, "voltage.c"), (A1, "voltage.a"), (A1, "power.active.total"),
                 (A1, "energy.import.total"), (A1, "energy.import.tariff2"), (A2, "voltage.b"))
    requests = plan_requests(tags, 2007, T7.blocks)
    assert shape(requests) == [
        (A1, "0201FF00", [("voltage_c", 4), ("voltage_a", 0)]),
        (A1, "02030000", [("power_active_total", 0)]),  # alone in its block: a plain read
        (A1, "0001FF00", [("energy_import_total", 0), ("energy_import_tariff2", 8)]),
        (A2, "02010200", [("voltage_b", 0)]),
    ]
    assert [(r.block, r.need, r.record) for r in requests] == [
        (True, 6, None), (False, 3, 3), (True, 12, None), (False, 2, 2)]
    # the meter refused a block: its identifiers one at a time
    single = plan_requests(tags, 2007, T7.blocks, {(A1, "0201FF00")})
    assert [r.di for r in single][:2] == ["02010300", "02010100"]


def test_1997_blocks() -> None:
    t = table(1997)
    tags = [TagSpec(i, n, A1, t.by_name[n]) for i, n in enumerate(
        ["current.a", "current.c", "power.active.total", "power.active.b"])]
    assert [(r.di, [m.at for m in r.members]) for r in plan_requests(tags, 1997, t.blocks)] == [
        ("B62F", [0, 4]), ("B63F", [0, 6])]


def test_a_value_past_the_largest_frame_is_refused() -> None:
    far = DataIdentifier("04FE0001", Format.parse("XX"), offset=252)
    with pytest.raises(PlanError, match="past the 251 bytes"):
        plan_requests([TagSpec(0, "far", A1, far)], 2007)
