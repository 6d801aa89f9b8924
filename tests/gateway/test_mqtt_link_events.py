"""MqttLink's hand-over of paho's events to the event loop: in order, PUBACKs batched.

paho's callbacks are called from a thread of the test, as paho's network thread would;
the broker path is covered in tests/integration (test_mqtt_failover, test_sparkplug_mqtt).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from gateway.config.models import MqttConfig
from gateway.northbound.mqtt_link import MqttLink

SUCCESS = ReasonCode(PacketTypes.PUBACK, identifier=0)
QUOTA_EXCEEDED = ReasonCode(PacketTypes.PUBACK, identifier=0x97)


async def test_acks_and_state_changes_reach_the_loop_in_order_with_few_wakeups(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[Any] = []
    link = MqttLink(MqttConfig(protocol="5"), "test", None, None, events.append,
                    lambda: events.append("state"))  # fmt: skip
    loop = asyncio.get_running_loop()
    wakeups = 0
    real = loop.call_soon_threadsafe

    def counting(*args: Any) -> Any:
        nonlocal wakeups
        wakeups += 1
        return real(*args)

    monkeypatch.setattr(loop, "call_soon_threadsafe", counting)
    for mid in range(1, 201):
        link._mid_to_id[mid] = 1000 + mid
    client = link._client

    def paho_thread() -> None:
        for mid in range(1, 101):
            link._paho_publish(client, None, mid, QUOTA_EXCEEDED if mid == 7 else SUCCESS, None)
        link._paho_disconnect(client, None, None, SUCCESS, None)
        for mid in range(101, 201):
            link._paho_publish(client, None, mid, SUCCESS, None)
        link._paho_publish(client, None, 999, SUCCESS, None)  # unknown mid: ignored

    caplog.set_level(logging.ERROR, "gateway.northbound.mqtt_link")
    thread = threading.Thread(target=paho_thread)
    thread.start()
    await asyncio.to_thread(thread.join)
    for _ in range(5):
        await asyncio.sleep(0)
    assert events == [*range(1001, 1101), "state", *range(1101, 1201)]
    assert link.last_error is not None and link.last_error.startswith("disconnected")
    assert 1 <= wakeups < 20  # one per burst, not one per PUBACK
    rejected = [r.getMessage() for r in caplog.records]
    assert rejected == ["broker rejected message 1007: Quota exceeded"]


async def test_a_failing_callback_does_not_stop_the_events_after_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    acked: list[int] = []

    def on_ack(message_id: int) -> None:
        if message_id == 2:
            raise RuntimeError("boom")
        acked.append(message_id)

    link = MqttLink(MqttConfig(), "test", None, None, on_ack)
    link._mid_to_id.update({1: 1, 2: 2, 3: 3})
    for mid in (1, 2, 3):
        link._paho_publish(link._client, None, mid, SUCCESS, None)
    await asyncio.sleep(0)
    assert acked == [1, 3]
    assert any("failed" in r.getMessage() for r in caplog.records)
