"""64-bit integers travel exactly, end to end (issue: "Exact values and safe commands").

Real parts all the way: a pymodbus server (the generic simulator) over TCP and RTU on a
pty, an asyncua server, the gateway, a real Mosquitto and a subscriber decoding both
contracts; the InfluxDB sink's HTTP writes are captured and read back with an independent
line-protocol parser. Before the fix a uint64 holding 2**64-1 (the usual "not available"
marker) was published as 0 in Sparkplug and as -9223372036854775808 in JSON, and an int64
of 2**53+1 as 2**53, all with good quality.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp import web
from asyncua import ua
from line_protocol_parser import parse_line

from hil.broker import MqttBroker
from hil.devices.modbus_generic import ModbusGenericSimulator
from hil.devices.modbus_map import ModbusMap
from hil.devices.opcua_plc import OpcUaPlcSimulator
from hil.process.injection_moulding import InjectionMouldingModel
from hil.recorder import TelemetryRecorder
from tests.integration.command_client import CommandClient
from tests.integration.gateway_harness import gateway_config, running
from tests.waiting import until

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
ALL_ONES = 2**64 - 1

#: register map entries (name, type, byte order, value): every byte order of the all-ones
#: marker, and the values float64 cannot hold
WIDE_REGISTERS: list[tuple[str, str, str, int]] = [
    ("u_max_abcd", "uint64", "ABCD", ALL_ONES),
    ("u_max_cdab", "uint64", "CDAB", ALL_ONES),
    ("u_max_badc", "uint64", "BADC", ALL_ONES),
    ("u_max_dcba", "uint64", "DCBA", ALL_ONES),
    ("u_2_63", "uint64", "CDAB", 2**63),
    ("u_2_53_plus_1", "uint64", "ABCD", 2**53 + 1),
    ("i_2_53_plus_1", "int64", "ABCD", 2**53 + 1),
    ("i_min", "int64", "BADC", -(2**63)),
    ("i_max", "int64", "DCBA", 2**63 - 1),
    ("i_neg_2_53_minus_1", "int64", "CDAB", -(2**53) - 1),
]
#: the OPC UA nodes: (name, variant type, value)
WIDE_NODES: list[tuple[str, ua.VariantType, int]] = [
    ("Exact.U64Max", ua.VariantType.UInt64, ALL_ONES),
    ("Exact.I64Min", ua.VariantType.Int64, -(2**63)),
    ("Exact.I64Odd", ua.VariantType.Int64, 2**53 + 1),
]


def wide_map() -> ModbusMap:
    registers: list[dict[str, Any]] = [
        {"name": name, "table": "holding", "address": 4 * i, "type": type_,
         "byte_order": order, "value": value}
        for i, (name, type_, order, value) in enumerate(WIDE_REGISTERS)
    ]  # fmt: skip
    base = 4 * len(WIDE_REGISTERS)
    registers += [
        {"name": "flow", "table": "holding", "address": base, "type": "float32", "value": 12.5},
        {"name": "setpoint", "table": "holding", "address": base + 2, "type": "uint64",
         "byte_order": "DCBA", "value": 0},
    ]  # fmt: skip
    return ModbusMap.from_dict({"registers": registers})


def modbus_tags() -> list[dict[str, Any]]:
    tags: list[dict[str, Any]] = [
        {"name": name, "table": "holding", "address": 4 * i, "type": type_, "byte_order": order}
        for i, (name, type_, order, _) in enumerate(WIDE_REGISTERS)
    ]
    base = 4 * len(WIDE_REGISTERS)
    tags += [
        {"name": "flow", "table": "holding", "address": base, "type": "float32"},
        {"name": "setpoint", "table": "holding", "address": base + 2, "type": "uint64",
         "byte_order": "DCBA", "writable": True, "range": [0, ALL_ONES]},
    ]
    return tags


def expected_values() -> dict[str, int | float]:
    values: dict[str, int | float] = {f"meter.{n}": v for n, _, _, v in WIDE_REGISTERS}
    values["meter.flow"] = 12.5
    values.update({f"plc.{n.split('.')[1]}": v for n, _, v in WIDE_NODES})
    return values


@asynccontextmanager
async def influx_capture() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A real HTTP endpoint on loopback answering the InfluxDB v2 write API with 204 and
    keeping every body, so the test can read the sink's exact bytes."""
    bodies: list[bytes] = []

    async def write(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/api/v2/write", write)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", bodies
    finally:
        await runner.cleanup()


def influx_fields(bodies: list[bytes]) -> dict[str, dict[str, Any]]:
    """Tag path -> the fields of its last point, parsed by line-protocol-parser (an
    independent implementation)."""
    latest: dict[str, dict[str, Any]] = {}
    for body in bodies:
        for line in body.decode().splitlines():
            point = parse_line(line.encode())
            latest[f"{point['tags']['device']}.{point['tags']['tag']}"] = point["fields"]
    return latest


@pytest.mark.parametrize("fmt", ["json", "sparkplug"])
async def test_64_bit_integers_arrive_exactly_in_both_contracts_and_in_influxdb(
    fmt: str, tmp_path: Path, mosquitto: MqttBroker
) -> None:
    model = InjectionMouldingModel(seed=3)
    async with ModbusGenericSimulator(wide_map()) as meter, \
            OpcUaPlcSimulator(model, update_interval=0.1) as plc, \
            influx_capture() as (influx_url, bodies):  # fmt: skip
        for name, vtype, value in WIDE_NODES:
            await plc.add_variable(name, value, vtype=vtype)
        devices = [
            {"name": "meter", "protocol": "modbus_tcp", "host": "127.0.0.1", "port": meter.port,
             "poll_interval": "100ms", "tags": modbus_tags()},
            {"name": "plc", "protocol": "opcua", "endpoint": plc.endpoint, "mode": "poll",
             "poll_interval": "100ms", "timeout": "2s",
             "tags": [{"name": n.split(".")[1], "node": plc.node_id(n),
                       "type": "uint64" if t is ua.VariantType.UInt64 else "int64"}
                      for n, t, _ in WIDE_NODES]},
        ]  # fmt: skip
        influx = {"url": influx_url, "bucket": "plant", "flush_interval": "100ms"}
        config = gateway_config(tmp_path, mosquitto.port, devices, format=fmt, influxdb=influx)
        expected = expected_values()
        root = "spBv1.0" if fmt == "sparkplug" else "chenxing/v1"
        with TelemetryRecorder(mosquitto.host, mosquitto.port, topic_root=root) as rec:
            async with running(config):
                assert await rec.until(lambda s: expected.keys() <= s.latest.keys(), timeout=20)
                await until(lambda: expected.keys() <= influx_fields(bodies).keys(), timeout=10)
        latest = rec.snapshot().latest
        got = {tag: latest[tag].value for tag in expected}
        assert got == expected
        assert all(type(got[t]) is int for t in expected if t != "meter.flow")
        assert all(latest[t].quality == "good" for t in expected)
        if fmt == "json":  # the birth declares the types, the data follows the schema
            birth = rec.snapshot().births[-1]
            types = {t["tag"]: t["type"] for t in birth["tags"]}
            assert types["meter.u_max_abcd"] == "uint64" and types["plc.I64Min"] == "int64"
            schema = json.loads((ROOT / "docs/schemas/data.schema.json").read_text())
            for message in rec.snapshot().data_messages[-5:]:
                jsonschema.validate(message, schema)
        fields = influx_fields(bodies)
        assert fields["meter.u_max_dcba"]["uint"] == ALL_ONES
        assert fields["plc.U64Max"]["uint"] == ALL_ONES
        assert fields["meter.i_min"]["int"] == -(2**63)
        assert fields["meter.i_2_53_plus_1"]["int"] == 2**53 + 1
        assert fields["meter.flow"]["value"] == 12.5
        assert "value" not in fields["meter.u_max_abcd"]  # never a rounded float


async def test_64_bit_integers_arrive_exactly_over_modbus_rtu(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    async with ModbusGenericSimulator(wide_map(), rtu=True) as meter:
        device = {"name": "meter", "protocol": "modbus_rtu", "port": meter.serial_path,
                  "baudrate": 19200, "unit_id": meter.map.unit_id, "timeout": "300ms",
                  "poll_interval": "200ms", "tags": modbus_tags()}  # fmt: skip
        config = gateway_config(tmp_path, mosquitto.port, [device])
        expected = {k: v for k, v in expected_values().items() if k.startswith("meter.")}
        with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec:
            async with running(config):
                assert await rec.until(lambda s: expected.keys() <= s.latest.keys(), timeout=20)
        latest = rec.snapshot().latest
        assert {tag: latest[tag].value for tag in expected} == expected


async def test_a_command_writes_a_uint64_exactly_and_refuses_one_beyond_it(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    """2**64-1 used to be converted through float64 (to 2**64, refused as not fitting) and
    2**63+1 would have been written as 2**63."""
    async with ModbusGenericSimulator(wide_map()) as meter:
        device = {"name": "meter", "protocol": "modbus_tcp", "host": "127.0.0.1",
                  "port": meter.port, "poll_interval": "100ms", "tags": modbus_tags()}
        config = gateway_config(tmp_path, mosquitto.port, [device], commands={"enabled": True})
        with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec, \
                CommandClient(mosquitto.host, mosquitto.port) as brain:  # fmt: skip
            async with running(config):
                assert await rec.until(lambda s: len(s.births) >= 1, timeout=15)  # subscribed
                for i, value in enumerate([2**63 + 1, ALL_ONES, 2**64, -1]):
                    brain.send(f"w{i}", [{"tag": "meter.setpoint", "value": value}])
                    result = await brain.answer(f"w{i}")
                    if value in (2**63 + 1, ALL_ONES):
                        assert result["status"] == "accepted", result
                        assert meter.value_of("setpoint") == value
                    else:
                        assert result["status"] == "rejected"
                        reason = result["results"][0]["reason"]
                        assert str(value) in reason, reason  # quoted as sent
        assert meter.value_of("setpoint") == ALL_ONES
