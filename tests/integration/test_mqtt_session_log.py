"""Every reason the broker session is down reaches the log: one WARNING per outage and
reason, in the words /healthz shows, however often the gateway retries; the connect that
ends the outage at INFO. Real Mosquitto (TLS with certificates made for the test), real
refusing, closing and silent peers on loopback."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hil.broker import MqttBroker
from tests.integration.gateway_harness import RunningGateway, gateway_config, meter_device, running
from tests.integration.test_mqtt_tls import health

pytestmark = pytest.mark.broker

LINK_LOGGER = "gateway.northbound.mqtt_link"
#: connection attempts each test waits for while the reason stays the same
ATTEMPTS = 5


def link_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == LINK_LOGGER and r.levelno >= logging.WARNING]


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def gateway_to(tmp_path: Path, port: int, **mqtt: Any) -> Any:
    # no enabled device: nothing to drain at shutdown while the broker is out of reach
    device = meter_device("meter", 1, enabled=False)
    return gateway_config(tmp_path, port, [device],
                          mqtt={"host": "127.0.0.1", "port": port, "reconnect_min": 0.05,
                                "reconnect_max": 0.2, **mqtt})  # fmt: skip


async def retrying(gw: RunningGateway) -> dict[str, Any]:
    """Waits for ATTEMPTS failed attempts; the broker part of /healthz then."""
    nb = gw.gateway.northbound
    assert nb is not None
    assert await until(lambda: nb.link.failed_attempts >= ATTEMPTS), nb.link.last_error
    body = await health(gw.gateway.http_port or 0)
    assert body["broker"]["connected"] is False
    return body["broker"]  # type: ignore[no-any-return]


def client_tls(pki: dict[str, Any], certificate: bool = True) -> dict[str, str]:
    tls = {"ca": str(pki["ca"].pem.cert)}
    if certificate:
        tls |= {"certificate": str(pki["client"].cert), "key": str(pki["client"].key)}
    return tls


@pytest.mark.parametrize("case", ["no client certificate", "wrong CA"])
async def test_a_tls_failure_is_one_warning_while_the_gateway_keeps_retrying(
    tmp_path: Path, tls_broker: MqttBroker, pki: dict[str, Any],
    caplog: pytest.LogCaptureFixture, case: str,
) -> None:
    caplog.set_level(logging.INFO)
    if case == "no client certificate":  # the broker requires one: a TLS alert after the
        tls, expected = client_tls(pki, certificate=False), "certificate required"  # handshake
    else:
        tls = client_tls(pki) | {"ca": str(pki["other_ca"].pem.cert)}
        expected = "certificate was not accepted"
    async with running(gateway_to(tmp_path, tls_broker.port, tls=tls)) as gw:
        broker = await retrying(gw)
    (warning,) = link_warnings(caplog)
    assert warning == f"MQTT {broker['url']}: {broker['last_error']}"
    assert expected in warning.lower() or expected in warning
    assert "northbound.mqtt.tls" in warning  # where to look


async def test_refused_then_the_broker_comes_up_is_one_warning_and_one_info(
    tmp_path: Path, tls_broker: MqttBroker, pki: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    tls_broker.stop()
    async with running(gateway_to(tmp_path, tls_broker.port, tls=client_tls(pki))) as gw:
        broker = await retrying(gw)
        assert "connection refused" in broker["last_error"]
        tls_broker.start()
        nb = gw.gateway.northbound
        assert nb is not None
        assert await until(nb.link.connected.is_set)
    (warning,) = link_warnings(caplog)
    assert warning == f"MQTT {broker['url']}: {broker['last_error']}"
    (connected,) = [r for r in caplog.records
                    if r.name == LINK_LOGGER and "MQTT connected to" in r.getMessage()]
    assert connected.levelno == logging.INFO
    found = re.fullmatch(rf"MQTT connected to {broker['url']} \(after (\d+) failed attempts\)",
                         connected.getMessage())
    assert found is not None and int(found.group(1)) >= ATTEMPTS


@pytest.fixture
def closed_broker() -> Iterator[MqttBroker]:
    broker = MqttBroker(kind="mosquitto", allow_anonymous=False)
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


async def test_a_connack_refusal_is_one_warning_not_one_per_attempt(
    tmp_path: Path, closed_broker: MqttBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running(gateway_to(tmp_path, closed_broker.port)) as gw:
        broker = await retrying(gw)
    (warning,) = link_warnings(caplog)
    assert warning == f"MQTT {broker['url']}: {broker['last_error']}"
    assert "connection refused by broker: Not authorized" in warning


@pytest.fixture
async def rude_peer() -> AsyncIterator[dict[str, Any]]:
    """Two TCP listeners: one closes every connection after reading the CONNECT (a broker
    dropping a client it does not want), one never says a word."""
    silent: list[asyncio.StreamWriter] = []

    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)  # read first: a close with unread bytes would be a reset
        writer.close()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.append(writer)

    closing = await asyncio.start_server(close, "127.0.0.1", 0)
    quiet = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield {"closing": _port(closing), "silent": _port(quiet)}
    finally:
        for writer in silent:
            writer.close()
        closing.close()
        quiet.close()


def _port(server: asyncio.Server) -> int:
    sock: socket.socket = server.sockets[0]
    return int(sock.getsockname()[1])


@pytest.mark.parametrize(("peer", "expected"), [
    ("closing", "disconnected: the connection was closed (by the broker or the network)"),
    ("silent", "disconnected: Keep alive timeout"),
])
async def test_a_peer_that_closes_or_stays_silent_is_one_warning(
    tmp_path: Path, rude_peer: dict[str, int], caplog: pytest.LogCaptureFixture,
    peer: str, expected: str,
) -> None:
    caplog.set_level(logging.INFO)
    config = gateway_to(tmp_path, rude_peer[peer], keepalive=1.0)
    async with running(config) as gw:
        broker = await retrying(gw) if peer == "closing" else await _retrying_slowly(gw)
    (warning,) = link_warnings(caplog)
    assert warning == f"MQTT {broker['url']}: {expected}"
    assert broker["last_error"] == expected


async def _retrying_slowly(gw: RunningGateway) -> dict[str, Any]:
    """Two keep-alive timeouts (a second each) are enough to see a repeat."""
    nb = gw.gateway.northbound
    assert nb is not None
    assert await until(lambda: nb.link.failed_attempts >= 2), nb.link.last_error
    body = await health(gw.gateway.http_port or 0)
    return body["broker"]  # type: ignore[no-any-return]
