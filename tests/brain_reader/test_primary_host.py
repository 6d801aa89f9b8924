"""End to end with a primary host: the gateway process publishes Sparkplug B at the default
data QoS 0 with ``primary_host_id``, Mosquitto goes away and comes back, and
``chenxing-ingest --primary-host`` writes to VictoriaMetrics the samples the gateway's own
InfluxDB sink (which needs no broker) wrote, with their read times: all of them. (A QoS 0
message written to the socket as the broker died used to be lost: the gateway now counts
one delivered only when a PINGRESP to a later PINGREQ came back, and sends the others
again; gateway/northbound/mqtt_link.py.)"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hil.broker import MqttBroker
from hil.scenario.gateway_process import GatewayProcess
from hil.victoria_metrics import VictoriaMetrics
from tests.integration.gateway_harness import meter_device

pytestmark = [pytest.mark.broker, pytest.mark.slow]

CLI = [sys.executable, "-m", "brain_reader.cli"]


def by_writer(vm: VictoriaMetrics) -> tuple[dict[str, set[int]], dict[str, set[int]]]:
    """Per tag, the timestamps the gateway's sink wrote and those the reader wrote (its
    series carry the Sparkplug ``group`` label)."""
    sink: dict[str, set[int]] = {}
    ingest: dict[str, set[int]] = {}
    for row in vm.export('{__name__="meter_quality"}'):
        side = ingest if "group" in row["metric"] else sink
        side.setdefault(row["metric"]["tag"], set()).update(row["timestamps"])
    return sink, ingest


class StateWatcher:
    """The STATE topic as a gateway sees it."""

    def __init__(self, broker: MqttBroker) -> None:
        self.states: list[dict[str, object]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="state-watcher")
        self.client.on_message = self._message
        self.client.on_connect = lambda c, *a: c.subscribe("spBv1.0/STATE/brain", 1)
        self.client.reconnect_delay_set(0.2, 0.5)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _message(self, client: object, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.states.append(json.loads(msg.payload))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def until(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


async def test_broker_outage_at_qos_0_loses_nothing_with_a_primary_host(
    tmp_path: Path, mosquitto: MqttBroker, victoria_metrics: VictoriaMetrics, waveform_meter
) -> None:
    gw_config = tmp_path / "gateway.yaml"
    gw_config.write_text(json.dumps({
        "gateway": {"id": "gw-ph", "site": "plant", "line": "l1", "state_dir": "state"},
        "devices": [{**meter_device("meter", waveform_meter.port), "reconnect_max": "1s"}],
        "northbound": {
            "format": "sparkplug", "publish_interval": "100ms",
            "sparkplug": {"primary_host_id": "brain"},  # data_qos: the default, 0
            "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "reconnect_min": 0.2,
                     "reconnect_max": 0.5},
            "influxdb": {"url": victoria_metrics.url, "bucket": "edge",
                         "flush_interval": "200ms"},
        },
        "http": {"enabled": False},
    }))  # fmt: skip
    ingest = await asyncio.create_subprocess_exec(
        *CLI, "--broker", mosquitto.url, "--primary-host", "brain", "--format", "sparkplug",
        "--influx-url", victoria_metrics.url, "--bucket", "brain", "--flush-interval", "200ms",
        "--client-id", "brain-1", "--state-dir", str(tmp_path / "ingest"), "--json",
        stdout=asyncio.subprocess.PIPE, stderr=(tmp_path / "ingest.log").open("wb"),
    )  # fmt: skip
    watcher = StateWatcher(mosquitto)
    gateway = GatewayProcess(gw_config)
    try:
        assert await until(lambda: any(s["online"] for s in watcher.states), timeout=20)
        await gateway.start()
        assert await until(lambda: len(by_writer(victoria_metrics)[1].get("voltage", ())) >= 10,
                           30)  # fmt: skip
        outage_ms = int(time.time() * 1000)
        await asyncio.to_thread(mosquitto.stop)
        await asyncio.sleep(3.0)  # the meter is read on; the sink writes; nothing is sent
        await asyncio.to_thread(mosquitto.start)

        def caught_up() -> bool:
            sink, got = by_writer(victoria_metrics)
            newest = max((max(ts) for ts in sink.values() if ts), default=0)
            return bool(sink) and all(
                {t for t in ts if t < newest - 1500} <= got.get(tag, set())
                for tag, ts in sink.items())  # fmt: skip

        if not await until(caught_up, timeout=40):
            sink, got = by_writer(victoria_metrics)
            lost = {tag: sorted(ts - got.get(tag, set())) for tag, ts in sink.items()}
            pytest.fail(f"not caught up: {outage_ms=} {lost}")
        assert await gateway.stop() == 0
        await asyncio.sleep(1.0)
    finally:
        watcher.close()
        await gateway.stop()
        if ingest.returncode is None:
            ingest.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(ingest.communicate(), 30)
    assert ingest.returncode == 0
    counters = json.loads(out)
    assert counters["historical"] > 0, "the outage's samples came back as historical"
    assert counters["unknown_aliases"] == 0

    def lost() -> dict[str, list[int]]:
        sink, got = by_writer(victoria_metrics)
        assert len(sink) >= 6 and all(got.get(tag, set()) <= ts for tag, ts in sink.items())
        return {tag: sorted(ts - got.get(tag, set())) for tag, ts in sink.items()
                if ts - got.get(tag, set())}  # fmt: skip

    assert victoria_metrics.wait_for(lambda: not lost())
    assert not lost(), f"samples the sink has and the primary host does not ({outage_ms=})"
