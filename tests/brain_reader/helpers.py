"""Running ingest readers in the test's event loop; publishing crafted messages."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from brain_reader.config import IngestConfig, load_ingest_config
from brain_reader.counters import IngestCounters
from brain_reader.reader import IngestReader
from gateway.northbound.message import OutboundMessage
from hil.broker import MqttBroker
from hil.victoria_metrics import VictoriaMetrics
from tests.waiting import until


def ingest_config(broker: MqttBroker, vm: VictoriaMetrics | None, **kw: Any) -> IngestConfig:
    influx = None
    if vm is not None:
        influx = {"url": vm.url, "bucket": "brain", "flush_interval": "200ms",
                  "retry_min": 0.2, "retry_max": 0.5}  # fmt: skip
    return load_ingest_config(None, {"brokers": [broker.url], "influxdb": influx,
                                     "reconnect_min": 0.2, "reconnect_max": 1.0,
                                     "report_interval": 1.0, "catalog": False,
                                     **kw})  # fmt: skip


class RunningReader:
    def __init__(self, reader: IngestReader, task: asyncio.Task[IngestCounters],
                 stop: asyncio.Event) -> None:  # fmt: skip
        self.reader = reader
        self.task = task
        self.stop_event = stop

    @property
    def counters(self) -> IngestCounters:
        return self.reader.counters

    async def stop(self) -> IngestCounters:
        self.stop_event.set()
        return await asyncio.wait_for(self.task, 30)


@asynccontextmanager
async def running_reader(config: IngestConfig,
                         drain_timeout: float = 10.0) -> AsyncIterator[RunningReader]:  # fmt: skip
    stop = asyncio.Event()
    reader = IngestReader(config)
    task = asyncio.create_task(reader.run(stop, drain_timeout))
    handle = RunningReader(reader, task, stop)
    await until(lambda: reader.link is not None and reader.link.connected.is_set(),
                "the reader connected")
    await subscriptions_in_place(reader)
    try:
        yield handle
    finally:
        if not task.done():
            await handle.stop()


async def subscriptions_in_place(reader: IngestReader) -> None:
    """The broker holds the reader's subscriptions: the link sends them on connect, and a
    probe the reader's link publishes after them reaches another client only once the
    broker has read them (one connection's packets are handled in order)."""
    link = reader.link
    assert link is not None
    url = urllib.parse.urlsplit(link.url)
    topic = f"test/probe/{time.time_ns()}"  # none of the reader's subscriptions
    subscribed, seen = threading.Event(), threading.Event()
    probe = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{time.time_ns()}")
    probe.on_subscribe = lambda *_: subscribed.set()
    probe.on_message = lambda *_: seen.set()
    tls = reader.config.tls
    if url.scheme == "mqtts" and tls is not None:  # the reader's own credentials
        probe.tls_set(str(tls.ca) if tls.ca else None,
                      str(tls.certificate) if tls.certificate else None,
                      str(tls.key) if tls.key else None)  # fmt: skip
    probe.connect(url.hostname or "127.0.0.1", url.port or 1883)
    probe.loop_start()
    try:
        probe.subscribe(topic, qos=1)
        await until(subscribed.is_set, "the probe's own subscription")
        link.publish(OutboundMessage(topic, b"probe", "event", qos=0, id=-(2**40)))
        await until(seen.is_set, "the probe published after the reader's subscriptions")
    finally:
        probe.disconnect()
        probe.loop_stop()


class Publisher:
    """A plain paho client publishing with QoS 1 and waiting for each PUBACK."""

    def __init__(self, broker: MqttBroker, client_id: str = "test-publisher") -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


BASE_MS = int(time.time() * 1000) - 60_000


def json_data(seq: int, gateway: str = "gw-x", samples: int = 1) -> tuple[str, bytes]:
    """A JSON contract v1 data message; sample ``i`` of message ``seq`` has the timestamp
    BASE_MS + seq * samples + i and the value seq + i / 1000."""
    ts = [BASE_MS + seq * samples + i for i in range(samples)]
    body = {
        "v": 1, "type": "data", "gateway": gateway, "site": "plant", "line": "l1",
        "session": 1, "seq": seq, "ts": ts[-1],
        "samples": {"tag": ["press.force"] * samples,
                    "value": [seq + i / 1000 for i in range(samples)],
                    "ts": ts, "q": ["good"] * samples},
    }  # fmt: skip
    return f"chenxing/v1/plant/l1/{gateway}/data", json.dumps(body).encode()
