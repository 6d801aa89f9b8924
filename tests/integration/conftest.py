"""Fixtures of the integration tests that several files share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hil.broker import BrokerTls, MqttBroker, find_mosquitto
from tests.integration.tls_certs import CertificateAuthority


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    ca = CertificateAuthority(tmp_path / "pki")
    return {
        "ca": ca,
        "server": ca.issue("server", "broker", server=True, hosts=("127.0.0.1", "localhost")),
        "client": ca.issue("client", "gw-test", server=False),
        "other_ca": CertificateAuthority(tmp_path / "pki-other", "some other CA"),
    }


@pytest.fixture
def tls_broker(pki: dict[str, Any]) -> Iterator[MqttBroker]:
    if find_mosquitto() is None:
        pytest.fail("Mosquitto is not installed")
    ca, server = pki["ca"], pki["server"]
    broker = MqttBroker(
        kind="mosquitto",
        tls=BrokerTls(ca.pem.cert, server.cert, server.key, require_certificate=True),
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.close()
