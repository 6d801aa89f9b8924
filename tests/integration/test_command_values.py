"""Command values are checked as sent, never wrapped; bad numbers are rejected and audited;
retained commands never run, and clearing one is no command (issue "Exact values and safe
commands", items 3-5). Real parts: the generic Modbus simulator, the gateway, Mosquitto,
a Sparkplug host and a JSON brain client publishing with paho."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gateway.northbound.sparkplug import sparkplug_b_pb2 as pb
from hil.broker import MqttBroker
from hil.devices.modbus_generic import ModbusGenericSimulator
from hil.devices.modbus_map import ModbusMap
from hil.recorder import TelemetryRecorder
from tests.integration.command_client import CommandClient
from tests.integration.gateway_harness import gateway_config, running
from tests.integration.sparkplug_host import SparkplugHost
from tests.waiting import until

pytestmark = pytest.mark.broker

REGISTERS = [
    {"name": "trim", "table": "holding", "address": 0, "type": "int16", "value": 7},
    {"name": "offset", "table": "holding", "address": 1, "type": "int16", "value": 7},
    {"name": "limit", "table": "holding", "address": 2, "type": "float32", "value": 1.5},
]
TAGS = [
    {"name": "trim", "table": "holding", "address": 0, "type": "int16", "writable": True,
     "range": [-32768, 32767], "max_write_rate": 600},
    {"name": "offset", "table": "holding", "address": 1, "type": "int16", "writable": True,
     "range": [-100, 100], "max_write_rate": 600},
    {"name": "limit", "table": "holding", "address": 2, "type": "float32", "writable": True,
     "range": [0, 1000], "max_write_rate": 600},
]  # fmt: skip


def device(port: int) -> dict[str, Any]:
    return {"name": "press", "protocol": "modbus_tcp", "host": "127.0.0.1", "port": port,
            "poll_interval": "100ms", "tags": TAGS}  # fmt: skip


def audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def strict_json(text: str) -> Any:
    """JSON as the specification has it: Infinity and NaN are not JSON."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def last_result(host: SparkplugHost) -> dict[str, Any] | None:
    alias = host.of("NBIRTH")[0].metric("Node Control/Last Command Result")["alias"]
    for m in reversed(host.of("NDATA")):
        for x in m.body["metrics"]:
            if x["alias"] == alias:
                return strict_json(x["value"])  # type: ignore[no-any-return]
    return None


