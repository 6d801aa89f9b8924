"""The scenario runner itself: validation errors, the proxy, evaluation, reports, the CLI."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.errors import ConfigError
from hil.cli import main
from hil.recorder import ReceivedSample
from hil.scenario import Recording, ScenarioResult, load_scenario, write_html, write_junit
from hil.scenario.expectations import evaluate
from hil.scenario.model import NoSequenceGaps, TagValue
from hil.scenario.proxy import FaultyProxy
from hil.scenario.runner import FaultWindow

GOOD = """\
name: tiny
description: one meter, no faults
duration: 3
devices:
  - {kind: modbus_meter, name: meter, mode: waveform, period_s: 10}
expect:
  - {type: no_sequence_gaps, sessions: 1}
  - {type: tag_value, tag: meter.voltage, value: 300, tolerance: 1}
"""


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_validation_errors_name_file_line_and_key(tmp_path: Path) -> None:
    bad = GOOD.replace("duration: 3", "duration: 3\nspeed: 2").replace(
        "expect:",
        "faults:\n  - {at: 1, action: broker_outage, duraton: 2}\n"
        "  - {at: 1, action: modbus_delay, device: nope, delay: 1}\nexpect:",
    )
    path = write(tmp_path, bad)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    found = {(p.line, p.path_text, p.message) for p in info.value.problems}
    assert (4, "speed", "unknown key 'speed'; did you mean 'seed'?") in found
    assert (8, "faults[0].duraton", "unknown key 'duraton'; did you mean 'duration'?") in found
    assert (9, "faults[1].device", "no device named 'nope' in this scenario") in found
    assert all(p.file == str(path) for p in info.value.problems)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 1
    assert f"{path}:8" in result.output and "faults[0].duraton" in result.output


def test_dtu_faults_need_a_meter_behind_a_dtu(tmp_path: Path) -> None:
    bad = GOOD.replace("expect:", "faults:\n  - {at: 1, action: dtu_redial, device: meter}\n"
                       "expect:")
    with pytest.raises(ConfigError) as info:
        load_scenario(write(tmp_path, bad))
    (problem,) = info.value.problems
    assert (problem.line, problem.path_text) == (7, "faults[0].device")
    assert problem.message == "'meter' is not behind a DTU (transport: dtu)"
    good = bad.replace("period_s: 10}", "period_s: 10, transport: dtu}")
    assert load_scenario(write(tmp_path, good)).devices[0].transport == "dtu"  # type: ignore[union-attr]  # the meter device


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ("name: meter,", "name: [meter],", "devices[0].name"),
        ("duration: 3", "duration: soon", "duration"),
        ("duration: 3", "duration: 3\nfaults: 5", "faults"),
        ("duration: 3", "duration: 3\nmodels: 5", "models"),
        ("duration: 3", "duration: 3\nfaults:\n  - {action: device_restart, device: [a], at: 1}",
         "faults[0].device"),
        ("duration: 3", "duration: 3\ntimeline:\n  - {kind: step, device: [a], at: 1}",
         "timeline[0].device"),
        ("sessions: 1}", "sessions: 1}\n  - {type: command_round_trip, command: [a]}",
         "expect[1].command"),
        ("tolerance: 1}", "tolerance: 1, between: [2, 1]}", "expect[1].between"),
    ],
)
def test_values_of_a_wrong_type_are_errors_not_crashes(
    tmp_path: Path, old: str, new: str, where: str
) -> None:
    assert old in GOOD
    with pytest.raises(ConfigError) as info:
        load_scenario(write(tmp_path, GOOD.replace(old, new)))
    assert where in {p.path_text for p in info.value.problems}, info.value


def test_an_unreadable_scenario_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="cannot read"):
        load_scenario(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_scenario(tmp_path)


def test_list_and_validate_the_shipped_scenarios() -> None:
    result = CliRunner().invoke(main, ["list", "--all"])
    assert result.exit_code == 0, result.output
    for name in ("normal-shift", "broker-outage-zero-loss", "plc-restart", "soak"):
        assert name in result.output
    assert CliRunner().invoke(main, ["validate", "normal-shift"]).exit_code == 0


def _sample(tag: str, value: float, t: float, seq: int = 0) -> ReceivedSample:
    return ReceivedSample(tag, value, int(t * 1000), "good", seq, int((t + 0.05) * 1e9))


def test_evaluation_says_why_an_expectation_fails() -> None:
    msgs = [{"session": 1, "seq": s} for s in (5, 6, 8)]
    rec = Recording(0.0, [{"session": 1, "seq": 5, "ts": 0}], [], msgs,
                    [_sample("m.v", 230, 1.0), _sample("m.v", 236, 2.0)])  # fmt: skip
    ok = evaluate(TagValue(type="tag_value", tag="m.v", value=232, tolerance=5), rec)
    assert ok.passed
    off = evaluate(TagValue(type="tag_value", tag="m.v", value=230, tolerance=5), rec)
    assert not off.passed
    assert off.detail == "m.v was 236 at t=2.00 s: off by 6 > tolerance 5 (2 samples)"
    gaps = evaluate(NoSequenceGaps(type="no_sequence_gaps"), rec)
    assert not gaps.passed and "1 lost, first [7]" in gaps.detail


async def test_proxy_forwards_delays_and_cuts() -> None:
    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while data := await r.read(100):
            w.write(data)
            await w.drain()
        w.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    proxy = await FaultyProxy("127.0.0.1", server.sockets[0].getsockname()[1]).start()
    try:
        r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
        w.write(b"ping")
        assert await asyncio.wait_for(r.readexactly(4), 5) == b"ping"
        proxy.latency = 0.2
        loop = asyncio.get_running_loop()
        began = loop.time()
        w.write(b"slow")
        assert await asyncio.wait_for(r.readexactly(4), 5) == b"slow"
        assert loop.time() - began >= 0.4  # both directions
        proxy.cut = True
        assert await asyncio.wait_for(r.read(), 5) == b""
        r2, _ = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await asyncio.wait_for(r2.read(), 5) == b""  # refused while cut
    finally:
        await proxy.stop()
        server.close()


def test_reports_are_self_contained(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, GOOD))
    rec = Recording(0.0, [], [], [], [_sample("meter.voltage", 230 + i % 3, i * 0.1)
                                      for i in range(30)])  # fmt: skip
    res = ScenarioResult(scenario, "s.yaml", [evaluate(scenario.expect[1], rec)],
                         [FaultWindow("broker_outage", 1.0, 2.0)], rec)  # fmt: skip
    html = write_html([res], tmp_path / "r.html").read_text()
    assert "<svg" in html and "broker_outage" in html and "<script" not in html
    assert "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    suite = ET.parse(write_junit([res], tmp_path / "j.xml")).getroot()[0]
    assert suite.get("failures") == "1"


@pytest.mark.broker
@pytest.mark.slow
def test_a_wrong_expectation_fails_the_run_and_the_report_says_why(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["run", str(path), "--report", str(out)])
    assert result.exit_code == 1, result.output
    # the console: one line for the scenario, its verdicts, the summary; the log in a file
    lines = result.output.splitlines()
    assert len(lines) == 4, result.output
    assert lines[0].startswith("tiny  FAIL  1/2 expectations  ")
    assert lines[1].startswith("  PASS no sequence gaps")
    assert lines[2].startswith("  FAIL meter.voltage = 300 ± 1")
    assert lines[3].startswith("0/1 scenarios passed; report ") and "hil.log" in lines[3]
    log = (out / "hil.log").read_text()
    assert "tiny: first birth received: timeline starts" in log
    html = (out / "report.html").read_text()
    assert "FAIL" in html and "meter.voltage = 300 ± 1" in html
    assert "off by" in html and "&gt; tolerance 1" in html
    suite = ET.parse(out / "junit.xml").getroot()[0]
    assert suite.get("name") == "tiny" and suite.get("failures") == "1"
    failure = suite.find("testcase[@name='meter.voltage = 300 ± 1']/failure")
    assert failure is not None and "off by" in (failure.get("message") or "")
    passed = suite.find("testcase[@name='no sequence gaps over 1 gateway runs']")
    assert passed is not None and passed.find("failure") is None


COMMANDS = """\
name: commands
description: command round trips and a timeline ramp against the real gateway
duration: 7
devices:
  - {kind: modbus_meter, name: meter}
  - {kind: opcua_plc, name: press}
