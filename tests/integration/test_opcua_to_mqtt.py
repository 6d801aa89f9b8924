"""End to end: simulated OPC UA PLC -> gateway (subscription) -> real Mosquitto -> recorder."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil.broker import MqttBroker
from hil.devices.opcua_plc import OpcUaPlcSimulator
from hil.process.injection_moulding import InjectionMouldingModel
from hil.recorder import TelemetryRecorder
from tests.integration.gateway_harness import gateway_config, running
from tests.waiting import until

pytestmark = pytest.mark.broker


def plc_device(sim: OpcUaPlcSimulator) -> dict:
    return {
        "name": "press-7",
        "protocol": "opcua",
        "endpoint": sim.endpoint,
        "publishing_interval": "100ms",
        "timeout": "1s",
        "watchdog_interval": "500ms",
        "tags": [
            {"name": "melt_temp", "node": sim.node_id("Machine.MeltTemp"), "type": "float64",
             "unit": "degC", "sampling_interval": "50ms"},
            {"name": "pressure", "node": sim.node_id("Machine.InjectionPressure"),
             "type": "float64", "unit": "bar", "scale": 0.1},
            {"name": "parts", "node": sim.node_id("Machine.PartCount"), "type": "uint32"},
            {"name": "state", "node": sim.node_id("Machine.State"), "type": "string"},
            {"name": "hold_time", "node": sim.node_id("Machine.HoldTime"), "type": "float64",
             "unit": "s", "writable": True, "range": [0.5, 10]},
        ],
    }


async def test_plc_values_reach_the_broker_and_a_restart_is_marked_stale(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    model = InjectionMouldingModel(seed=7, time_scale=5.0)
    async with OpcUaPlcSimulator(model, update_interval=0.05) as sim:
        config = gateway_config(tmp_path, mosquitto.port, [plc_device(sim)])
        with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec:
            async with running(config) as gw:
                assert await rec.until(
                    lambda s: len([x for x in s.samples if x.tag == "press-7.melt_temp"]) >= 10
                    and "press-7.state" in s.latest,
                    timeout=15,
                )
                birth = rec.snapshot().births[-1]
                catalog = {t["tag"]: t for t in birth["tags"]}
                assert catalog["press-7.melt_temp"]["unit"] == "degC"
                assert catalog["press-7.state"]["type"] == "string"
                # a write from the gateway side reaches the PLC's model
                runner = gw.gateway.runners["press-7"]
                assert runner.driver is not None
                tag_id = gw.gateway.catalog.id_of("press-7.hold_time")
                await runner.driver.write(tag_id, 4.0)
                assert sim.model.hold_time == 4.0
                assert await rec.until(
                    lambda s: s.latest["press-7.hold_time"].value == 4.0, timeout=10
                )
                # the PLC restarts: stale in between, then good values again
                await sim.stop()
                assert await rec.until(
                    lambda s: s.latest["press-7.melt_temp"].quality == "stale", timeout=10
                )
                failed = runner.stats.connect_failures
                await until(lambda: runner.stats.connect_failures > failed,
                            "a reconnect refused while the PLC is away")
                await sim.start()
                assert await rec.until(
                    lambda s: s.latest["press-7.melt_temp"].quality == "good", timeout=15
                )
                assert runner.stats.crashes == 0 and runner.stats.connects >= 2
                await gw.stop()
    snap = rec.snapshot()
    melt = [s for s in snap.samples if s.tag == "press-7.melt_temp"]
    good = [s for s in melt if s.quality == "good"]
    assert all(200.0 < s.value < 260.0 for s in good)
    stale = [s for s in melt if s.quality == "stale"]
    assert stale and all(s.value is None for s in stale)
    assert not [s for s in melt if s.quality == "bad"]
    pressure = [s.value for s in snap.samples if s.tag == "press-7.pressure" and s.value]
    assert pressure and max(pressure) < 200  # bar * 0.1 (peak ~1200 bar)
    states = {s.value for s in snap.samples if s.tag == "press-7.state"}
    assert states <= {"CLOSING", "INJECTING", "HOLDING", "COOLING", "OPENING", "EJECTING", None}
    seqs = [m["seq"] for m in snap.data_messages]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
