"""Commands end to end: brain -> real Mosquitto -> gateway -> simulated meter, and back."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from hil.broker import MqttBroker
from hil.recorder import TelemetryRecorder
from tests.integration.command_client import CommandClient
from tests.integration.gateway_harness import (
    METER_TAGS,
    gateway_config,
    meter_device,
    running,
)

pytestmark = pytest.mark.broker

WRITABLE_TAGS: list[dict[str, Any]] = [
    {"name": "ct_ratio", "table": "holding", "address": 100, "type": "uint16",
     "writable": True, "range": [1, 5000], "max_write_rate": 1},
    {"name": "power_limit", "table": "holding", "address": 101, "type": "float32",
     "unit": "kW", "writable": True, "range": [0, 100], "verify_write": True},
    # the same register in W: the brain writes W, the device gets kW
    {"name": "power_limit_w", "table": "holding", "address": 101, "type": "float32",
     "unit": "W", "scale": 1000, "writable": True, "range": [0, 100_000]},
]
TAGS = [
    *[{**t, "writable": True} if t["name"] == "relay_closed" else t for t in METER_TAGS],
    *WRITABLE_TAGS,
]


def http_text(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return resp.read().decode()  # type: ignore[no-any-return]


def audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def start_commanding(rec: TelemetryRecorder) -> None:
    """The gateway subscribes to cmd before it publishes its birth."""
    assert await rec.until(lambda s: len(s.births) >= 1, timeout=15)


async def test_writes_are_checked_executed_answered_and_audited(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any
) -> None:
    sim = waveform_meter
    config = gateway_config(
        tmp_path, mosquitto.port, [meter_device("meter", sim.port, tags=TAGS)],
        commands={"enabled": True},
    )
    with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec, \
            CommandClient(mosquitto.host, mosquitto.port) as brain:
        brain.send_raw(json.dumps({"v": 1, "type": "cmd", "id": "c-ret",
                                   "writes": [{"tag": "meter.power_limit", "value": 30}]}),
                       retain=True)
        async with running(config) as gw:
            await start_commanding(rec)
            assert rec.snapshot().births[-1]["commands"] is True

            # accepted: reaches the device
            brain.send("c-ok", [{"tag": "meter.ct_ratio", "value": 250}])
            answer = await brain.answer("c-ok")
            assert answer["status"] == "accepted", answer
            assert answer["results"] == [{"tag": "meter.ct_ratio", "value": 250,
                                          "status": "accepted", "reason": None,
                                          "verified": None}]
            assert sim.get_value("ct_ratio") == 250

            # scaled: 42000 W -> 42 kW in the register; a bool to a coil
            brain.send("c-scaled", [{"tag": "meter.power_limit_w", "value": 42000},
                                    {"tag": "meter.relay_closed", "value": False}])
            assert (await brain.answer("c-scaled"))["status"] == "accepted"
            assert sim.get_value("power_limit") == pytest.approx(42.0)
            assert sim.get_value("relay_closed") is False

            # read-back verification
            brain.send("c-verify", [{"tag": "meter.power_limit", "value": 12.5}])
            answer = await brain.answer("c-verify")
            assert answer["status"] == "accepted", answer
            assert answer["results"][0]["verified"] is True
            assert sim.get_value("power_limit") == pytest.approx(12.5)

            # each rejection carries its reason and writes nothing
            sim.set_value("ct_ratio", 77)
            rejections = {
                "c-too-fast": ([{"tag": "meter.ct_ratio", "value": 300}], "too fast"),
                "c-readonly": ([{"tag": "meter.voltage", "value": 1.0}], "not writable"),
                "c-range": ([{"tag": "meter.power_limit", "value": 100.5}], "outside the range"),
                "c-type": ([{"tag": "meter.power_limit", "value": "high"}], "must be a number"),
                "c-bool": ([{"tag": "meter.relay_closed", "value": 1}], "true or false"),
                "c-unknown": ([{"tag": "meter.nope", "value": 1}], "unknown tag"),
                # one bad write: nothing of the command is written
                "c-mixed": ([{"tag": "meter.power_limit", "value": 20.0},
                             {"tag": "meter.power_limit", "value": -1}], "outside the range"),
            }
            for cid, (writes, _) in rejections.items():
                brain.send(cid, writes)
            for cid, (_, reason) in rejections.items():
                answer = await brain.answer(cid)
                assert answer["status"] == "rejected", answer
                assert all(r["status"] == "rejected" for r in answer["results"])
                assert any(reason in r["reason"] for r in answer["results"]), answer
            assert sim.get_value("ct_ratio") == 77
            assert sim.get_value("power_limit") == pytest.approx(12.5)

            # malformed: answered when an id can be read, audited in any case
            brain.send_raw(b'{"v":1,"type":"cmd","id":"c-bad","writes":"all"}')
            brain.send_raw(b"not json at all")
            brain.send_raw(json.dumps({"v": 1, "type": "reboot", "id": "c-reboot"}))
            assert "'writes'" in (await brain.answer("c-bad"))["reason"]
            assert "unsupported message type" in (await brain.answer("c-reboot"))["reason"]
            # a retained command (left on the broker, delivered at every subscribe) never runs
            assert "retained" in (await brain.answer("c-ret"))["reason"]
            assert sim.get_value("power_limit") == pytest.approx(12.5)
            assert gw.gateway.commands is not None
            metrics = await asyncio.to_thread(http_text, gw.gateway.http_port or 0, "/metrics")
            assert 'chenxing_commands_total{outcome="accepted"} 3.0' in metrics
            assert "chenxing_command_writes_total 4.0" in metrics
            audit_path = tmp_path / "state" / "audit.log"
            cmd_lines = [a for a in audit_lines(audit_path) if a["event"] == "cmd"]
            assert any(a["id"] is None and "not valid JSON" in a["reason"] for a in cmd_lines)
        brain.send_raw(b"", retain=True)  # clear the retained command

    # the audit log: one line per command and per write, with topic, tag, value, outcome
    lines = audit_lines(tmp_path / "state" / "audit.log")
    by_id: dict[str | None, list[dict[str, Any]]] = {}
    for line in lines:
        by_id.setdefault(line["id"], []).append(line)
        assert line["topic"] == "chenxing/v1/plant/line-1/gw-test/cmd"
        assert isinstance(line["ts"], int)
    ok = by_id["c-ok"]
    assert [x["event"] for x in ok] == ["write", "cmd"]
    assert ok[0] | {"ts": 0, "seq": 0} == {
        "ts": 0, "seq": 0, "event": "write", "id": "c-ok", "topic": ok[0]["topic"],
        "tag": "meter.ct_ratio", "value": 250, "raw": 250.0, "outcome": "accepted",
        "reason": None, "verified": None,
    }
    assert ok[1]["outcome"] == "accepted"
    for cid in [*rejections, "c-bad", "c-reboot", "c-ret"]:
        assert by_id[cid][-1]["event"] == "cmd" and by_id[cid][-1]["outcome"] == "rejected"
        assert by_id[cid][-1]["reason"]
    assert "too fast" in by_id["c-too-fast"][0]["reason"]


async def test_duplicate_command_id_is_answered_but_not_written_twice(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any
) -> None:
    sim = waveform_meter
    config = gateway_config(
        tmp_path, mosquitto.port, [meter_device("meter", sim.port, tags=TAGS)],
        commands={"enabled": True, "audit_log": str(tmp_path / "audit" / "cmd.log")},
    )
    with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec, \
            CommandClient(mosquitto.host, mosquitto.port) as brain:
        async with running(config):
            await start_commanding(rec)
            brain.send("dup-1", [{"tag": "meter.power_limit", "value": 33.0}])
            first = await brain.answer("dup-1")
            assert first["status"] == "accepted"
            assert sim.get_value("power_limit") == pytest.approx(33.0)
            sim.set_value("power_limit", 5.0)  # the device moved on
            brain.send("dup-1", [{"tag": "meter.power_limit", "value": 33.0}])
            second = await brain.answer("dup-1", count=2)
            assert second["duplicate"] is True
            assert second["results"] == first["results"]
            assert sim.get_value("power_limit") == pytest.approx(5.0)  # not written again
    lines = audit_lines(tmp_path / "audit" / "cmd.log")
    assert [(x["event"], x["outcome"]) for x in lines] == [
        ("write", "accepted"), ("cmd", "accepted"), ("cmd", "duplicate")
    ]


async def test_commands_disabled_by_default(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any
) -> None:
    config = gateway_config(
        tmp_path, mosquitto.port, [meter_device("meter", waveform_meter.port, tags=TAGS)]
    )
    with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec, \
            CommandClient(mosquitto.host, mosquitto.port) as brain:
        async with running(config) as gw:
            await start_commanding(rec)
            assert rec.snapshot().births[-1]["commands"] is False
            assert gw.gateway.commands is None
            brain.send("c-off", [{"tag": "meter.ct_ratio", "value": 250}])
            # a later data message proves the gateway ran on while the command went unheard
            seen = len(rec.snapshot().data_messages)
            assert await rec.until(lambda s: len(s.data_messages) > seen + 3, timeout=10)
    assert brain.answers("c-off") == []
    assert waveform_meter.get_value("ct_ratio") == 100
    assert not (tmp_path / "state" / "audit.log").exists()
