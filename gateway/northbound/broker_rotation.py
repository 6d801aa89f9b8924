"""Which broker the next MQTT connection attempt goes to (``northbound.mqtt.urls``).

The policy: start with the first; stay on a broker while it works; when the
connection to it is lost, try it once more after the backoff delay, and when that
attempt fails too, move on to the next one (wrapping around). An attempt that
never reached the broker moves on straight away. Called by the link on the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.config.broker_url import BrokerAddress


class BrokerRotation:
    def __init__(self, brokers: Sequence[BrokerAddress]) -> None:
        if not brokers:
            raise ValueError("at least one broker is needed")
        self.brokers = tuple(brokers)
        self._index = 0
        self._started = False
        self._reached = False  # the last attempt got a CONNACK

    @property
    def current(self) -> BrokerAddress:
        return self.brokers[self._index]

    def next_attempt(self) -> BrokerAddress:
        """The broker for the attempt about to start."""
        if self._started and not self._reached:
            self._index = (self._index + 1) % len(self.brokers)
        self._started = True
        self._reached = False
        return self.current

    def connected(self) -> None:
        """The current attempt was accepted by the broker."""
        self._reached = True
