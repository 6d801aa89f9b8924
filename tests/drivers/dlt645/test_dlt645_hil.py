"""The DL/T 645 pieces of the HIL kit: scenario devices and faults, and the simulator CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from hil.scenario.model import load_scenario

BASE = """\
name: t
duration: 10
models: [energy]
devices:
  - {kind: dlt645_meter, name: meter}
  - {kind: dlt645_meter, name: feeder, line: meter}
  - {kind: modbus_meter, name: mb}
  - {kind: dlt645_meter, name: far, line: mb}
  - {kind: dlt645_meter, name: other, line: meter, transport: tcp}
faults:
  - {at: 1, action: meter_error, device: mb}
  - {at: 1, action: bad_answers, device: feeder, kind: half}
  - {at: 1, action: device_silence, device: feeder}
expect:
  - {type: no_sequence_gaps}
"""


def test_scenario_devices_and_faults_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(BASE)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    found = {(p.line, p.path_text): p.message for p in info.value.problems}
    assert found == {
        (8, "devices[3].line"): "'mb' is not an earlier dlt645_meter device with a line of "
                                "its own",
        (9, "devices[4].line"): "meters sharing 'meter''s line need its transport and version",
        (11, "faults[0].device"): "'mb' is not a dlt645_meter",
    }


def test_the_energy_model_takes_a_dlt645_meter(tmp_path: Path) -> None:
    text = BASE.replace("  - {kind: modbus_meter, name: mb}\n", "").replace(
        "  - {kind: dlt645_meter, name: far, line: mb}\n", "").replace(
        "  - {kind: dlt645_meter, name: other, line: meter, transport: tcp}\n", "").replace(
        "  - {at: 1, action: meter_error, device: mb}\n", "")
    path = tmp_path / "s.yaml"
    path.write_text(text)
    scenario = load_scenario(path)
    assert [d.kind for d in scenario.devices] == ["dlt645_meter", "dlt645_meter"]
