"""MqttLink's hand-over of paho's events to its handlers: in order, PUBACKs batched,
outside paho's call stack; and the link on a real Mosquitto without a network thread.

paho's callbacks are called by the test on the event loop, as paho's ``loop_read``
does; the broker path is also covered in tests/integration (test_mqtt_failover,
test_sparkplug_mqtt).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from gateway.config.models import MqttConfig
from gateway.northbound.message import OutboundMessage
from gateway.northbound.mqtt_link import MqttLink
from hil.broker import MqttBroker
from tests.waiting import until

SUCCESS = ReasonCode(PacketTypes.PUBACK, identifier=0)
QUOTA_EXCEEDED = ReasonCode(PacketTypes.PUBACK, identifier=0x97)


async def test_acks_and_state_changes_reach_the_handlers_in_order_with_few_callbacks(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[Any] = []
    link = MqttLink(MqttConfig(protocol="5"), "test", None, None, events.append,
                    lambda: events.append("state"))  # fmt: skip
    loop = asyncio.get_running_loop()
    drains = 0
    real = loop.call_soon

    def counting(callback: Any, *args: Any, **kw: Any) -> Any:
        nonlocal drains
        drains += callback == link._drain_events
        return real(callback, *args, **kw)

    monkeypatch.setattr(loop, "call_soon", counting)
    for mid in range(1, 201):
        link._mid_to_id[mid] = 1000 + mid
    conn = link._client  # the paho adapter; paho's own client inside it
    client = conn._client
    caplog.set_level(logging.ERROR, "gateway.northbound.mqtt_link")
    for mid in range(1, 101):  # one loop_read's worth of PUBACKs, a disconnect among them
        rejected_mid = mid in (7, 8, 9)  # a broker refusing messages: one line, not three
        conn._paho_publish(client, None, mid, QUOTA_EXCEEDED if rejected_mid else SUCCESS, None)
    conn._paho_disconnect(client, None, None, SUCCESS, None)
    for mid in range(101, 201):
        conn._paho_publish(client, None, mid, SUCCESS, None)
    conn._paho_publish(client, None, 999, SUCCESS, None)  # unknown mid: ignored
    assert events == []  # not inside paho's call stack
    await asyncio.sleep(0)  # exactly one loop turn, no wait: the burst is one call_soon
    assert events == [*range(1001, 1101), "state", *range(1101, 1201)]
    assert link.last_error is not None and link.last_error.startswith("disconnected")
    assert drains == 1  # one per burst, not one per PUBACK
    rejected = [r.getMessage() for r in caplog.records]
    assert rejected == ["broker rejected a message: Quota exceeded (message 1007)"]


async def test_the_link_publishes_on_the_event_loop_without_a_network_thread(
    mosquitto: MqttBroker,
) -> None:
    """Connect, 500 QoS 1 messages with up to 50 in flight, each acknowledged once, a
    clean stop; no thread of paho's (or of ours) beyond the connect worker."""
    acked: list[int] = []
    link = MqttLink(MqttConfig(host=mosquitto.host, port=mosquitto.port, protocol="5"),
                    "no-thread", None, None, acked.append)  # fmt: skip
    before = {t.name for t in threading.enumerate()}
    link.start()
    await asyncio.wait_for(link.connected.wait(), 10)
    sent = 0
    while len(acked) < 500:
        while sent < 500 and sent - len(acked) < 50:
            sent += 1
            link.publish(OutboundMessage("t/no-thread", b"x" * 1000, "data", id=sent))
        await asyncio.sleep(0.001)  # pacing the window; the loop ends on the acks, not a time
    assert sorted(acked) == list(range(1, 501))
    assert not [t for t in threading.enumerate() if t.name.startswith("paho")]
    new = {t.name for t in threading.enumerate()} - before
    assert all(name.startswith(("asyncio_", "ThreadPoolExecutor")) for name in new), new
    await link.stop()
    assert not link.connected.is_set() and link._client.socket() is None
    assert link.last_error == "disconnected: Normal disconnection"


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
        link._client._paho_publish(link._client._client, None, mid, SUCCESS, None)
    await asyncio.sleep(0)  # exactly one loop turn, no wait: the events run in one call_soon
    assert acked == [1, 3]
    assert any("failed" in r.getMessage() for r in caplog.records)


