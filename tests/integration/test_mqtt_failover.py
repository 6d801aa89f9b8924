"""Broker failover (``northbound.mqtt.urls``): the first broker stops, data goes on through
the second with no sequence number lost; the current broker shows in /metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.config.broker_url import BrokerAddress, parse_broker_url
from gateway.config.loader import load_config_text
from gateway.errors import ConfigError
from gateway.metrics import render
from gateway.northbound.broker_rotation import BrokerRotation
from gateway.runtime.gateway import Gateway
from hil.broker import MqttBroker
from hil.recorder import TelemetryRecorder
from tests.integration.gateway_harness import gateway_config, meter_device, running

A = BrokerAddress("a", 1883, False)
B = BrokerAddress("b", 8883, True)


def test_rotation_stays_on_a_working_broker_and_moves_on_after_a_failed_retry() -> None:
    r = BrokerRotation([A, B])
    assert r.next_attempt() == A  # first attempt: the first broker
    r.connected()
    assert r.next_attempt() == A  # lost: one more try on the same broker
    assert r.next_attempt() == B  # that failed too: the next one
    assert r.next_attempt() == A  # never reached B: wrap around
    assert r.next_attempt() == B
    r.connected()
    assert r.next_attempt() == B


def test_broker_urls_parse_and_bad_ones_say_why() -> None:
    assert parse_broker_url("mqtts://broker.plant:8884") == BrokerAddress(
        "broker.plant", 8884, True
    )
    assert parse_broker_url("mqtt://10.0.0.5").port == 1883
    assert parse_broker_url("mqtts://[::1]").url == "mqtts://[::1]:8883"
    for bad, why in [("http://x:1883", "scheme"), ("mqtt://:1883", "host"),
                     ("mqtt://x:99999", "invalid"), ("mqtt://u:p@x", "only scheme")]:  # fmt: skip
        with pytest.raises(ValueError, match=why):
            parse_broker_url(bad)


def test_config_urls_errors_name_the_item_and_exclude_host(tmp_path: Path) -> None:
    base = (
        "gateway: {id: gw, site: s, line: l}\n"
        "devices: [{name: m, protocol: modbus_tcp, host: 127.0.0.1, tags: "
        "[{name: t, address: 0, type: uint16}]}]\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config_text(
            base + "northbound:\n  mqtt:\n    urls: [mqtt://a:1883, ftp://b]\n", "g.yaml", tmp_path
        )
    assert "urls.1" in str(err.value) or "urls[1]" in str(err.value), str(err.value)
    assert "mqtt:// or mqtts://" in str(err.value)
    with pytest.raises(ConfigError, match="either urls"):
        load_config_text(
            base + "northbound:\n  mqtt:\n    host: x\n    urls: [mqtt://a]\n", "g.yaml", tmp_path
        )
    ok = load_config_text(
        base + "northbound:\n  mqtt:\n    urls: [mqtts://a, mqtt://b:1884]\n", "g.yaml", tmp_path
    )
    assert [b.url for b in ok.northbound.mqtt.brokers()] == ["mqtts://a:8883", "mqtt://b:1884"]


def metrics(gateway: Gateway) -> str:
    """What GET /metrics would answer (the local API itself is off in this test)."""
    return render(gateway).decode()


@pytest.mark.broker
async def test_first_broker_stops_data_continues_through_the_second_without_loss(
    tmp_path: Path, waveform_meter
) -> None:
    with MqttBroker(kind="mosquitto") as first, MqttBroker(kind="mosquitto") as second:
        rec_first = TelemetryRecorder(first.host, first.port, client_id="brain-a").start()
        rec_second = TelemetryRecorder(second.host, second.port, client_id="brain-b").start()
        mqtt = {"urls": [f"mqtt://127.0.0.1:{first.port}", f"mqtt://127.0.0.1:{second.port}"],
                "reconnect_min": 0.2, "reconnect_max": 1.0}  # fmt: skip
        config = gateway_config(
            tmp_path, 0, [meter_device("meter", waveform_meter.port)], mqtt=mqtt,
            http={"enabled": False},
        )
        try:
            async with running(config) as gw:
                assert await rec_first.until(lambda s: len(s.data_messages) >= 5, timeout=20)
                assert f'chenxing_mqtt_broker_info{{url="mqtt://127.0.0.1:{first.port}"}} 1.0' in (
                    metrics(gw.gateway)
                )
                await asyncio.to_thread(first.stop)
                assert await rec_second.until(
                    lambda s: len(s.births) >= 1 and len(s.data_messages) >= 10, timeout=30
                )
                text = metrics(gw.gateway)
                second_url = f"mqtt://127.0.0.1:{second.port}"
                assert f'chenxing_mqtt_broker_info{{url="{second_url}"}} 1.0' in text
                assert "chenxing_mqtt_broker_switches_total 1.0" in text
                report = await gw.stop()
                assert report.drained
        finally:
            rec_first.stop()
            rec_second.stop()
    seqs = {m["seq"] for m in rec_first.snapshot().data_messages}
    seqs |= {m["seq"] for m in rec_second.snapshot().data_messages}
    missing = sorted(set(range(min(seqs), max(seqs) + 1)) - seqs)
    assert not missing, f"lost seq {missing[:20]}"
    assert min(seqs) == 0
