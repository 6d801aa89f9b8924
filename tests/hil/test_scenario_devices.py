"""Scenario runner: the firmware_update action and expectation, the scale device, max_gap,
and the northbound format (JSON explicit, Sparkplug B on request)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.config.loader import load_config
from gateway.errors import ConfigError
from hil.cli import main
from hil.recorder import ReceivedSample
from hil.scenario import Recording, load_scenario, run_scenario
from hil.scenario.expectations import evaluate
from hil.scenario.firmware import FirmwareRecord
from hil.scenario.gateway_process import (
    mcu_node_device_config,
    scale_device_config,
    write_gateway_config,
)
from hil.scenario.model import FirmwareUpdateExpect, MaxGap

BAD = """\
name: fw
duration: 5
northbound: {format: sparkplug}
devices:
  - {kind: mcu_node, name: node}
  - {kind: scale, name: scale, rate: 0}
  - {kind: modbus_meter, name: meter}
faults:
  - {at: 1, action: firmware_update, name: up, device: node, version: 1.x}
  - {at: 1, action: firmware_update, name: up2, device: meter, version: 1.1.0}
  - {at: 1, action: wrong_baud, device: node}
  - {at: 2, action: partial_line, device: scale}
expect:
  - {type: firmware_update, update: nope, outcome: updated}
  - {type: no_sequence_gaps}
  - {type: max_gap, tag_prefix: scale., max: 0.5}
"""


def test_validation_names_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "fw.yaml"
    path.write_text(BAD)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    found = {(p.line, p.path_text, p.message) for p in info.value.problems}
    assert all(p.file == str(path) for p in info.value.problems)
    assert (6, "devices[1].rate", "must be greater than 0 (got 0)") in found
    assert any(line == 9 and key == "faults[0].version" and "(got '1.x')" in msg
               for line, key, msg in found)
    assert (10, "faults[1].device", "'meter' is not a mcu_node") in found
    assert (11, "faults[2].device", "'node' is not a scale") in found
    assert (14, "expect[0].update", "no firmware_update action named 'nope'") in found
    assert any(line == 15 and key == "expect[1].type" and "needs northbound format json" in msg
               for line, key, msg in found)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 1 and f"{path}:14" in result.output


def _rec(samples: list[ReceivedSample], firmware: list[FirmwareRecord]) -> Recording:
    return Recording(0.0, [], [], [], samples, firmware=firmware)


def _good(tag: str, t: float) -> ReceivedSample:
    return ReceivedSample(tag, 1.0, int(t * 1000), "good", 0, int(t * 1e9))


def test_firmware_expectation_says_why_it_fails() -> None:
    done = FirmwareRecord("up", "node", "1.1.0", False, 1.0, 1.5, {
        "outcome": "updated", "old_version": "1.0.0", "running_version": "1.1.0",
        "seconds": 0.4, "resumes": 0, "detail": ""})
    refused = FirmwareRecord("bad", "node", "1.2.0", False, 2.0, 2.1,
                             error="the gateway refused: node is not connected (HTTP 409)")
    samples = [_good("node.vibration", 1.0 + 0.1 * i) for i in range(5)]  # stop at t=1.4
    rec = _rec(samples, [done, refused])

    def check(**kw: object) -> tuple[bool, str]:
        r = evaluate(FirmwareUpdateExpect(type="firmware_update", **kw), rec)  # type: ignore[arg-type]
        return r.passed, r.detail

    ok, detail = check(update="up", version="1.1.0", resume_within=None)
    assert ok and detail.startswith("updated 1.0.0 -> 1.1.0 in 0.40 s")
    assert check(update="up", version="2.0.0", resume_within=None) == (
        False, "updated 1.0.0 -> 1.1.0 in 0.40 s (0 resumes): the node runs 1.1.0, "
        "expected 2.0.0")
    ok, detail = check(update="up", outcome="rolled_back", resume_within=None)
    assert not ok and detail.endswith("expected rolled_back")
    ok, detail = check(update="up", within=0.1, resume_within=None)
    assert not ok and detail.endswith("took 0.40 s > 0.1 s")
    ok, detail = check(update="up")  # no reading after t=1.5
    assert not ok and "no good reading of node after it ended (t=1.50 s)" in detail
    assert check(update="bad") == (
        False, "no result: the gateway refused: node is not connected (HTTP 409)")
    assert check(update="other") == (False, "firmware update other was never started")


def test_max_gap_counts_silence_at_the_window_edges() -> None:
    samples = [_good("m.a", t) for t in (1.0, 1.2, 1.4, 2.5)] + [_good("m.b", 1.1)]
    rec = _rec(samples, [])
    r = evaluate(MaxGap(type="max_gap", tag_prefix="m.a", max=0.5, between=(1.0, 2.5)), rec)
    assert not r.passed
    assert r.detail == "largest gap 1.10 s (m.a after t=1.40 s) over 1 tags > 0.5 s"
    r = evaluate(MaxGap(type="max_gap", tag_prefix="m.", max=0.25, between=(1.0, 1.4)), rec)
    assert not r.passed and "m.b after t=1.10 s" in r.detail  # m.b silent up to the end
    r = evaluate(MaxGap(type="max_gap", tag_prefix="m.", max=0.5, min_tags=3), rec)
    assert not r.passed and r.detail.startswith("2 tags of m.* had good samples")


def test_generated_configs_are_valid_gateway_configs(tmp_path: Path) -> None:
    devices = [  # a port each: a node and a scale on one port are refused
        mcu_node_device_config("node", "/dev/tty-node", 1, "2s"),
        scale_device_config("scale", "/dev/tty-scale", "poll", "200ms", "1s"),
    ]
    path = write_gateway_config(tmp_path, "x", 1883, devices, "100ms", http_port=18321)
    body = json.loads(path.read_text())
    assert body["northbound"]["format"] == "json"  # explicit: the default is Sparkplug B
    assert body["http"] == {"enabled": True, "bind": "127.0.0.1", "port": 18321}
    config = load_config(path)
    assert config.northbound.format == "json" and config.http.port == 18321
    path = write_gateway_config(tmp_path, "x", 1883, devices, "100ms",
                                northbound_format="sparkplug", data_qos=1)
    config = load_config(path)
    assert config.northbound.format == "sparkplug" and config.northbound.sparkplug.data_qos == 1
    assert not config.http.enabled


WRONG = """\
name: fw-wrong
description: a firmware update with a wrong expected version
duration: 5
devices:
  - {kind: mcu_node, name: node}
