"""The Sparkplug 3.0 primary host's STATE: ``spBv1.0/STATE/{host_id}``, retained, QoS 1,
``{"online": true, "timestamp": T}`` after the reader's subscriptions are in place, with
the will ``{"online": false, "timestamp": T}`` of the same connection (the same T).

Gateways configured with ``sparkplug.primary_host_id`` publish only while the host is
online and hold their data (replayed, flagged historical, after the host is back) while
it is not, so data at QoS 0 sent during a broker outage is not lost.

STATE has a connection of its own: a will is fixed at CONNECT, and the readers of a
group all speak for the one host id. When the reader whose STATE is the newest dies,
its will (the newest timestamp) tells the gateways "offline"; the other readers see
it and re-assert "online" by reconnecting their STATE connection with a new timestamp
(a gateway ignores a STATE older than the last it saw, so only the newest matters).
The STATE connection is up only while the reader's data connection is subscribed:
when that drops, STATE goes offline with it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from gateway.config.models import MqttConfig
from gateway.errors import SparkplugDecodeError
from gateway.northbound.message import OutboundMessage
from gateway.northbound.mqtt_link import MqttLink
from gateway.northbound.sparkplug.decode import decode_state
from gateway.repeated_log import RepeatedKinds

log = logging.getLogger(__name__)


def state_payload(online: bool, ts: int) -> bytes:
    return json.dumps({"online": online, "timestamp": ts}, separators=(",", ":")).encode()


class PrimaryHost:
    def __init__(self, host_id: str, mqtt: MqttConfig, client_id: str,
                 password: str | None, ready: Callable[[], bool] = lambda: True) -> None:
        """``ready()``: the reader's data connection is up and subscribed (STATE may say
        online only then)."""
        self._ready = ready
        self.host_id = host_id
        self.topic = f"spBv1.0/STATE/{host_id}"
        self.client_id = client_id
        self._mqtt = mqtt
        self._password = password
        self._link: MqttLink | None = None
        #: the timestamp of this connection's will and birth
        self.timestamp = 0
        self._announced = -1  # link generation whose online STATE was published
        self.reasserts = 0
        self._ids = 0
        self._task: asyncio.Task[None] | None = None
        self._bad = RepeatedKinds(log, "primary host STATE ignored")

    @property
    def online(self) -> bool:
        link = self._link
        return link is not None and link.connected.is_set() and self._announced == link.generation

    def _will(self) -> OutboundMessage:
        """Before each CONNECT: a new timestamp, the will carries it."""
        self.timestamp = max(int(time.time() * 1000), self.timestamp + 1)
        return OutboundMessage(self.topic, state_payload(False, self.timestamp), "death",
                               qos=1, retain=True)  # fmt: skip

    def start(self) -> None:
        if self._link is not None:
            return
        link = self._link = MqttLink(
            self._mqtt, self.client_id, self._will, self._password, lambda _id: None,
            on_state=self._link_state, subscriptions=((self.topic, 1),),
            on_message=self._message,
        )  # fmt: skip
        link.start()

    def _link_state(self) -> None:
        link = self._link
        if link is None or not link.connected.is_set() or self._announced == link.generation:
            return
        self._announced = link.generation
        self._send(state_payload(True, self.timestamp))
        log.info("primary host %s online (STATE timestamp %d)", self.host_id, self.timestamp)

    def _send(self, payload: bytes) -> None:
        assert self._link is not None
        self._ids -= 1
        self._link.publish(OutboundMessage(self.topic, payload, "birth", qos=1, retain=True,
                                           id=self._ids))  # fmt: skip

    def _message(self, topic: str, payload: bytes, retained: bool) -> None:
        try:
            state: dict[str, Any] = decode_state(payload)
        except SparkplugDecodeError as exc:
            self._bad.failure(str(exc), str(exc).split(":", 1)[0])
            return
        ts = state.get("timestamp")
        if state["online"] or not isinstance(ts, int) or ts <= self.timestamp:
            # another reader online, an offline a gateway ignores (older), or this
            # connection's own will (a broker shutting down sends the wills)
            return
        if not self.online or self._task is not None:
            return
        # the newest STATE says offline (another reader of this host died): say online
        # again, with a newer timestamp, hence on a new connection with a new will
        log.info("primary host %s: STATE offline from another reader (timestamp %d): "
                 "announcing online again", self.host_id, ts)  # fmt: skip
        self.reasserts += 1
        self._task = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        try:
            await self.stop(announce_offline=False)
            if self._ready():
                self.start()
        finally:
            self._task = None

    async def stop(self, announce_offline: bool = True) -> None:
        """Disconnect; ``announce_offline``: publish offline first (3.0: a host leaving
        cleanly says so with the timestamp of its birth)."""
        link, self._link = self._link, None
        if link is None:
            return
        if announce_offline and link.connected.is_set():
            self._link = link
            self._send(state_payload(False, self.timestamp))
            self._link = None
        await link.stop()
        self._announced = -1
