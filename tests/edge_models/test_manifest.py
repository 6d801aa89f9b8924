"""Manifest validation: every problem reported with file, line and key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_models.manifest import Aggregation, load_manifest, model_file, parse_manifest
from gateway.errors import ConfigError

from .helpers import REFERENCE

GOOD = """\
name: kpi
version: "1"
sha256: ab0000000000000000000000000000000000000000000000000000000000000f
inputs:
  - {tag: plc.Power, aggregation: mean, window: 30s, scale: 2}
  - {tag: plc.Power, aggregation: integral, window: cycle}
cycle: {tag: plc.PartCount}
trigger: {on: cycle}
outputs:
  - {name: value, onnx: kwh, unit: kWh}
alarms:
  - {name: high, output: value, above: 5, hysteresis: 1, min_duration: 2s}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_manifest(text, "m.yaml")
    return [str(p) for p in exc.value.problems]


def test_reference_manifests_are_valid() -> None:
    for path in sorted(REFERENCE.glob("*.yaml")):
        m = load_manifest(path)
        assert model_file(m, path).is_file()
    assert {p.stem for p in REFERENCE.glob("*.yaml")} >= {"quality", "energy"}


def test_good_manifest_parses() -> None:
    m = parse_manifest(GOOD)
    assert m.inputs[0].window == 30.0 and m.inputs[1].window == "cycle"
    assert m.inputs[1].aggregation is Aggregation.INTEGRAL
    assert m.alarms[0].min_duration == 2.0
    assert m.on_bad_input == "skip" and m.input == "features"


def test_unknown_key_and_bad_aggregation_name_their_lines() -> None:
    text = GOOD.replace("aggregation: mean", "aggregation: median").replace(
        "trigger: {on: cycle}", "trigger: {on: cycle}\ncolour: red")
    found = problems(text)
    assert ("m.yaml:5: inputs[0].aggregation: unknown aggregation 'median'; did you mean "
            "'mean'? (one of last, mean, min, max, std, rms, slope, integral, count)") in found
    assert any(p.startswith("m.yaml:9: colour: unknown key 'colour' (keys here: name, ")
               for p in found)


def test_missing_keys_and_bad_hash() -> None:
    text = GOOD.replace("version: \"1\"\n", "").replace("sha256: ab00", "sha256: zz00")
    found = problems(text)
    assert any(p.startswith("m.yaml:1: version: required key is missing") for p in found)
    assert any(p.startswith("m.yaml:2: sha256: must be 64 hexadecimal digits") for p in found)


def test_alarm_must_name_an_output_and_names_are_unique() -> None:
    text = GOOD.replace("output: value", "output: nothing").replace(
        "name: high", "name: value")
    found = problems(text)
    assert "m.yaml:12: alarms[0].output: no output named 'nothing'" in found
    assert any("alarms[0].name: duplicate name 'value' (first on line 10)" in p for p in found)


def test_cycle_window_needs_a_cycle_and_interval_needs_every() -> None:
    text = GOOD.replace("cycle: {tag: plc.PartCount}\n", "").replace(
        "trigger: {on: cycle}", "trigger: {on: interval}")
    found = problems(text)
    assert any("trigger: an interval trigger needs 'every'" in p for p in found)
    text = GOOD.replace("cycle: {tag: plc.PartCount}\n", "")
    assert any("a cycle trigger or window needs 'cycle" in p for p in problems(text))


def test_bad_window_duplicate_key_and_one_threshold() -> None:
    text = GOOD.replace("window: 30s", "window: soon").replace(
        "above: 5,", "above: 5, below: 1,").replace('version: "1"', 'version: "1"\nname: x')
    found = problems(text)
    assert any(p.startswith("m.yaml:3: name: duplicate key (first on line 1)") for p in found)
    assert any("inputs[0].window" in p and "soon" in p for p in found)
    assert any("alarms[0]: an alarm has exactly one of 'above' or 'below'" in p for p in found)


def test_unreadable_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_manifest(tmp_path / "absent.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match=r"empty\.yaml:1: .*the file is empty"):
        load_manifest(tmp_path / "empty.yaml")