def _read_packets(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """``count`` MQTT packets (first byte, body) from a blocking socket."""
    data = b""
    packets: list[tuple[int, bytes]] = []
    while len(packets) < count:
        data += sock.recv(65536)
        while len(packets) < count and len(data) >= 2:
            length, mult, pos = 0, 1, 1
            while True:
                byte = data[pos]
                length += (byte & 127) * mult
                mult *= 128
                pos += 1
                if byte < 128:
                    break
            if len(data) < pos + length:
                break
            packets.append((data[0], data[pos : pos + length]))
            data = data[pos + length :]
    return packets


async def test_acks_in_one_receive_and_split_between_receives_are_all_read() -> None:
    """The link buffers what it receives: many PUBACKs, or many incoming messages (paho
    reads one packet per call then), in one segment are all handled although the socket
    signals them once, and a PUBACK split between two segments waits for its second half.
    The broker's end is one side of a socket pair."""
    acked: list[int] = []
    received: list[bytes] = []
    link = MqttLink(MqttConfig(), "pair", None, None, acked.append,
                    on_message=lambda topic, payload, retain: received.append(payload))  # fmt: skip
    ours, broker = socket.socketpair()
    broker.settimeout(5)
    try:
        link._client.connect_async("pair", 1883, 60)
        link._client.reconnect_with(ours)
        (connect,) = await asyncio.to_thread(_read_packets, broker, 1)
        assert connect[0] == 0x10
        broker.sendall(bytes([0x20, 2, 0, 0]))  # CONNACK, accepted
        await asyncio.wait_for(link.connected.wait(), 5)
        for message_id in range(1, 41):
            link.publish(OutboundMessage("t/pair", b"p%d" % message_id, "data", id=message_id))
        publishes = await asyncio.to_thread(_read_packets, broker, 40)
        mids = [int.from_bytes(body[2 + body[1] : 4 + body[1]], "big") for _, body in publishes]
        pubacks = b"".join(bytes([0x40, 2]) + mid.to_bytes(2, "big") for mid in mids)
        broker.sendall(pubacks[:-3])  # 39 PUBACKs and the first byte of the 40th
        await until(lambda: len(acked) >= 39, "39 PUBACKs", seen=lambda: acked)
        assert acked == list(range(1, 40))
        broker.sendall(pubacks[-3:])
        await until(lambda: len(acked) >= 40, "the split PUBACK", seen=lambda: acked)
        assert acked == list(range(1, 41))
        incoming = [b"m%d" % i for i in range(30)]  # QoS 0 PUBLISH packets, one segment
        broker.sendall(b"".join(bytes([0x30, 2 + 7 + len(p), 0, 7]) + b"t/in/ab" + p
                                for p in incoming))  # fmt: skip
        await until(lambda: len(received) >= 30, "30 messages", seen=lambda: received)
        assert received == incoming
        assert not link._client.buffered()
    finally:
        await link.stop(timeout=0.5)
        broker.close()
    assert link._client.socket() is None


async def test_a_puback_with_a_reason_code_still_goes_through_paho(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """MQTT 5: a PUBACK carrying a failure reason code is decoded by paho and logged."""
    acked: list[int] = []
    link = MqttLink(MqttConfig(protocol="5"), "pair5", None, None, acked.append)
    ours, broker = socket.socketpair()
    broker.settimeout(5)
    caplog.set_level(logging.ERROR, "gateway.northbound.mqtt_link")
    try:
        link._client.connect_async("pair", 1883, 60)
        link._client.reconnect_with(ours)
        await asyncio.to_thread(_read_packets, broker, 1)
        broker.sendall(bytes([0x20, 3, 0, 0, 0]))  # MQTT 5 CONNACK, no properties
        await asyncio.wait_for(link.connected.wait(), 5)
        link.publish(OutboundMessage("t/pair", b"x", "data", id=7))
        link.publish(OutboundMessage("t/pair", b"y", "data", id=8))
        publishes = await asyncio.to_thread(_read_packets, broker, 2)
        mids = [int.from_bytes(body[2 + body[1] : 4 + body[1]], "big") for _, body in publishes]
        broker.sendall(bytes([0x40, 3]) + mids[0].to_bytes(2, "big") + bytes([0x97])
                       + bytes([0x40, 2]) + mids[1].to_bytes(2, "big"))  # fmt: skip
        await until(lambda: len(acked) >= 2, "two PUBACKs", seen=lambda: acked)
        assert acked == [7, 8]
        assert [r.getMessage() for r in caplog.records] == [
            "broker rejected a message: Quota exceeded (message 7)"
        ]
    finally:
        await link.stop(timeout=0.5)
        broker.close()


async def test_qos0_messages_count_as_delivered_only_when_a_later_pingresp_came_back(
    mosquitto: MqttBroker,
) -> None:
    """A QoS 0 message written to the socket of a broker that dies before reading it was
    counted delivered (and left the spool): lost. Now it is delivered only once a PINGRESP
    to a later PINGREQ came back; a frozen then killed broker gets them handed back."""
    import os
    import signal

    acked: list[int] = []
    sent: list[int] = []
    taken_back: list[list[int]] = []
    link = MqttLink(MqttConfig(host=mosquitto.host, port=mosquitto.port), "qos0", None, None,
                    acked.append, on_taken_back=taken_back.append, on_sent=sent.append)
    link.start()
    try:
        await asyncio.wait_for(link.connected.wait(), 10)
        for i in range(1, 6):  # a live broker: written, then confirmed by a PINGRESP
            link.publish(OutboundMessage("t/qos0", b"x", "data", qos=0, id=i))
        await until(lambda: sorted(acked) == [1, 2, 3, 4, 5], "the PINGRESP's confirmation",
                    seen=lambda: acked)
        assert sent == [1, 2, 3, 4, 5] and taken_back == []
        pid = mosquitto.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # reads nothing from now on; the socket still takes bytes
        try:
            for i in range(6, 11):
                link.publish(OutboundMessage("t/qos0", b"y" * 100, "data", qos=0, id=i))
            # written: the old code acknowledged them here
            await until(lambda: sent[-1] == 10, "all written", seen=lambda: sent)
            assert sorted(acked) == [1, 2, 3, 4, 5]
        finally:
            mosquitto.kill()  # SIGKILL reaches a stopped process
        await until(lambda: taken_back, "the hand-back after the broker died")
        assert taken_back == [[6, 7, 8, 9, 10]]
        assert sorted(acked) == [1, 2, 3, 4, 5]  # never counted as delivered
    finally:
        await link.stop(timeout=0.5)



async def test_a_birth_the_broker_refused_is_not_sent_again_after_the_reconnect() -> None:
    """A JSON link re-sends unacknowledged QoS 1 data after a reconnect (its seq stays),
    but not a birth: the next session sends its own. A birth over the broker's packet
    limit makes Mosquitto close the connection; re-sent after every CONNACK it would end
    every session for good."""
    broker = MqttBroker(kind="mosquitto", max_packet_size=2000)
    broker.start()
    acked: list[int] = []
    link = MqttLink(MqttConfig(host=broker.host, port=broker.port, reconnect_min=0.05,
                               reconnect_max=0.1), "births", None, None, acked.append)  # fmt: skip
    try:
        link.start()
        await asyncio.wait_for(link.connected.wait(), 10)
        link.publish(OutboundMessage("t/births/birth", b"b" * 4000, "birth", retain=True, id=-1))
        await until(lambda: link.disconnects == 1, "the broker closed the connection")
        await until(lambda: link.connected.is_set(), "connected again")
        link.publish(OutboundMessage("t/births/data", b"d" * 100, "data", id=1))
        await until(lambda: 1 in acked, "the data message acknowledged")
        assert -1 not in acked and link.disconnects == 1
    finally:
        await link.stop()
        broker.close()