timeline:
  - {at: 1, kind: machine_state, device: meter, state: idle}
  - {at: 1, kind: ramp, device: meter, param: nominal_voltage_v, to: 250, over: 2}
faults:
  - {at: 1, action: command, name: limit, tag: meter.power_limit, value: 42.5}
  - {at: 1, action: command, name: hold, tag: press.hold_time, value: 2.5}
  - {at: 2, action: command, name: volts, tag: meter.voltage, value: 240}
  - {at: 2, action: command, name: hold-high, tag: press.hold_time, value: 50}
expect:
  - {type: command_round_trip, command: limit, within: 3, telemetry: true, on_device: true}
  - {type: command_round_trip, command: hold, within: 3, telemetry: true, on_device: true}
  - {type: command_round_trip, command: volts, within: 3}
  - {type: command_round_trip, command: hold-high, status: rejected, within: 3}
  - {type: tag_value, tag: meter.voltage, value: 250, tolerance: 6, min_samples: 10,
     between: [4, 7]}
"""


@pytest.mark.broker
@pytest.mark.slow
def test_command_round_trips_and_a_ramp_against_the_real_gateway(tmp_path: Path) -> None:
    path = write(tmp_path, COMMANDS)
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["run", str(path), "--report", str(out)])
    assert result.exit_code == 1, result.output  # the 'volts' expectation is wrong
    suite = ET.parse(out / "junit.xml").getroot()[0]
    assert suite.get("failures") == "1", result.output
    verdicts = {c.get("name"): c for c in suite.findall("testcase")}
    limit = verdicts["command limit accepted within 3 s, seen in telemetry, held by the device"]
    assert limit.find("failure") is None
    assert "device holds 42.5" in (limit.findtext("system-out") or "")
    hold = verdicts["command hold accepted within 3 s, seen in telemetry, held by the device"]
    assert hold.find("failure") is None, (hold.findtext("system-out"), result.output)
    assert verdicts["command hold-high rejected within 3 s"].find("failure") is None
    assert verdicts["meter.voltage = 250 ± 6 in [4, 7] s"].find("failure") is None
    failure = verdicts["command volts accepted within 3 s"].find("failure")
    assert failure is not None
    assert "cmd-result rejected" in (failure.get("message") or "")
    assert "meter.voltage is not writable" in (failure.get("message") or "")
    html = (out / "report.html").read_text()
    assert "meter.voltage is not writable" in html and "ramp meter.nominal_voltage_v" in html
