"""A minimal Sparkplug host for tests: records every spBv1.0 message in arrival order,
publishes STATE, NCMD and DCMD."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.errors import SparkplugDecodeError
from gateway.northbound.sparkplug import sparkplug_b_pb2 as pb
from gateway.northbound.sparkplug.decode import (
    SparkplugTopic,
    decode_payload,
    parse_topic,
    resolve_datatype,
)
from tests.waiting import until


@dataclass(frozen=True, slots=True)
class SpMessage:
    topic: SparkplugTopic
    body: dict[str, Any]
    qos: int
    retain: bool

    @property
    def type(self) -> str:
        return self.topic.message_type

    @property
    def seq(self) -> int | None:
        return self.body["seq"]  # type: ignore[no-any-return]

    def metric(self, name: str) -> dict[str, Any]:
        return next(m for m in self.body["metrics"] if m["name"] == name)


class SparkplugHost:
    def __init__(self, port: int, group: str = "plant", edge: str = "gw-test") -> None:
        self.group, self.edge = group, edge
        self.messages: list[SpMessage] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"sp-host-{time.time_ns()}")  # fmt: skip
        self._client.reconnect_delay_set(0.1, 1.0)
        self._client.on_connect = lambda c, *a: c.subscribe("spBv1.0/#", qos=1)
        self._client.on_subscribe = self._on_subscribe
        #: subscriptions made (one per connection)
        self.subscriptions = 0
        self._client.on_message = self._on_message
        self._port = port

    def _on_subscribe(self, *args: object) -> None:
        self.subscriptions += 1
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        topic = parse_topic(msg.topic)
        if topic is None or topic.is_state:
            return
        try:
            body = decode_payload(bytes(msg.payload))
        except SparkplugDecodeError:  # a hostile command a test sent: nothing to record
            return
        with self._lock:
            self.messages.append(SpMessage(topic, body, msg.qos, bool(msg.retain)))

    def start(self) -> SparkplugHost:
        self._client.connect_async("127.0.0.1", self._port, keepalive=30)
        self._client.loop_start()
        assert self._subscribed.wait(10), "host could not subscribe"
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> SparkplugHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- queries ---------------------------------------------------------------------------
    def snapshot(self) -> list[SpMessage]:
        with self._lock:
            return list(self.messages)

    def of(self, kind: str, device: str | None = None) -> list[SpMessage]:
        return [m for m in self.snapshot()
                if m.type == kind and (device is None or m.topic.device_id == device)]  # fmt: skip

    async def until(self, predicate: Callable[[list[SpMessage]], bool],
                    timeout: float = 30.0) -> bool:  # fmt: skip
        """True once ``predicate(messages)`` holds; fails after ``timeout`` s otherwise."""
        return bool(await until(lambda: predicate(self.snapshot()), timeout=timeout))

    def samples(self, messages: list[SpMessage] | None = None) -> list[dict[str, Any]]:
        """DDATA metrics resolved to device.name through the preceding DBIRTH's aliases."""
        aliases: dict[tuple[str, int], tuple[str, str]] = {}
        out: list[dict[str, Any]] = []
        for m in messages if messages is not None else self.snapshot():
            if m.type == "DBIRTH":
                for x in m.body["metrics"]:
                    aliases[(m.topic.device_id, x["alias"])] = (x["name"], x["datatype"])
            elif m.type == "DDATA":
                for x in m.body["metrics"]:
                    name, datatype = aliases.get((m.topic.device_id, x["alias"]), ("?", None))
                    out.append({**x, "tag": f"{m.topic.device_id}.{name}", "seq": m.seq,
                                "value": resolve_datatype(x["value"], datatype)})  # fmt: skip
        return out

    # --- publishing -------------------------------------------------------------------------
    def publish_state(self, host_id: str, online: bool, ts_ms: int | None = None) -> None:
        body = {"online": online, "timestamp": ts_ms if ts_ms is not None else time.time_ns()
                // 1_000_000}  # fmt: skip
        self._client.publish(f"spBv1.0/STATE/{host_id}", json.dumps(body), qos=1,
                             retain=True).wait_for_publish(5)  # fmt: skip

    def command(self, kind: str, metrics: list[pb.Payload.Metric], device: str | None = None,
                retain: bool = False) -> None:  # fmt: skip
        payload = pb.Payload(timestamp=time.time_ns() // 1_000_000)
        payload.metrics.extend(metrics)
        self.publish_raw(kind, payload.SerializeToString(), device, retain)

    def publish_raw(self, kind: str, payload: bytes, device: str | None = None,
                    retain: bool = False) -> None:  # fmt: skip
        """A command payload as given (QoS 1 when retained, so the broker has kept it)."""
        topic = f"spBv1.0/{self.group}/{kind}/{self.edge}" + (f"/{device}" if device else "")
        self._client.publish(topic, payload, qos=1 if retain else 0,
                             retain=retain).wait_for_publish(5)  # fmt: skip

    def rebirth(self) -> None:
        rebirth = pb.Payload.Metric(name="Node Control/Rebirth", datatype=pb.Boolean,
                                    boolean_value=True)
        self.command("NCMD", [rebirth])


def seqs_contiguous(messages: list[SpMessage]) -> bool:
    """Every message after an NBIRTH (seq 0) has the previous seq + 1 mod 256."""
    expected: int | None = None
    for m in messages:
        if m.type in ("NDEATH", "NCMD", "DCMD"):
            continue
        if m.type == "NBIRTH":
            if m.seq != 0:
                return False
            expected = 1
            continue
        if expected is None or m.seq != expected:
            return False
        expected = (expected + 1) % 256
    return True
