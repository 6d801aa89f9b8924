"""End to end: simulated MCU node on a pty -> gateway -> real Mosquitto -> subscriber."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil.broker import MqttBroker
from hil.devices.mcu_node import McuNodeSimulator
from hil.recorder import TelemetryRecorder
from tests.integration.gateway_harness import gateway_config, running

pytestmark = pytest.mark.broker


def node_device(sim: McuNodeSimulator) -> dict[str, object]:
    return {
        "name": "spindle-node",
        "protocol": "mcu_node",
        "port": sim.serial_path,
        "node_id": sim.node_id,
        "sample_interval": "20ms",
        "samples_per_frame": 5,
        "stale_after": "500ms",
        "hello_timeout": "300ms",
        "tags": [
            {"name": "vibration", "sensor": "vibration_rms", "unit": "mm/s"},
            {"name": "temperature", "sensor": "temperature", "unit": "degC"},
            {"name": "humidity", "channel": 2, "unit": "%RH"},
        ],
    }


async def test_node_readings_reach_the_broker_and_silence_is_stale_and_down(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    async with McuNodeSimulator(node_id=5, seed=11) as sim:
        config = gateway_config(tmp_path, mosquitto.port, [node_device(sim)])
        with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec:
            async with running(config) as gw:
                assert await rec.until(
                    lambda s: len([x for x in s.samples if x.tag == "spindle-node.humidity"])
                    >= 20,
                    timeout=10,
                )
                birth = rec.snapshot().births[-1]
                catalog = {t["tag"]: t for t in birth["tags"]}
                assert catalog["spindle-node.vibration"]["unit"] == "mm/s"
                assert catalog["spindle-node.humidity"]["unit"] == "%RH"
                assert "spindle-node" in {d["name"] for d in birth["devices"]}
                # "up" is in the birth or, when the node came up after it, in its own
                # state message (only what changed is sent)
                assert await rec.until(
                    lambda s: s.device_states.get("spindle-node") == "up", timeout=5)
                # the births name the firmware the node reports: a node whose hello came
                # after the first birth (a loaded machine) brings one rebirth, by design
                assert await rec.until(lambda s: any(
                    f["device"] == "spindle-node" and f["reported"] is not None
                    for f in s.births[-1]["firmware"]), timeout=5)
                births_before = len(rec.snapshot().births)
                sim.silent = True  # the node hangs: stale, and the device reported down
                assert await rec.until(
                    lambda s: s.latest["spindle-node.temperature"].quality == "stale",
                    timeout=5,
                )
                assert await rec.until(
                    lambda s: s.device_states.get("spindle-node") == "down", timeout=5)
                sim.silent = False
                assert await rec.until(
                    lambda s: s.latest["spindle-node.temperature"].quality == "good"
                    and s.device_states.get("spindle-node") == "up",
                    timeout=5,
                )
                # a device's down and up are no rebirth
                assert len(rec.snapshot().births) == births_before
                runner = gw.gateway.runners["spindle-node"]
                assert runner.driver is not None
                errors = dict(runner.driver.errors)
                await gw.stop()
    assert errors["silent"] == 1
    snap = rec.snapshot()
    sent = {c: {v for ch, _t, v in sim.history if ch == c} for c in range(3)}
    for channel, tag in enumerate(["vibration", "temperature", "humidity"]):
        samples = [s for s in snap.samples if s.tag == f"spindle-node.{tag}"]
        good = [s for s in samples if s.quality == "good"]
        assert good and {s.value for s in good} <= sent[channel]
        assert all(s.value is None for s in samples if s.quality == "stale")
        assert not [s for s in samples if s.quality == "bad"]
        times = [s.ts_ms for s in good]
        assert times == sorted(times)
