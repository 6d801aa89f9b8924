"""An Omron PLC on FINS end to end: the simulated CPU (hil/devices/fins_plc.py) over a real
socket, the gateway, a real Mosquitto, both contracts; reads exact, a write from the brain
reaching the PLC and its machine (JSON cmd over FINS/TCP, Sparkplug DCMD over FINS/UDP)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from gateway.northbound.sparkplug import sparkplug_b_pb2 as pb
from hil.broker import MqttBroker
from hil.devices.fins_plc import PLC_TAGS, FinsPlcSimulator
from hil.process.injection_moulding import InjectionMouldingModel
from hil.recorder import TelemetryRecorder
from tests.integration.command_client import CommandClient
from tests.integration.gateway_harness import gateway_config, running
from tests.integration.sparkplug_host import SparkplugHost

pytestmark = pytest.mark.broker

ALL_ONES = 2**64 - 1
SETPOINT_RANGES = {"hold_time": [0.1, 30], "melt_setpoint": [100, 350]}
EXTRA_TAGS: list[dict[str, Any]] = [
    {"name": "total", "address": "E2_100", "type": "uint64"},
    {"name": "recipe", "address": "D500", "type": "string", "length": 6},
    {"name": "lamp", "address": "CIO100.15", "type": "bool", "writable": True},
    {"name": "alarm_word", "address": "W20", "type": "uint16"},
    {"name": "offset", "address": "H30", "type": "int32"},
]
EXPECTED = {"press.total": ALL_ONES, "press.recipe": "ABS-BLACK-01", "press.alarm_word": 0x8001,
            "press.offset": -123456, "press.running": True}


def fins_device(sim: FinsPlcSimulator, transport: str) -> dict[str, Any]:
    tags = [{**t, "writable": True, "range": SETPOINT_RANGES[str(t["name"])]}
            if t["name"] in SETPOINT_RANGES else t for t in PLC_TAGS]
    return {"name": "press", "protocol": "fins", "host": "127.0.0.1", "port": sim.port,
            "transport": transport, "poll_interval": "100ms", "timeout": "500ms",
            "tags": [*tags, *EXTRA_TAGS]}


async def plc() -> FinsPlcSimulator:
    sim = FinsPlcSimulator(InjectionMouldingModel(seed=7))
    await sim.start()
    sim.set_words("E2_100", [0xFFFF] * 4)
    sim.set_words("D500", list(struct.unpack(">6H", b"ABS-BLACK-01")))
    sim.set_words("W20", [0x8001])
    sim.set_words("H30", [(-123456) & 0xFFFF, ((-123456) >> 16) & 0xFFFF])
    return sim


async def test_json_contract_over_tcp_reads_exactly_and_a_cmd_writes_the_hold_time(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    sim = await plc()
    try:
        config = gateway_config(tmp_path, mosquitto.port, [fins_device(sim, "tcp")],
                                commands={"enabled": True})
        with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec, \
                CommandClient(mosquitto.host, mosquitto.port) as brain:  # fmt: skip
            async with running(config):
                assert await rec.until(lambda s: EXPECTED.keys() <= s.latest.keys()
                                       and "press.melt_temp" in s.latest, timeout=20)
                brain.send("hold", [{"tag": "press.hold_time", "value": 4.5},
                                    {"tag": "press.lamp", "value": True}])
                answer = await brain.answer("hold")
                assert answer["status"] == "accepted", answer
                assert await rec.until(lambda s: s.latest["press.hold_time"].value == 4.5
                                       and s.latest["press.lamp"].value is True, timeout=10)
        latest = rec.snapshot().latest
        assert {t: latest[t].value for t in EXPECTED} == EXPECTED
        assert type(latest["press.total"].value) is int  # exact, never through float64
        assert all(latest[f"press.{t['name']}"].quality == "good" for t in PLC_TAGS)
        assert 200 < latest["press.melt_temp"].value < 240
        assert latest["press.state"].value in ("CLOSING", "INJECTING", "HOLDING", "COOLING",
                                               "OPENING", "EJECTING")
        assert sim.model is not None and sim.model.hold_time == 4.5
        assert sim.bit("CIO100.15") and sim.clients == {}  # the gateway closed its connection
        birth = rec.snapshot().births[-1]
        types = {t["tag"]: t["type"] for t in birth["tags"]}
        assert types["press.total"] == "uint64" and types["press.recipe"] == "string"
    finally:
        await sim.stop()


async def test_sparkplug_over_udp_reads_and_a_dcmd_writes_the_melt_setpoint(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    sim = await plc()
    try:
        config = gateway_config(tmp_path, mosquitto.port, [fins_device(sim, "udp")],
                                commands={"enabled": True}, format="sparkplug")
        with SparkplugHost(mosquitto.port) as host:
            async with running(config):
                assert await host.until(lambda ms: len(host.of("DDATA", "press")) >= 2)
                dbirth = host.of("DBIRTH", "press")[0]
                alias = dbirth.metric("melt_setpoint")["alias"]
                host.command("DCMD", [pb.Payload.Metric(alias=alias, datatype=pb.Float,
                                                        float_value=210.0)], device="press")
                assert await host.until(lambda ms: any(
                    s["tag"] == "press.melt_setpoint" and s["value"] == 210.0
                    for s in host.samples()))
            samples = {s["tag"]: s["value"] for s in host.samples()}
        assert {t: samples[t] for t in EXPECTED} == EXPECTED
        assert sim.model is not None and sim.model.melt_setpoint == 210.0
    finally:
        await sim.stop()
