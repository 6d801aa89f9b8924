"""A subscriber that records everything a gateway publishes, for tests, HIL and the demo.

It decodes the JSON contract (births, data, device states, deaths) and keeps every sample with
the time it was received, so a test can check values, qualities, timestamps,
sequence numbers and latency.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway import json_input
from hil.recorder_sparkplug import SparkplugDecoder


@dataclass(frozen=True, slots=True)
class ReceivedSample:
    tag: str
    value: Any
    ts_ms: int
    quality: str
    seq: int
    received_ns: int


@dataclass(slots=True)
class _State:
    births: list[dict[str, Any]] = field(default_factory=list)
    deaths: list[dict[str, Any]] = field(default_factory=list)
    data_messages: list[dict[str, Any]] = field(default_factory=list)
    samples: list[ReceivedSample] = field(default_factory=list)
    latest: dict[str, ReceivedSample] = field(default_factory=dict)
    undecodable: int = 0
    retained_seen: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    #: device messages (a device up or down within a session)
    devices: list[dict[str, Any]] = field(default_factory=list)
    #: each device's state: the last birth's, updated by the device messages after it
    device_states: dict[str, str] = field(default_factory=dict)


class TelemetryRecorder:
    """Subscribes to ``{topic_root}/#`` with QoS 1 and records what arrives."""

    def __init__(
        self,
        host: str,
        port: int,
        topic_root: str = "chenxing/v1",
        client_id: str | None = None,
        persistent: bool = False,
    ) -> None:
        """``persistent`` keeps the broker session (clean session off) so that what is
        published while the recorder is disconnected is queued for it by the broker."""
        self.host = host
        self.port = port
        self.topic = topic_root.rstrip("/") + "/#"
        #: ``topic_root="spBv1.0"`` records a Sparkplug B edge node instead
        self._sparkplug = SparkplugDecoder() if topic_root.rstrip("/") == "spBv1.0" else None
        self._lock = threading.Lock()
        self._state = _State()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"recorder-{time.time_ns()}",
            clean_session=not persistent,
        )
        self._client.reconnect_delay_set(0.1, 1.0)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: Any, properties: object
    ) -> None:
        if not reason.is_failure:
            client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, *args: object) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        received = time.time_ns()
        try:
            if self._sparkplug is not None:
                decoded = self._sparkplug.decode(msg.topic, bytes(msg.payload))
                if decoded is None:
                    raise ValueError("not a Sparkplug B message")
                kind, body = decoded
            else:
                body = json_input.loads(msg.payload)  # anyone may publish: bounded
                kind = body["type"]
            samples = self._samples(body, received) if kind == "data" else []
        except (ValueError, KeyError, TypeError):  # also a data message of uneven columns
            with self._lock:
                self._state.undecodable += 1
            return
        with self._lock:
            st = self._state
            if msg.retain:
                st.retained_seen += 1
            if kind == "birth":
                st.births.append(body)
                st.device_states = {d["name"]: d["state"] for d in body.get("devices", [])}
            elif kind == "device":
                st.devices.append(body)
                st.device_states[body["device"]["name"]] = body["device"]["state"]
            elif kind == "death":
                st.deaths.append(body)
            elif kind == "event":
                st.events.append(body)
            elif kind == "data":
                st.data_messages.append(body)
                st.samples.extend(samples)
                st.latest.update((sample.tag, sample) for sample in samples)

    @staticmethod
    def _samples(body: dict[str, Any], received: int) -> list[ReceivedSample]:
        """The samples of a data message (outside the lock; bad columns raise)."""
        s, seq = body["samples"], body["seq"]
        return [
            ReceivedSample(tag, value, ts, q, seq, received)
            for tag, value, ts, q in zip(s["tag"], s["value"], s["ts"], s["q"], strict=True)
        ]

    # --- control -----------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> TelemetryRecorder:
        self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise TimeoutError(f"recorder could not subscribe on {self.host}:{self.port}")
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> TelemetryRecorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- queries -------------------------------------------------------------------------
    def snapshot(self) -> _State:
        """A consistent copy of what was recorded so far."""
        with self._lock:
            st = self._state
            return _State(
                list(st.births),
                list(st.deaths),
                list(st.data_messages),
                list(st.samples),
                dict(st.latest),
                st.undecodable,
                st.retained_seen,
                list(st.events),
                list(st.devices),
                dict(st.device_states),
            )

    def samples_of(self, tag: str) -> list[ReceivedSample]:
        with self._lock:
            return [s for s in self._state.samples if s.tag == tag]

    def wait_for(
        self, predicate: Callable[[_State], bool], timeout: float = 10.0, poll: float = 0.05
    ) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.snapshot()):
                return True
            time.sleep(poll)
        return predicate(self.snapshot())

    async def until(
        self, predicate: Callable[[_State], bool], timeout: float = 10.0, poll: float = 0.05
    ) -> bool:
        """Like :meth:`wait_for`, without blocking the event loop."""

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if predicate(self.snapshot()):
                return True
            await asyncio.sleep(poll)
        return predicate(self.snapshot())
