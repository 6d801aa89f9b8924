"""Siemens S7 end to end: the HIL S7 simulator over real ISO-on-TCP on loopback, the
gateway, a real Mosquitto, and a subscriber decoding each contract (JSON and Sparkplug B).

The PLC serves the golden memory images (tests/drivers/s7/cases: bytes written with
struct and datetime); every tag arrives with its exact value (64-bit integers as ints,
strings, DATE_AND_TIME as ISO text), the undecodable ones BAD, and the brain's writes
reach the PLC's memory through the command path (allow-list, range, audit).
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

import pytest

from gateway.northbound.sparkplug import sparkplug_b_pb2 as pb
from hil.broker import MqttBroker
from hil.devices.s7_plc import S7PlcSimulator
from hil.recorder import TelemetryRecorder
from tests.drivers.s7.s7_golden import load_value_case, same_value
from tests.integration.command_client import CommandClient
from tests.integration.gateway_harness import gateway_config, running
from tests.integration.sparkplug_host import SparkplugHost
from tests.integration.test_command_values import last_result

pytestmark = pytest.mark.broker

CASES = ("db_numbers", "strings", "date_and_time", "bad_values")  # DB1..DB4, no overlap
WRITABLE = [
    {"name": "setpoint", "address": "DB5.DBD0:REAL", "writable": True, "range": [100, 350]},
    {"name": "batch", "address": "DB5.DB4:LINT", "writable": True,
     "range": [-9223372036854775808, 9223372036854775807]},
    {"name": "recipe", "address": "DB5.DB12:STRING[8]", "writable": True},
]


def plc_and_tags() -> tuple[dict[str, bytes], list[dict[str, Any]], dict[str, Any]]:
    memory: dict[str, bytes] = {"DB5": bytes(4) + bytes(8) + bytes([8, 0]) + bytes(8)}
    tags: list[dict[str, Any]] = []
    expected: dict[str, Any] = {}
    for name in CASES:
        case = load_value_case(name)
        memory.update(case.memory)
        for tag in case.device.tags:
            tags.append(tag.model_dump(include={"name", "address", "encoding"}))
            expected[f"plc.{tag.name}"] = case.expected[tag.name]
    return memory, [*tags, *WRITABLE], expected


def device(port: int, tags: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "plc", "protocol": "s7", "host": "127.0.0.1", "port": port,
            "poll_interval": "100ms", "timeout": "1s", "tags": tags}


def check_values(latest: dict[str, Any], expected: dict[str, Any]) -> None:
    for tag, want in expected.items():
        sample = latest[tag]
        if want.bad is not None:
            assert sample.quality == "bad", tag
            continue
        if isinstance(want.value, float) and not math.isfinite(want.value):
            continue  # NaN and infinities: the pipeline's quality rule, tested elsewhere
        assert sample.quality == "good", (tag, sample)
        if want.value == 0 and isinstance(want.value, float):
            # the pipeline adds the offset: -0.0 + 0.0 is 0.0 (the sign of zero is lost there,
            # for every driver); the driver's -0.0 is checked in tests/drivers/s7
            assert sample.value == 0, tag
            continue
        assert same_value(sample.value, want.value), (tag, sample.value, want.value)


async def test_s7_values_and_writes_in_the_json_contract(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    memory, tags, expected = plc_and_tags()
    async with S7PlcSimulator(port=0, use_model=False, memory=memory) as plc:
        config = gateway_config(tmp_path, mosquitto.port, [device(plc.port, tags)],
                                commands={"enabled": True})
        with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec, \
                CommandClient(mosquitto.host, mosquitto.port) as brain:  # fmt: skip
            async with running(config):
                assert await rec.until(lambda s: expected.keys() <= s.latest.keys(), timeout=20)
                check_values(rec.snapshot().latest, expected)
                types = {t["tag"]: t["type"] for t in rec.snapshot().births[-1]["tags"]}
                assert types["plc.lword_max"] == "uint64" and types["plc.first"] == "string"
                brain.send("w1", [{"tag": "plc.setpoint", "value": 212.5},
                                  {"tag": "plc.batch", "value": 2**63 - 1},
                                  {"tag": "plc.recipe", "value": "PA66-GF"}])
                result = await brain.answer("w1")
                assert result["status"] == "accepted", result
                assert plc.read_bytes("DB", 0, 4, db=5) == struct.pack(">f", 212.5)
                assert plc.read_bytes("DB", 4, 8, db=5) == struct.pack(">q", 2**63 - 1)
                assert plc.read_bytes("DB", 12, 9, db=5) == b"\x08\x07PA66-GF"
                assert await rec.until(
                    lambda s: s.latest["plc.batch"].value == 2**63 - 1
                    and s.latest["plc.recipe"].value == "PA66-GF", timeout=10)
                brain.send("w2", [{"tag": "plc.setpoint", "value": 400}])
                refused = await brain.answer("w2")
                assert refused["status"] == "rejected" and "400" in refused["results"][0]["reason"]
        assert plc.read_bytes("DB", 0, 4, db=5) == struct.pack(">f", 212.5)


async def test_s7_values_and_a_dcmd_write_in_sparkplug(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    memory, tags, expected = plc_and_tags()
    async with S7PlcSimulator(port=0, use_model=False, memory=memory) as plc:
        config = gateway_config(tmp_path, mosquitto.port, [device(plc.port, tags)],
                                commands={"enabled": True}, format="sparkplug")
        with TelemetryRecorder(mosquitto.host, mosquitto.port, topic_root="spBv1.0") as rec, \
                SparkplugHost(mosquitto.port) as host:  # fmt: skip
            async with running(config):
                assert await rec.until(lambda s: expected.keys() <= s.latest.keys(), timeout=20)
                check_values(rec.snapshot().latest, expected)
                assert await host.until(lambda ms: len(host.of("DBIRTH", "plc")) >= 1)
                alias = host.of("DBIRTH", "plc")[0].metric("setpoint")["alias"]
                host.command("DCMD", [pb.Payload.Metric(alias=alias, datatype=pb.Float,
                                                        float_value=187.25)], device="plc")
                assert await host.until(
                    lambda ms: (last_result(host) or {}).get("status") == "accepted")
                assert await rec.until(lambda s: s.latest["plc.setpoint"].value == 187.25,
                                       timeout=10)
        assert plc.read_bytes("DB", 0, 4, db=5) == struct.pack(">f", 187.25)