faults:
  - {at: 1, action: firmware_update, name: up, device: node, version: 1.1.0, size: 8192}
expect:
  - {type: firmware_update, update: up, outcome: updated, version: 1.1.0}
  - {type: firmware_update, update: up, outcome: updated, version: 2.0.0}
"""


@pytest.mark.broker
@pytest.mark.slow
@pytest.mark.serial
def test_a_wrong_firmware_expectation_fails_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "fw.yaml"
    path.write_text(WRONG)
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["run", str(path), "--report", str(out)])
    assert result.exit_code == 1, result.output
    suite = ET.parse(out / "junit.xml").getroot()[0]
    assert suite.get("failures") == "1", result.output
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    good = cases["firmware update up updated, running 1.1.0, readings again within 5 s"]
    assert good.find("failure") is None
    assert "updated 1.0.0 -> 1.1.0" in (good.findtext("system-out") or "")
    failure = cases["firmware update up updated, running 2.0.0, readings again within 5 s"]
    message = failure.find("failure").get("message")  # type: ignore[union-attr]
    assert message is not None and "the node runs 1.1.0, expected 2.0.0" in message
    assert "firmware_update node -&gt; 1.1.0" in (out / "report.html").read_text()


POLLED_SCALE = """\
name: scale-poll
description: a scale answering SI every 100 ms, power-cycled
duration: 7
devices:
  - {kind: scale, name: scale, mode: poll, poll_interval: 100ms}
faults:
  - {at: 2, action: device_restart, device: scale, downtime: 1}
expect:
  - {type: tag_quality, tag: scale.weight, quality: good, min_samples: 10, between: [0, 2]}
  - {type: device_death_rebirth, device: scale, between: [1.9, 7]}
  - {type: tag_quality, tag: scale.stable, quality: good, min_samples: 5, between: [5, 7]}
"""


@pytest.mark.broker
@pytest.mark.slow
@pytest.mark.serial
async def test_a_polled_scale_is_power_cycled_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "scale.yaml"
    path.write_text(POLLED_SCALE)
    result = await run_scenario(load_scenario(path), str(path), tmp_path / "run")
    table = "\n".join(f"{r.passed} {r.name}: {r.detail}" for r in result.results)
    assert result.passed, f"{result.error}\n{table}"
    assert result.recording is not None
    weights = [s for s in result.recording.samples if s.tag == "scale.weight"]
    stable = [s for s in result.recording.samples if s.tag == "scale.stable"]
    assert all(isinstance(s.value, float) and 0 <= s.value <= 31 for s in weights
               if s.quality == "good")  # parts of 0.5..25 kg, +20 % while settling
    assert {s.value for s in stable if s.quality == "good"} <= {True, False}


MC_BAD = """\
name: mc
duration: 5
devices:
  - {kind: mc_plc, name: fx5, series: iq-f}
  - {kind: modbus_meter, name: meter}
faults:
  - {at: 1, action: mc_end_code, device: meter}
  - {at: 1, action: mc_bad_answers, device: fx5, answer: noise}
  - {at: 1, action: device_silence, device: meter}
  - {at: 1, action: plc_setpoint, device: fx5, hold_time: 4}
timeline:
  - {at: 1, kind: step, device: fx5, param: melt_setpoint_c, value: 240}
expect:
  - {type: no_sequence_gaps}
"""


def test_mc_plc_faults_name_an_mc_plc(tmp_path: Path) -> None:
    path = tmp_path / "mc.yaml"
    path.write_text(MC_BAD)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    found = {(p.line, p.path_text, p.message) for p in info.value.problems}
    assert (7, "faults[0].device", "'meter' is not a mc_plc") in found
    assert any(line == 8 and key == "faults[1].answer" for line, key, _ in found)
    assert (9, "faults[2].device",
            "'meter' is not a mcu_node, scale, dlt645_meter, fins_plc or mc_plc") in found
    assert len(found) == 3  # a setpoint and a timeline step on the MC PLC are fine


def test_mc_device_config_reads_its_series_addresses() -> None:
    from hil.scenario.gateway_process import mc_device_config

    entry = mc_device_config("fx5", 5002, "iq-f", "udp", "4e", "100ms", "300ms", writable=True)
    addresses = {t["name"]: t["address"] for t in entry["tags"]}
    assert addresses["cycle_start"] == "X20" and addresses["melt_temp"] == "D100"
    writable = {t["name"] for t in entry["tags"] if t.get("writable")}
    assert writable == {"hold_time", "melt_setpoint"}
    assert (entry["transport"], entry["frame"], entry["plc_series"]) == ("udp", "4e", "iq-f")
