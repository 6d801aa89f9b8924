"""``chenxing-ingest`` to a Mosquitto that requires mutual TLS, as the gateway does
(``tls: {ca, certificate, key}``): data and the primary host's STATE connection both use
it."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hil.broker import MqttBroker
from tests.brain_reader.helpers import ingest_config, json_data, running_reader, until
from tests.integration.conftest import pki, tls_broker  # noqa: F401 (fixtures)

pytestmark = pytest.mark.broker


class TlsPublisher:
    def __init__(self, broker: MqttBroker, pki: dict[str, Any]) -> None:  # noqa: F811
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tls-publisher")
        self.client.tls_set(str(pki["ca"].pem.cert), str(pki["client"].cert),
                            str(pki["client"].key), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.states: list[dict[str, Any]] = []
        self.client.on_message = lambda c, u, m: self.states.append(json.loads(m.payload))
        self.client.connect(broker.host, broker.port)
        self.client.subscribe("spBv1.0/STATE/brain", 1)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def test_the_reader_and_its_primary_host_connect_with_mutual_tls(
    tls_broker: MqttBroker, pki: dict[str, Any], tmp_path: Path  # noqa: F811
) -> None:
    tls = {"ca": str(pki["ca"].pem.cert), "certificate": str(pki["client"].cert),
           "key": str(pki["client"].key)}  # fmt: skip
    url = f"mqtts://127.0.0.1:{tls_broker.port}"
    config = ingest_config(tls_broker, None, brokers=[url], tls=tls, primary_host_id="brain")
    pub = TlsPublisher(tls_broker, pki)
    try:
        async with running_reader(config) as reader:
            assert await until(lambda: any(s["online"] for s in pub.states), timeout=10)
            for seq in range(3):
                pub.client.publish(*json_data(seq), qos=1).wait_for_publish(5)
            assert await until(lambda: reader.counters.data_messages == 3, timeout=10)
            counters = await reader.stop()
    finally:
        pub.close()
    assert counters.points == 3
    assert not pub.states[-1]["online"]  # it said offline when it left


async def test_without_a_client_certificate_it_does_not_get_in(
    tls_broker: MqttBroker, pki: dict[str, Any]  # noqa: F811
) -> None:
    url = f"mqtts://127.0.0.1:{tls_broker.port}"
    config = ingest_config(tls_broker, None, brokers=[url], tls={"ca": str(pki["ca"].pem.cert)})
    async with _no_connect(config) as link:
        assert await until(lambda: link.failed_attempts >= 2, timeout=15), link.last_error
        assert not link.connected.is_set()


class _no_connect:
    """The reader running without waiting for a connection (there will be none)."""

    def __init__(self, config: Any) -> None:
        import asyncio

        from brain_reader.reader import IngestReader

        self.stop = asyncio.Event()
        self.reader = IngestReader(config)
        self.task: Any = None

    async def __aenter__(self) -> Any:
        import asyncio

        self.task = asyncio.create_task(self.reader.run(self.stop, 1.0))
        assert await until(lambda: self.reader.link is not None, timeout=5)
        return self.reader.link

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await self.task
