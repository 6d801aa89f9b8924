"""TLS and mutual TLS to a real Mosquitto, with certificates made for the test."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from hil.broker import BrokerTls, MqttBroker
from tests.integration.gateway_harness import gateway_config, meter_device, running
from tests.waiting import until

pytestmark = pytest.mark.broker


def _health(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as err:
        return json.loads(err.read())  # type: ignore[no-any-return]


async def health(port: int) -> dict[str, Any]:
    """/healthz, from a thread: the gateway serves it on this event loop."""
    return await asyncio.to_thread(_health, port)


async def test_mutual_tls_publishes_and_verifies(
    tmp_path: Path, tls_broker: MqttBroker, pki: dict[str, Any], waveform_meter: Any
) -> None:
    tls = {"ca": str(pki["ca"].pem.cert), "certificate": str(pki["client"].cert),
           "key": str(pki["client"].key)}
    config = gateway_config(tmp_path, tls_broker.port, [meter_device("meter", waveform_meter.port)],
                            mqtt={"host": "127.0.0.1", "port": tls_broker.port, "tls": tls,
                                  "reconnect_min": 0.2, "reconnect_max": 1.0})
    async with running(config) as gw:
        nb = gw.gateway.northbound
        assert nb is not None
        await until(lambda: nb.counters.samples_published > 0,
                    "births and data acknowledged by the broker over mutual TLS", timeout=15)
        body = await health(gw.gateway.http_port or 0)
        assert body["broker"]["connected"] is True
        assert body["broker"]["url"].startswith("mqtts://")


@pytest.mark.parametrize("case", ["wrong CA", "wrong host name", "no client certificate"])
async def test_tls_failures_are_reported_in_healthz(
    tmp_path: Path, tls_broker: MqttBroker, pki: dict[str, Any], case: str
) -> None:
    tls: dict[str, Any] = {"ca": str(pki["ca"].pem.cert), "certificate": str(pki["client"].cert),
                           "key": str(pki["client"].key)}
    host, expected = "127.0.0.1", "certificate was not accepted"
    if case == "wrong CA":
        tls["ca"] = str(pki["other_ca"].pem.cert)
    elif case == "wrong host name":
        # a broker certificate signed by the right CA, for another host name
        wrong = pki["ca"].issue("server2", "broker", server=True, hosts=("broker.example",))
        tls_broker.stop()
        tls_broker.tls = BrokerTls(pki["ca"].pem.cert, wrong.cert, wrong.key, True)
        tls_broker.start()
        expected = "mismatch"
    else:
        del tls["certificate"], tls["key"]
        expected = "TLS"
    # no enabled device: nothing to drain at shutdown while the broker is out of reach
    device = meter_device("meter", 1, enabled=False)
    config = gateway_config(tmp_path, tls_broker.port, [device],
                            mqtt={"host": host, "port": tls_broker.port, "tls": tls,
                                  "reconnect_min": 0.2, "reconnect_max": 1.0})
    async with running(config) as gw:
        port = gw.gateway.http_port or 0
        async def reported() -> bool:
            return expected in ((await health(port))["broker"]["last_error"] or "")

        await until(reported, f"healthz says {expected!r}", timeout=15)
        body = await health(port)
        assert body["broker"]["connected"] is False
        assert gw.gateway.northbound is not None
        assert gw.gateway.northbound.counters.messages_published == 0
