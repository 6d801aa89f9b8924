"""A brain-side MQTT client for tests: publishes ``cmd`` and collects ``cmd-result``."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.waiting import until

BASE = "chenxing/v1/plant/line-1/gw-test"


class CommandClient:
    def __init__(self, host: str, port: int, base_topic: str = BASE) -> None:
        self.base = base_topic
        self.results: list[dict[str, Any]] = []
        self.raw_results: list[bytes] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"brain-{time.time_ns()}")
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.on_message = self._on_message
        self._host, self._port = host, port

    def _on_connect(self, client: mqtt.Client, *args: object) -> None:
        client.subscribe(f"{self.base}/cmd-result", qos=1)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.raw_results.append(bytes(msg.payload))
            self.results.append(json.loads(msg.payload))

    def __enter__(self) -> CommandClient:
        self._client.connect_async(self._host, self._port, keepalive=30)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("command client could not subscribe")
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def send_raw(self, payload: bytes | str, retain: bool = False) -> None:
        info = self._client.publish(f"{self.base}/cmd", payload, qos=1, retain=retain)
        info.wait_for_publish(10)

    def send(self, command_id: str, writes: list[dict[str, Any]], **extra: Any) -> None:
        body = {"v": 1, "type": "cmd", "id": command_id, "writes": writes, **extra}
        self.send_raw(json.dumps(body))

    def answers(self, command_id: str | None) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.results if r.get("id") == command_id]

    async def answer(self, command_id: str, count: int = 1, timeout: float = 15) -> dict[str, Any]:
        """The ``count``-th answer to ``command_id``, waiting for it."""
        found = await until(lambda: len(self.answers(command_id)) >= count,
                            f"answer #{count} to command {command_id!r}", timeout=timeout)
        assert found
        return self.answers(command_id)[count - 1]
