"""The MQTT connection: paho-mqtt 2.x in its network thread, bridged to asyncio.

paho runs keep-alive, reconnects and retransmission of unacknowledged QoS 1
messages in its own thread (``loop_start``); callbacks are handed to the event
loop with ``call_soon_threadsafe`` so the rest of the gateway stays
single-threaded. Reconnect delays get jitter from :class:`Backoff` each time the
link drops, so a fleet of gateways does not reconnect in lock step.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from gateway.backoff import Backoff
from gateway.config.models import MqttConfig
from gateway.northbound.message import OutboundMessage

log = logging.getLogger(__name__)


class MqttLink:
    def __init__(
        self,
        config: MqttConfig,
        client_id: str,
        will: OutboundMessage | None,
        password: str | None,
        on_ack: Callable[[int], None],
        on_state: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.url = f"mqtt://{config.host}:{config.port}"
        self.connected = asyncio.Event()
        self.generation = 0  # counts successful connects; a new one needs a new birth
        self.last_error: str | None = None
        self.connects = 0
        self.disconnects = 0
        self._loop = asyncio.get_running_loop()
        self._on_ack = on_ack
        self._on_state = on_state
        self._mid_to_id: dict[int, int] = {}
        self._stopping = False
        self._backoff = Backoff(config.reconnect_min, config.reconnect_max)
        v5 = config.protocol == "5"
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else True,
        )
        self._client.max_inflight_messages_set(65535)  # the outbox bounds what is in flight
        self._client.max_queued_messages_set(0)
        if config.username is not None:
            self._client.username_pw_set(config.username, password)
        if will is not None:
            self._client.will_set(will.topic, will.payload, will.qos, will.retain)
        self._client.reconnect_delay_set(config.reconnect_min, config.reconnect_max)
        self._client.on_connect = self._paho_connect
        self._client.on_disconnect = self._paho_disconnect
        self._client.on_publish = self._paho_publish

    # --- paho thread -> event loop -------------------------------------------------
    def _paho_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason: ReasonCode,
        properties: object,
    ) -> None:
        self._loop.call_soon_threadsafe(self._connected, reason.is_failure, str(reason))

    def _paho_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason: ReasonCode,
        properties: object,
    ) -> None:
        # jitter for paho's next reconnect wait; its own delay doubles from here up to the max
        delay = self._backoff.next_delay()
        client.reconnect_delay_set(min(delay, self.config.reconnect_max), self.config.reconnect_max)
        self._loop.call_soon_threadsafe(self._disconnected, str(reason))

    def _paho_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason: ReasonCode,
        properties: object,
    ) -> None:
        self._loop.call_soon_threadsafe(self._acked, mid, reason.is_failure, str(reason))

    # --- event loop ------------------------------------------------------------------
    def _connected(self, failed: bool, reason: str) -> None:
        if failed:
            self.last_error = f"connection refused by broker: {reason}"
            log.warning("MQTT %s: %s", self.url, self.last_error)
            return
        self.connects += 1
        self.generation += 1
        self.last_error = None
        self._backoff.reset()
        log.info("MQTT connected to %s", self.url)
        self.connected.set()
        self._on_state()

    def _disconnected(self, reason: str) -> None:
        if self._stopping:
            log.info("MQTT disconnected from %s", self.url)
        elif self.connected.is_set():
            self.disconnects += 1
            log.warning("MQTT disconnected from %s: %s", self.url, reason)
        self.connected.clear()
        self.last_error = f"disconnected: {reason}"
        self._on_state()

    def _acked(self, mid: int, failed: bool, reason: str) -> None:
        message_id = self._mid_to_id.pop(mid, None)
        if message_id is None:
            return
        if failed:  # MQTT 5 PUBACK with an error code: the broker will not route it
            log.error("broker rejected message %d: %s", message_id, reason)
        self._on_ack(message_id)

    # --- API -------------------------------------------------------------------------
    def start(self) -> None:
        self._client.connect_async(self.config.host, self.config.port, int(self.config.keepalive))
        self._client.loop_start()

    def publish(self, message: OutboundMessage) -> None:
        """Hand a message to paho; ``on_ack(message.id)`` follows the broker's PUBACK."""
        info = self._client.publish(message.topic, message.payload, message.qos, message.retain)
        if message.qos == 0:
            self._loop.call_soon(self._on_ack, message.id)
        else:
            self._mid_to_id[info.mid] = message.id

    async def stop(self) -> None:
        """Disconnect cleanly (the broker then does not send the will)."""
        self._stopping = True
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        self.connected.clear()
