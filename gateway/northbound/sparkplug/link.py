"""The MQTT link of a Sparkplug Edge Node: a fresh NDEATH will for every CONNECT.

Two things differ from the JSON contract's link, both done in paho's
``on_pre_connect`` (before each CONNECT packet is built):

- the will is the NDEATH carrying the bdSeq of this CONNECT;
- QoS 1 messages paho still holds from the previous connection are taken back
  instead of being retransmitted: their ``seq`` belongs to the dead session, and a
  host ignores data that precedes the new NBIRTH. The edge node returns them to the
  outbox, which replays them (historical, with a new ``seq``) after the births.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import paho.mqtt.client as mqtt

from gateway.config.models import MqttConfig
from gateway.northbound.message import OutboundMessage
from gateway.northbound.mqtt_link import MqttLink

log = logging.getLogger(__name__)


class SparkplugLink(MqttLink):
    def __init__(
        self,
        config: MqttConfig,
        client_id: str,
        password: str | None,
        on_ack: Callable[[int], None],
        on_state: Callable[[], None],
        subscriptions: tuple[tuple[str, int], ...],
        on_message: Callable[[str, bytes, bool], None],
        will_for_connect: Callable[[], tuple[int, OutboundMessage]],
        on_connect_bdseq: Callable[[int], None],
        on_taken_back: Callable[[list[int]], None],
    ) -> None:
        """``will_for_connect()`` -> (bdSeq, NDEATH) is called before each CONNECT;
        ``on_connect_bdseq(bdseq)`` and ``on_taken_back(message ids)`` after it, before
        the connect is reported."""
        super().__init__(config, client_id, None, password, on_ack, on_state, subscriptions,
                         on_message)  # fmt: skip
        self._will_for_connect = will_for_connect
        self._on_connect_bdseq = on_connect_bdseq
        self._on_taken_back = on_taken_back
        self._client.on_pre_connect = self._paho_pre_connect
        self.bdseq: int | None = None

    def _paho_pre_connect(self, client: mqtt.Client, userdata: object) -> None:
        bdseq, will = self._will_for_connect()
        client.will_set(will.topic, will.payload, will.qos, will.retain)
        with client._out_message_mutex:  # type: ignore[attr-defined]
            mids = list(client._out_messages)  # type: ignore[attr-defined]
            client._out_messages.clear()  # type: ignore[attr-defined]
            client._inflight_messages = 0  # type: ignore[attr-defined]
        self._post(self._pre_connect, bdseq, mids)

    def _pre_connect(self, bdseq: int, mids: list[int]) -> None:
        self.bdseq = bdseq
        ids = [i for i in (self._mid_to_id.pop(mid, None) for mid in mids) if i is not None]
        # acks of the old connection can no longer come
        self._mid_to_id.clear()
        if ids:
            log.info("%d unacknowledged messages taken back for replay after the births", len(ids))
            self._on_taken_back(ids)

    def _connected(self, failed: bool, reason: str) -> None:
        if not failed and self.bdseq is not None:
            self._on_connect_bdseq(self.bdseq)
        super()._connected(failed, reason)
