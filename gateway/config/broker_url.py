"""Broker addresses written as URLs: ``mqtt://host:1883``, ``mqtts://host:8883``.

Used by ``northbound.mqtt.urls`` (several brokers for failover) and by
``chenxing-ingest --broker``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://host[:port]`` or ``mqtts://host[:port]``; ValueError says what is wrong."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid broker URL {url!r}: {exc}") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError(
            f"invalid broker URL {url!r}: the scheme must be mqtt:// or mqtts:// (TLS)"
        )
    if not parts.hostname:
        raise ValueError(f"invalid broker URL {url!r}: no host name")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(
            f"invalid broker URL {url!r}: only scheme://host:port is allowed "
            "(credentials go in username/password)"
        )
    return BrokerAddress(parts.hostname, port or DEFAULT_PORTS[parts.scheme],
                         parts.scheme == "mqtts")


def _checked_url(url: str) -> str:
    parse_broker_url(url)
    return url


#: a broker URL in the config, checked where it is written (file:line of the list item)
BrokerUrl = Annotated[str, AfterValidator(_checked_url)]
