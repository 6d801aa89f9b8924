"""The brain's side of a command round trip: publish a JSON ``cmd``, collect ``cmd-result``
(docs/contract-json.md)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway import json_input

__all__ = ["BrainClient", "CommandRecord"]


@dataclass(slots=True)
class CommandRecord:
    """One command the runner sent, and what came of it (times: scenario seconds)."""

    name: str
    id: str
    tag: str
    value: float | bool
    sent_at: float
    result: dict[str, Any] | None = None
    answered_at: float | None = None
    device_value: float | bool | None = None


class BrainClient:
    """Publishes commands to ``{base}/cmd`` (QoS 1, not retained), subscribes to
    ``{base}/cmd-result``; thread-safe, paho's network loop runs in its own thread."""

    def __init__(self, host: str, port: int, base_topic: str) -> None:
        self.base = base_topic.rstrip("/")
        self._results: dict[str, tuple[dict[str, Any], float]] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._host, self._port = host, port
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"hil-brain-{uuid.uuid4().hex[:12]}"
        )
        self._client.reconnect_delay_set(0.1, 1.0)
        self._client.on_connect = lambda c, *a: c.subscribe(f"{self.base}/cmd-result", qos=1)
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.on_message = self._on_message

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        received = time.time()
        try:
            body = json_input.loads(msg.payload)
        except ValueError:
            return
        if isinstance(body, dict) and isinstance(body.get("id"), str):
            with self._lock:
                self._results.setdefault(body["id"], (body, received))

    def start(self, timeout: float = 10.0) -> BrainClient:
        self._client.connect_async(self._host, self._port, keepalive=30)
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise TimeoutError(f"brain client could not subscribe on {self._host}:{self._port}")
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def send(self, command_id: str, tag: str, value: float | bool) -> None:
        """Publish one command with one write (blocking until the broker has it)."""
        body = {"v": 1, "type": "cmd", "id": command_id, "writes": [{"tag": tag, "value": value}]}
        info = self._client.publish(f"{self.base}/cmd", json.dumps(body), qos=1)
        info.wait_for_publish(10)

    async def answer(self, command_id: str, timeout: float) -> tuple[dict[str, Any], float] | None:
        """The ``cmd-result`` for ``command_id`` and its epoch receive time, or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = self._results.get(command_id)
            if found is not None:
                return found
            await asyncio.sleep(0.02)
        return None
