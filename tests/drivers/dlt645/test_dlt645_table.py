"""The shipped identifier tables: readable, complete for what the issue names, and in
agreement with an independent table (PyPI ``dlt645``'s DL/T 645-2007 data items)."""

from __future__ import annotations

import dlt645.service.clientsvc  # noqa: F401  (fills DIMap)
import pytest
from dlt645.model.data.define import DIMap

from drivers.dlt645.table import TABLES, _TableFile, table
from gateway.config.yaml_model import validate_yaml_text
from gateway.errors import ConfigError

#: their format names for ours where both say the same thing in other letters
_SAME = {"XX": "NN", "YYMMDDWW": "YYMMDDWW", "NNNNNNNNNNNN": "NNNNNNNNNNNN"}


@pytest.mark.parametrize("version", [2007, 1997])
def test_tables_have_every_quantity_per_phase(version: int) -> None:
    known = table(version)  # type: ignore[arg-type]
    for quantity in ("voltage", "current", "power.active", "power_factor"):
        for phase in ("a", "b", "c"):
            assert f"{quantity}.{phase}" in known.by_name
    for name in ("energy.import.total", "energy.export.total", "energy.import.tariff1",
                 "demand.import.total", "demand.import.total.time", "power.active.total",
                 "power_factor.total", "param.demand_period"):
        assert name in known.by_name
    if version == 2007:
        assert {"frequency", "energy.import.a", "demand.import.a"} <= set(known.by_name)


def test_2007_formats_agree_with_the_dlt645_package() -> None:
    checked = 0
    for entry in table(2007).by_name.values():
        if entry.offset:  # the time of a demand record: theirs describe the record's value
            continue
        theirs = DIMap.get(int(entry.di, 16))
        assert theirs is not None, f"{entry.name} {entry.di} is not a DL/T 645-2007 identifier"
        assert _SAME.get(entry.format.text, entry.format.text) == theirs.data_format, entry.name
        checked += 1
    assert checked > 60


def test_values_share_their_identifiers_record() -> None:
    demand = table(2007).by_name["demand.import.total.time"]
    assert (demand.di, demand.offset, demand.format.size, demand.record) == ("01010000", 3, 5, 8)
    assert table(2007).lookup("01010000").name == "demand.import.total"  # code -> first value
    assert table(1997).lookup("b611").name == "voltage.a"


def test_a_broken_table_is_reported_at_its_line() -> None:
    text = (TABLES / "dlt645_1997.yaml").read_text().replace("format: XXX,", "format: XX-X,", 1)
    with pytest.raises(ConfigError) as info:
        validate_yaml_text(_TableFile, text, "dlt645_1997.yaml")
    problem = info.value.problems[0]
    assert problem.path_text.endswith(".format") and "unknown format 'XX-X'" in problem.message
    assert text.splitlines()[problem.line - 1].lstrip().startswith("- {name: voltage.a")
