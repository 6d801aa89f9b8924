"""End to end: simulated meter -> gateway with an edge model -> real Mosquitto.

The model's output is an ordinary tag in the birth and the data; its alarm is an event;
the birth lists the models in service; SIGHUP reloads the folder; /metrics counts.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config.models import ModelsConfig
from hil.broker import MqttBroker
from hil.recorder import TelemetryRecorder
from tests.integration.gateway_harness import gateway_config, meter_device, running
from tests.waiting import until

from .helpers import identity_manifest, write_model

pytestmark = pytest.mark.broker


class EventListener:
    """Collects ``.../event`` messages."""

    def __init__(self, port: int) -> None:
        self.events: list[dict[str, Any]] = []
        self._ready = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"ev-{time.time_ns()}")
        self._client.on_connect = lambda c, *a: c.subscribe("chenxing/v1/+/+/+/event", qos=1)
        self._client.on_subscribe = lambda *a: self._ready.set()
        self._client.on_message = lambda c, u, m: self.events.append(json.loads(m.payload))
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        assert self._ready.wait(10)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def schema(kind: str) -> jsonschema.Draft202012Validator:
    """The shipped JSON Schema of a contract message (docs/schemas/)."""
    path = Path(__file__).resolve().parents[2] / "docs" / "schemas" / f"{kind}.schema.json"
    body = json.loads(path.read_text())
    jsonschema.Draft202012Validator.check_schema(body)
    return jsonschema.Draft202012Validator(body)


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


def kpi_manifest(version: str) -> dict[str, Any]:
    return identity_manifest(
        version=version,
        inputs=[{"tag": "meter.active_power", "aggregation": "mean", "window": "1s"}],
        cycle=None,
        trigger={"on": "interval", "every": "300ms", "settle": "100ms"},
        outputs=[{"name": "power_mean", "onnx": "kwh", "unit": "kW"}],
        alarms=[{"name": "running", "output": "power_mean", "above": 0.5}],
    )


async def test_model_outputs_alarms_birth_reload_and_metrics(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any
) -> None:
    folder = tmp_path / "models"
    write_model(folder, "kpi", kpi_manifest("1"))
    config = gateway_config(tmp_path, mosquitto.port, [meter_device("meter", waveform_meter.port)])
    config = config.model_copy(update={"models": ModelsConfig(
        enabled=True, dir=folder, watch_interval=0, tick=0.05)})
    listener = EventListener(mosquitto.port)
    try:
        with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec:
            async with running(config) as gw:
                assert await rec.until(
                    lambda s: len([x for x in s.samples if x.tag == "models.kpi/power_mean"]) >= 5
                    and any(b.get("models") for b in s.births), timeout=15)
                snap = rec.snapshot()
                birth = [b for b in snap.births if b.get("models")][-1]
                assert birth["models"][0]["name"] == "kpi"
                assert birth["models"][0]["version"] == "1"
                assert len(birth["models"][0]["sha256"]) == 64
                tags = {t["tag"]: t for t in birth["tags"]}
                assert tags["models.kpi/power_mean"]["unit"] == "kW"
                assert tags["models.kpi/running"]["type"] == "bool"
                outputs = [s for s in snap.samples if s.tag == "models.kpi/power_mean"]
                # good samples only, as the model's windows: a slow first connect publishes
                # the meter's tags bad (value null) until it answers
                powers = [s.value for s in snap.samples
                          if s.tag == "meter.active_power" and s.quality == "good"]
                assert all(s.quality == "good" for s in outputs)
                assert min(powers) - 0.01 <= outputs[-1].value <= max(powers) + 0.01
                # the waveform meter draws ~2 kW: the alarm is raised
                await until(lambda: listener.events, "the alarm event")
                assert listener.events[0]["event"] == "alarm"
                assert listener.events[0]["tag"] == "models.kpi/running"
                assert listener.events[0]["state"] == "raised"
                schema("event").validate(listener.events[0])
                schema("birth").validate(birth)

                # a new version, picked up on SIGHUP, announced by a new birth
                write_model(folder, "kpi", kpi_manifest("2"))
                os.kill(os.getpid(), signal.SIGHUP)
                assert await rec.until(lambda s: any(
                    m["version"] == "2" for b in s.births for m in b.get("models", [])),
                    timeout=10)

                port = gw.gateway.http_port
                text = await asyncio.to_thread(fetch, f"http://127.0.0.1:{port}/metrics")
                assert 'chenxing_model_inferences_total{model="kpi",role="active"}' in text
                assert 'chenxing_model_latency_seconds_count{model="kpi",role="active"}' in text
                assert 'chenxing_model_loads_total{file="kpi.yaml"} 2.0' in text
                assert 'chenxing_model_errors_total{model="kpi",role="active"} 0.0' in text
                health = json.loads(await asyncio.to_thread(
                    fetch, f"http://127.0.0.1:{port}/healthz"))
                assert health["models"][0]["file"] == "kpi.yaml"
                assert health["models"][0]["loaded"] and health["models"][0]["version"] == "2"

                # a corrupt update: refused with the reason, version 2 keeps running
                junk = b"not onnx" * 20
                write_model(folder, "kpi", kpi_manifest("3") | {
                    "sha256": hashlib.sha256(junk).hexdigest()}, onnx=junk)
                await gw.gateway.reload_models()
                health = json.loads(await asyncio.to_thread(
                    fetch, f"http://127.0.0.1:{port}/healthz"))
                assert health["models"][0]["version"] == "2"
                assert "not a loadable ONNX model" in health["models"][0]["last_error"]
                before = len(rec.samples_of("models.kpi/power_mean"))
                assert await rec.until(
                    lambda s: sum(x.tag == "models.kpi/power_mean" for x in s.samples)
                    >= before + 3, timeout=10)
                report = await gw.stop()
        assert report.drained
    finally:
        listener.close()
