"""DL/T 645 end to end: meters on a pty line (two devices sharing the port) and behind a
TCP serial device server, through the gateway to a real Mosquitto in both contracts, and
a command writing a meter parameter through the allow-list, range and audit path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hil.broker import MqttBroker
from hil.devices.dlt645_meter import Dlt645Line
from hil.recorder import TelemetryRecorder
from tests.drivers.dlt645.dlt645_sim import A1, A2, A3, fixed_meter, machine_state_tag
from tests.integration.command_client import CommandClient
from tests.integration.gateway_harness import gateway_config, running

TAGS = [
    {"name": "voltage", "di": "voltage.a"},
    {"name": "current", "di": "current.a"},
    {"name": "active_power", "di": "power.active.total"},
    {"name": "energy", "di": "energy.import.total"},
    {"name": "temperature", "di": "temperature"},
    {"name": "peak_at", "di": "demand.import.total.time"},
    machine_state_tag(),
]
EXPECTED = {"voltage": 230.4, "current": 10.0, "active_power": 12.3456, "energy": 1234.56,
            "temperature": -5.5, "machine_state": 2}


def serial_device(name: str, line: Dlt645Line, address: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "protocol": "dlt645", "port": line.serial_path, "parity": "N",
            "meter_address": address, "poll_interval": "100ms", "timeout": "300ms",
            "tags": TAGS, **extra}


@pytest.mark.parametrize("fmt", ["json", "sparkplug"])
async def test_meters_reach_mqtt_exactly_in_both_contracts(fmt: str, tmp_path: Path,
                                                          mosquitto: MqttBroker) -> None:
    async with Dlt645Line([fixed_meter(A1), fixed_meter(A2, voltage_v=220.0)]) as rs485, \
            Dlt645Line([fixed_meter(A3, energy_import_kwh=99999.99)],
                       transport="tcp") as server:  # fmt: skip
        devices = [
            serial_device("m1", rs485, A1),
            serial_device("m2", rs485, A2),
            {"name": "m3", "protocol": "dlt645_tcp", "host": "127.0.0.1", "port": server.port,
             "meter_address": "auto", "poll_interval": "100ms", "timeout": "300ms",
             "tags": TAGS},
        ]
        config = gateway_config(tmp_path, mosquitto.port, devices, format=fmt)
        expected = {f"m1.{k}": v for k, v in EXPECTED.items()}
        expected |= {f"m2.{k}": v for k, v in EXPECTED.items()} | {"m2.voltage": 220.0}
        expected |= {f"m3.{k}": v for k, v in EXPECTED.items()} | {"m3.energy": 99999.99}
        root = "spBv1.0" if fmt == "sparkplug" else "chenxing/v1"
        with TelemetryRecorder(mosquitto.host, mosquitto.port, topic_root=root) as rec:
            async with running(config):
                assert await rec.until(lambda s: expected.keys() <= s.latest.keys(), timeout=20)
        latest = rec.snapshot().latest
        assert {tag: latest[tag].value for tag in expected} == expected
        assert all(latest[t].quality == "good" for t in expected)
        assert latest["m1.peak_at"].value.startswith("20")  # a text tag
        if fmt == "json":
            birth = rec.snapshot().births[-1]
            units = {t["tag"]: t.get("unit") for t in birth["tags"]}
            assert units["m1.energy"] == "kWh" and units["m1.voltage"] == "V"  # from the table


async def test_a_command_writes_the_demand_period(tmp_path: Path, mosquitto: MqttBroker,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CX_METER_PASSWORD", "02000000")
    meter = fixed_meter(A1)
    async with Dlt645Line([meter]) as rs485:
        period = {"name": "demand_period", "di": "param.demand_period", "type": "uint16",
                  "writable": True, "range": [1, 60]}
        device = serial_device("m1", rs485, A1, tags=[TAGS[0], period],
                               password={"env": "CX_METER_PASSWORD"})
        config = gateway_config(tmp_path, mosquitto.port, [device], commands={"enabled": True})
        with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec, \
                CommandClient(mosquitto.host, mosquitto.port) as brain:  # fmt: skip
            async with running(config):
                assert await rec.until(lambda s: "m1.demand_period" in s.latest, timeout=15)
                brain.send("w1", [{"tag": "m1.demand_period", "value": 30}])
                assert (await brain.answer("w1"))["status"] == "accepted"
                assert meter.params["demand_period"] == 30
                brain.send("w2", [{"tag": "m1.demand_period", "value": 90}])
                answer = await brain.answer("w2")
                assert answer["status"] == "rejected" and "90" in answer["results"][0]["reason"]
                assert await rec.until(
                    lambda s: s.latest["m1.demand_period"].value == 30, timeout=10)
        assert meter.params["demand_period"] == 30
