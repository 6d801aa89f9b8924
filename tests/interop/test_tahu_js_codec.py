"""The gateway's Sparkplug bytes read by Eclipse Tahu's JavaScript codec (npm
``sparkplug-payload`` 1.0.3, installed by ``scripts/bootstrap.sh --test``), a decoder
that needs each metric's datatype.

Tahu's codec decodes a metric's value only when the metric carries its datatype, which
the specification lets data messages omit (the birth defines it): by default every
NDATA/DDATA value reads as null there. ``sparkplug.data_datatypes: true`` puts the
datatype in data metrics too. The codec also reads UInt32 values from ``long_value``
while the specification puts them in ``int_value``: UInt32 values read as null with it
whatever the gateway does (docs/contract-sparkplug.md, "Interoperability").
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hil.broker import MqttBroker
from hil.devices.modbus_generic import ModbusGenericSimulator
from hil.devices.modbus_map import ModbusMap
from tests.integration.gateway_harness import gateway_config, running
from tests.waiting import until

pytestmark = pytest.mark.broker

PEERS = Path(__file__).parent / "node"
DECODER = PEERS / "decode.js"

REGISTERS = [
    {"name": "marker", "address": 0, "type": "uint64", "value": 2**64 - 1},
    {"name": "debt", "address": 4, "type": "int64", "value": -(2**53) - 1},
    {"name": "trim", "address": 8, "type": "int16", "value": -2},
    {"name": "flow", "address": 9, "type": "float32", "value": 12.5},
    {"name": "count", "address": 11, "type": "uint32", "value": 4_000_000_000},
]


def tahu_decode(payloads: list[bytes]) -> list[dict[str, Any]]:
    """Each payload decoded by Tahu's codec in Node.js."""
    node = shutil.which("node")
    assert node is not None, "Node.js is missing: run scripts/bootstrap.sh --test as root"
    assert (PEERS / "node_modules" / "sparkplug-payload").is_dir(), (
        "the npm test peers are missing: run scripts/bootstrap.sh --test"
    )
    lines = "".join(p.hex() + "\n" for p in payloads)
    done = subprocess.run([node, str(DECODER)], input=lines, capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    return [json.loads(line) for line in done.stdout.splitlines()]


class RawRecorder:
    """Every spBv1.0 message as published: (topic, payload bytes)."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"raw-{time.time_ns()}")
        self._client.on_connect = lambda c, *a: c.subscribe("spBv1.0/#", qos=1)
        self._client.on_subscribe = lambda *a: self._ready.set()
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        assert self._ready.wait(10)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def of(self, kind: str) -> list[bytes]:
        with self._lock:
            return [p for t, p in self.messages if t.split("/")[2] == kind]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


async def record(tmp_path: Path, mosquitto: MqttBroker, **sparkplug: Any
                 ) -> tuple[list[bytes], list[bytes]]:  # fmt: skip
    """(DBIRTH payloads, DDATA payloads) of a gateway reading :data:`REGISTERS`."""
    sim_map = ModbusMap.from_dict({"registers": [{"table": "holding", **r} for r in REGISTERS]})
    async with ModbusGenericSimulator(sim_map) as sim:
        device = {"name": "press", "protocol": "modbus_tcp", "host": "127.0.0.1",
                  "port": sim.port, "poll_interval": "100ms",
                  "tags": [{"name": r["name"], "table": "holding", "address": r["address"],
                            "type": r["type"], "deadband": 0} for r in REGISTERS]}  # fmt: skip
        config = gateway_config(tmp_path, mosquitto.port, [device], format="sparkplug",
                                sparkplug=sparkplug)  # fmt: skip
        raw = RawRecorder(mosquitto.port)
        try:
            async with running(config):
                await until(lambda: raw.of("DDATA"), "a DDATA from the gateway", timeout=15)
        finally:
            raw.close()
    return raw.of("DBIRTH"), raw.of("DDATA")


def by_alias(decoded: list[dict[str, Any]], births: list[dict[str, Any]]) -> dict[str, Any]:
    """Metric name -> (type, value) of the data metrics, names from the DBIRTH."""
    names = {m["alias"]: m["name"] for b in births for m in b["metrics"]}
    return {names[m["alias"]]: (m["type"], m["value"]) for d in decoded for m in d["metrics"]}


async def test_by_default_tahu_reads_data_values_as_null(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    births, data = await record(tmp_path, mosquitto)
    values = by_alias(tahu_decode(data), tahu_decode(births))
    assert set(values) == {r["name"] for r in REGISTERS}
    assert all(v == (None, None) for v in values.values()), values


async def test_with_data_datatypes_tahu_reads_every_value_exactly(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    births, data = await record(tmp_path, mosquitto, data_datatypes=True)
    birth = tahu_decode(births)
    values = by_alias(tahu_decode(data), birth)
    assert values["marker"] == ("UInt64", str(2**64 - 1))
    assert values["debt"] == ("Int64", str(-(2**53) - 1))
    assert values["trim"] == ("Int16", -2)
    assert values["flow"] == ("Float", 12.5)
    # the codec's own limit (documented): it reads UInt32 from long_value, the specification
    # and the gateway put it in int_value
    assert values["count"] == ("UInt32", None)
    # the births carry the same exact values
    born = {m["name"]: m["value"] for b in birth for m in b["metrics"]}
    assert born["marker"] in (None, str(2**64 - 1))

