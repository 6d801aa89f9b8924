"""End to end: simulated scale on a pty -> serial_line driver -> pipeline -> real Mosquitto."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.metrics import render
from hil.broker import MqttBroker
from hil.devices.scale import ScaleSimulator
from hil.recorder import TelemetryRecorder
from tests.integration.gateway_harness import gateway_config, running

pytestmark = pytest.mark.broker


def scale_device(sim: ScaleSimulator) -> dict[str, object]:
    return {
        "name": "scale-1",
        "protocol": "serial_line",
        "port": sim.serial_path,
        "baudrate": 9600,
        "mode": "poll",
        "poll_command": r"SI\r\n",
        "poll_interval": "50ms",
        "response_timeout": "200ms",
        "stale_after": "500ms",
        "framing": {"terminator": r"\r\n", "max_frame": 64},
        "parser": {
            "regex": r"(?P<stable>ST|US),(?P<mode>GS|NT),(?P<weight>[+-]\d+\.\d+) (?P<unit>\w+)"
        },
        "tags": [
            {"name": "weight", "type": "float64", "field": "weight", "unit": "g", "scale": 1000},
            {"name": "stable", "type": "bool", "field": "stable", "map": {"ST": True, "US": False}},
            {"name": "unit", "type": "string", "field": "unit"},
        ],
    }


async def test_scale_weights_reach_the_broker_with_garbage_bad_and_silence_stale(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    async with ScaleSimulator(mode="poll", seed=21) as sim:
        config = gateway_config(tmp_path, mosquitto.port, [scale_device(sim)])
        with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec:
            async with running(config) as gw:
                assert await rec.until(
                    lambda s: len([x for x in s.samples if x.tag == "scale-1.weight"]) >= 20,
                    timeout=10,
                )
                birth = rec.snapshot().births[-1]
                catalog = {t["tag"]: t for t in birth["tags"]}
                assert catalog["scale-1.weight"]["unit"] == "g"
                assert "scale-1" in {d["name"] for d in birth["devices"]}
                # "up" comes in the birth or, when the device came up after it, in the
                # device's own state message (only what changed is sent).
                assert await rec.until(
                    lambda s: s.device_states.get("scale-1") == "up", timeout=5
                )
                sim.line.garble_answers = 1  # one answer corrupted on the cable
                assert await rec.until(
                    lambda s: any(x.tag == "scale-1.weight" and x.quality == "bad"
                                  for x in s.samples),
                    timeout=5,
                )
                sim.silent = True
                assert await rec.until(
                    lambda s: s.latest["scale-1.weight"].quality == "stale", timeout=5
                )
                sim.silent = False
                assert await rec.until(
                    lambda s: s.latest["scale-1.weight"].quality == "good", timeout=5
                )
                runner = gw.gateway.runners["scale-1"]
                assert runner.driver is not None
                errors = dict(runner.driver.errors)
                metrics = render(gw.gateway).decode()
                await gw.stop()
    assert errors["silent"] == 1 and errors["timeout"] >= 1
    frames = dict(re.findall(
        r'chenxing_serial_frames_total\{device="scale-1",outcome="(\w+)"\} ([\d.e+]+)', metrics))
    assert float(frames["ok"]) >= 20 and float(frames["bad"]) >= 1
    assert re.search(r'chenxing_device_errors_total\{device="scale-1",kind="silent"\} 1', metrics)
    assert sum(v for k, v in errors.items() if k.startswith("frame_")) >= 1
    snap = rec.snapshot()
    sent_grams = {round(r.weight * 1000, 6) for r in sim.history}
    weights = [s for s in snap.samples if s.tag == "scale-1.weight"]
    good = [s for s in weights if s.quality == "good"]
    assert len(good) >= 20
    assert {round(s.value, 6) for s in good} <= sent_grams  # scaled kg -> g, nothing invented
    assert all(s.value is None for s in weights if s.quality != "good")
    units = {s.value for s in snap.samples if s.tag == "scale-1.unit" and s.quality == "good"}
    assert units == {"kg"}
