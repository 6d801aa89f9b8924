"""A MELSEC CPU on the MC protocol (SLMP) end to end: the simulated CPU (hil/devices/mc_plc.py)
over a real socket, the gateway, a real Mosquitto, both contracts; reads exact, a write from
the brain reaching the CPU and its machine (JSON cmd, Sparkplug DCMD) through the command
path: allow-list, range, read-back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.northbound.sparkplug import sparkplug_b_pb2 as pb
from hil.broker import MqttBroker
from hil.devices.mc_plc import McPlcSimulator, mc_tag_configs
from hil.process.injection_moulding import InjectionMouldingModel
from hil.recorder import TelemetryRecorder
from tests.integration.command_client import CommandClient
from tests.integration.gateway_harness import gateway_config, running
from tests.integration.sparkplug_host import SparkplugHost

pytestmark = pytest.mark.broker

ALL_ONES = 2**64 - 1
READ = ("melt_temp", "parts", "phase", "state", "recipe", "recipe_no", "cycle_start",
        "always_on", "zone1_temp")


def mc_device(sim: McPlcSimulator, transport: str, frame: str) -> dict[str, Any]:
    series = sim.series
    setpoints = [{**t, "writable": True, "verify_write": True,
                  "range": [0.1, 30] if t["name"] == "hold_time" else [100, 350]}
                 for t in mc_tag_configs(series, "hold_time", "melt_setpoint")]
    return {"name": "press", "protocol": "mc", "host": "127.0.0.1", "port": sim.port,
            "transport": transport, "frame": frame, "plc_series": series,
            "poll_interval": "100ms", "timeout": "500ms",
            "tags": [*mc_tag_configs(series, *READ), *setpoints,
                     {"name": "total", "type": "uint64", "address": "D400"},
                     {"name": "lamps", "type": "uint16", "address": "Y0"}]}


def expected(sim: McPlcSimulator) -> dict[str, Any]:
    return {"press.recipe": "ABS-BLACK-01", "press.recipe_no": 17, "press.always_on": True,
            "press.total": ALL_ONES, "press.lamps": 0b1000_0000_0000_0001}


async def plc(series: str) -> McPlcSimulator:
    sim = McPlcSimulator(InjectionMouldingModel(seed=7), series=series)  # type: ignore[arg-type]
    await sim.start()
    sim.load({"D": {400 + i: 0xFFFF for i in range(4)}, "Y": {0: 1, 15: 1}})
    return sim


async def test_json_contract_reads_exactly_and_a_cmd_writes_the_hold_time(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    sim = await plc("iq-f")
    try:
        config = gateway_config(tmp_path, mosquitto.port, [mc_device(sim, "tcp", "3e")],
                                commands={"enabled": True})
        want = expected(sim)
        with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec, \
                CommandClient(mosquitto.host, mosquitto.port) as brain:  # fmt: skip
            async with running(config):
                assert await rec.until(lambda s: want.keys() <= s.latest.keys()
                                       and "press.melt_temp" in s.latest, timeout=20)
                brain.send("hold", [{"tag": "press.hold_time", "value": 4.5}])
                answer = await brain.answer("hold")  # accepted after the read-back showed it
                assert answer["status"] == "accepted", answer
                brain.send("too-long", [{"tag": "press.hold_time", "value": 99}])
                refused = await brain.answer("too-long")
                assert refused["status"] == "rejected", refused
                assert "99" in refused["results"][0]["reason"]
                brain.send("read-only", [{"tag": "press.melt_temp", "value": 200}])
                refused = await brain.answer("read-only")
                assert refused["status"] == "rejected", refused
                assert await rec.until(lambda s: s.latest["press.hold_time"].value == 4.5,
                                       timeout=10)
        latest = rec.snapshot().latest
        assert {t: latest[t].value for t in want} == want
        assert type(latest["press.total"].value) is int  # exact, never through float64
        assert all(latest[f"press.{t}"].quality == "good" for t in READ)
        assert 200 < latest["press.melt_temp"].value < 240
        assert 180 < latest["press.zone1_temp"].value < 230  # an int16 x10, scaled by 0.1
        assert sim.model.hold_time == 4.5
        birth = rec.snapshot().births[-1]
        types = {t["tag"]: t["type"] for t in birth["tags"]}
        assert types["press.total"] == "uint64" and types["press.state"] == "string"
    finally:
        await sim.stop()


async def test_sparkplug_reads_over_udp_4e_and_a_dcmd_writes_the_melt_setpoint(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    sim = await plc("iq-r")
    try:
        config = gateway_config(tmp_path, mosquitto.port, [mc_device(sim, "udp", "4e")],
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
        want = expected(sim)
        assert {t: samples[t] for t in want} == want
        assert samples["press.state"] in ("CLOSING", "INJECTING", "HOLDING", "COOLING",
                                          "OPENING", "EJECTING")
        assert sim.model.melt_setpoint == 210.0
    finally:
        await sim.stop()
