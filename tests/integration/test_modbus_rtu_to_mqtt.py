"""End to end over RTU: the meter on a pty line -> gateway (poll groups, a shared bus with an
absent device, garbled frames) -> real Mosquitto -> subscriber."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hil.broker import MqttBroker
from hil.devices.modbus_meter import ModbusMeterSimulator
from hil.process.energy_meter import WaveformMeter, WaveformParams, waveform_reading
from hil.recorder import TelemetryRecorder
from tests.integration.gateway_harness import gateway_config, running

pytestmark = pytest.mark.broker


def rtu_device(name: str, path: str, unit_id: int, **kw: object) -> dict[str, object]:
    return {
        "name": name,
        "protocol": "modbus_rtu",
        "port": path,
        "baudrate": 19200,
        "unit_id": unit_id,
        "timeout": "150ms",
        "poll_interval": "1s",
        "poll_groups": [{"name": "fast", "interval": "100ms"}],
        "tags": [
            {
                "name": "voltage",
                "table": "input",
                "address": 0,
                "type": "float32",
                "unit": "V",
                "poll_group": "fast",
            },
            {
                "name": "energy_import",
                "table": "input",
                "address": 10,
                "type": "uint32",
                "scale": 0.01,
                "unit": "kWh",
            },
            {
                "name": "state_running",
                "table": "input",
                "address": 13,
                "type": "bool",
                "bit": 1,
                "poll_group": "fast",
            },
        ],
        **kw,
    }


async def test_rtu_meter_with_poll_groups_next_to_an_absent_device(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    params = WaveformParams(t0=time.time())
    async with ModbusMeterSimulator(WaveformMeter(params), rtu=True) as sim:
        devices = [
            rtu_device("meter", sim.serial_path, 1),
            rtu_device("ghost", sim.serial_path, 9),  # nothing answers unit 9 on this line
        ]
        config = gateway_config(tmp_path, mosquitto.port, devices)
        with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec:
            async with running(config) as gw:
                assert await rec.until(
                    lambda s: len([x for x in s.samples if x.tag == "meter.voltage"]) >= 15,
                    timeout=15,
                )
                sim.garble_answers(3)
                count = len([x for x in rec.snapshot().samples if x.tag == "meter.voltage"])
                assert await rec.until(
                    lambda s: len([x for x in s.samples if x.tag == "meter.voltage"]) >= count + 8,
                    timeout=10,
                )
                errors = gw.gateway.runners["meter"].driver.errors  # type: ignore[union-attr]
                await gw.stop()
    snap = rec.snapshot()
    volts = [s for s in snap.samples if s.tag == "meter.voltage"]
    energy = [s for s in snap.samples if s.tag == "meter.energy_import"]
    good = [s for s in volts if s.quality == "good"]
    for s in good:
        expected = waveform_reading(s.ts_ms / 1000, params).voltage_v
        assert s.value == pytest.approx(expected, abs=0.15)
    assert len(good) >= len(volts) - 4  # at most the garbled answers (and the death) are bad
    assert len(volts) >= 3 * len(energy)  # 100 ms group against the 1 s default group
    assert errors["garbled"] >= 1
    ghost = [s for s in snap.samples if s.tag.startswith("ghost.")]
    assert ghost and all(s.quality != "good" for s in ghost)
    assert {s.value for s in snap.samples if s.tag == "meter.state_running"} <= {True, False}