async def test_a_dcmd_value_is_checked_as_sent_and_never_wrapped(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    """An Int16 of 40000 used to be written as -25536 (0x9C40), and -42000 refused with a
    reason quoting 23536."""
    async with ModbusGenericSimulator(ModbusMap.from_dict({"registers": REGISTERS})) as sim:
        config = gateway_config(tmp_path, mosquitto.port, [device(sim.port)],
                                commands={"enabled": True}, format="sparkplug")  # fmt: skip
        with SparkplugHost(mosquitto.port) as host:
            async with running(config):
                assert await host.until(lambda ms: len(host.of("DBIRTH", "press")) >= 1)
                dbirth = host.of("DBIRTH", "press")[0]
                alias = {n: dbirth.metric(n)["alias"] for n in ("trim", "offset", "limit")}
                results: list[dict[str, Any]] = []

                async def dcmd(name: str, **value: Any) -> dict[str, Any]:
                    before = len(host.of("NDATA"))
                    host.command("DCMD", [pb.Payload.Metric(alias=alias[name], **value)],
                                 device="press")  # fmt: skip
                    assert await host.until(lambda ms: len(host.of("NDATA")) > before
                                            and last_result(host) not in results)  # fmt: skip
                    result = last_result(host)
                    assert result is not None
                    results.append(result)
                    return result

                wrapped = await dcmd("trim", datatype=pb.Int16, int_value=40000)
                assert wrapped["status"] == "rejected", wrapped
                assert "40000" in wrapped["reason"] and "Int16" in wrapped["reason"]
                negative = await dcmd("offset", datatype=pb.Int16,
                                      int_value=-42000 & 0xFFFFFFFF)  # fmt: skip
                assert negative["status"] == "rejected"
                assert "-42000" in negative["reason"], negative
                assert "23536" not in json.dumps(negative)
                within = await dcmd("offset", datatype=pb.Int32,
                                    int_value=-101 & 0xFFFFFFFF)  # fmt: skip
                assert within["status"] == "rejected"
                assert "-101 is outside the range" in within["results"][0]["reason"]
                infinite = await dcmd("limit", datatype=pb.Double, double_value=float("inf"))
                assert infinite["status"] == "rejected"  # and the answer is valid JSON
                assert "not a finite number" in infinite["results"][0]["reason"]
                assert sim.value_of("trim") == 7 and sim.value_of("offset") == 7
                ok = await dcmd("offset", datatype=pb.Int16, int_value=-2 & 0xFFFFFFFF)
                assert ok["status"] == "accepted", ok
                assert sim.value_of("offset") == -2


async def test_non_finite_and_huge_json_numbers_are_rejected_and_audited(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    """1e400 and 10**400 used to be answered 'failed: internal error' with a traceback in the
    log and no audit line for the write."""
    async with ModbusGenericSimulator(ModbusMap.from_dict({"registers": REGISTERS})) as sim:
        config = gateway_config(tmp_path, mosquitto.port, [device(sim.port)],
                                commands={"enabled": True})  # fmt: skip
        with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec, \
                CommandClient(mosquitto.host, mosquitto.port) as brain:  # fmt: skip
            async with running(config):
                assert await rec.until(lambda s: len(s.births) >= 1, timeout=15)
                huge = "1" + "0" * 400
                brain.send_raw('{"v":1,"type":"cmd","id":"inf","writes":'
                               '[{"tag":"press.limit","value":1e400}]}')
                brain.send_raw('{"v":1,"type":"cmd","id":"huge","writes":'
                               f'[{{"tag":"press.trim","value":{huge}}}]}}')
                brain.send_raw('{"v":1,"type":"cmd","id":"negative-inf","writes":'
                               '[{"tag":"press.limit","value":-1e999}]}')
                inf = await brain.answer("inf")
                big = await brain.answer("huge")
                neg = await brain.answer("negative-inf")
        for answer, quoted in ((inf, "1e400"), (big, "(401 digits)"), (neg, "-1e999")):
            assert answer["status"] == "rejected", answer
            assert quoted in answer["results"][0]["reason"], answer
        assert inf["results"][0]["value"] == "1e400"
        assert [json.loads(raw) for raw in brain.raw_results]  # every answer is JSON
        lines = audit_lines(tmp_path / "state" / "audit.log")
        writes = {x["id"]: x for x in lines if x["event"] == "write"}
        assert writes["inf"]["outcome"] == "rejected" and writes["inf"]["value"] == "1e400"
        assert writes["huge"]["outcome"] == "rejected" and writes["huge"]["value"] == int(huge)
        assert "not a finite number" in writes["negative-inf"]["reason"]
        assert sim.value_of("trim") == 7


async def test_retained_commands_never_run_and_clearing_one_is_no_command(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    """A retained cmd published while the gateway is connected was executed (MQTT 3.1.1
    brokers forward it with retain=0), and the empty payload clearing it was audited as
    'not valid JSON'."""
    async with ModbusGenericSimulator(ModbusMap.from_dict({"registers": REGISTERS})) as sim:
        config = gateway_config(tmp_path, mosquitto.port, [device(sim.port)],
                                commands={"enabled": True})  # fmt: skip
        assert config.northbound.mqtt.protocol == "5"  # the default with commands
        with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec, \
                CommandClient(mosquitto.host, mosquitto.port) as brain:  # fmt: skip
            async with running(config) as gw:
                assert await rec.until(lambda s: len(s.births) >= 1, timeout=15)
                brain.send_raw(json.dumps({"v": 1, "type": "cmd", "id": "live-retained",
                               "writes": [{"tag": "press.trim", "value": 11}]}), retain=True)
                answer = await brain.answer("live-retained")
                assert answer["status"] == "rejected" and "retained" in answer["reason"]
                brain.send_raw(b"", retain=True)  # clear it: forwarded as an empty message
                brain.send("live", [{"tag": "press.trim", "value": 12}])
                assert (await brain.answer("live"))["status"] == "accepted"
                commands = gw.gateway.commands
                assert commands is not None
                await until(lambda: commands.counters.empty_ignored == 1, timeout=5)
                port = gw.gateway.http_port
                metrics = await asyncio.to_thread(_http_text, port or 0, "/metrics")
                assert 'chenxing_commands_total{outcome="ignored_empty"} 1.0' in metrics
        assert sim.value_of("trim") == 12
        lines = audit_lines(tmp_path / "state" / "audit.log")
        assert not [x for x in lines if "not valid JSON" in str(x.get("reason"))]
        assert [x["id"] for x in lines if x["event"] == "cmd"] == ["live-retained", "live"]
        assert len(brain.results) == 2  # the empty payload was not answered


async def test_a_retained_dcmd_published_while_connected_is_never_executed(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    async with ModbusGenericSimulator(ModbusMap.from_dict({"registers": REGISTERS})) as sim:
        config = gateway_config(tmp_path, mosquitto.port, [device(sim.port)],
                                commands={"enabled": True}, format="sparkplug")  # fmt: skip
        with SparkplugHost(mosquitto.port) as host:
            async with running(config):
                assert await host.until(lambda ms: len(host.of("DBIRTH", "press")) >= 1)
                alias = host.of("DBIRTH", "press")[0].metric("trim")["alias"]
                host.command("DCMD", [pb.Payload.Metric(alias=alias, datatype=pb.Int16,
                                                        int_value=5)],
                             device="press", retain=True)  # fmt: skip
                assert await host.until(lambda ms: last_result(host) is not None)
                result = last_result(host)
                assert result is not None and result["status"] == "rejected"
                assert "retained" in result["reason"]
                host.publish_raw("DCMD", b"", device="press", retain=True)  # cleared
                host.command("DCMD", [pb.Payload.Metric(alias=alias, datatype=pb.Int16,
                                                        int_value=6)], device="press")
                assert await host.until(
                    lambda ms: (last_result(host) or {}).get("status") == "accepted")
        assert sim.value_of("trim") == 6


def _http_text(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return resp.read().decode()  # type: ignore[no-any-return]
