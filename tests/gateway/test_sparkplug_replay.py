"""Historical replay of the Sparkplug edge node without re-encoding.

Data encoded while no session is up is encoded historical and replayed as it is; data
encoded live that ends up replayed (taken back from a dropped connection) is re-encoded
historical. The MQTT link is not started: its publish is recorded and its connection
state set by hand (the broker path is covered in tests/integration/test_sparkplug_mqtt.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.northbound.message import OutboundMessage
from gateway.northbound.outbox import MemoryOutbox
from gateway.northbound.publisher import Publisher
from gateway.northbound.sparkplug import edge_node as edge_node_module
from gateway.northbound.sparkplug import wire
from gateway.northbound.sparkplug.bdseq import BdSeqStore
from gateway.northbound.sparkplug.decode import decode_payload
from gateway.northbound.sparkplug.edge_node import SparkplugEdgeNode
from gateway.northbound.sparkplug.payloads import CurrentValue, SparkplugPayloads
from gateway.tags import TagCatalog
from gateway.types import SampleBatch, now_ns
from tests.gateway.test_sparkplug_contract import make_config
from tests.waiting import until


class RecordingLink:
    """The publisher's link, recording what is published; connects and drops are made by
    the test, with the callbacks MqttLink calls."""

    def __init__(self, on_ack: Callable[[int], None], on_state: Callable[[], None],
                 on_taken_back: Callable[[list[int]], None] | None) -> None:  # fmt: skip
        self.on_ack, self.on_state, self.on_taken_back = on_ack, on_state, on_taken_back
        self.connected = asyncio.Event()
        self.generation = 0
        self.url, self.last_error, self.disconnects = "mqtt://test", None, 0
        self.sent: list[OutboundMessage] = []

    def start(self) -> None:
        pass

    def publish(self, message: OutboundMessage) -> None:
        self.sent.append(message)

    async def stop(self) -> None:
        self.connected.clear()


class Node:
    """An edge node (the Sparkplug contract in the one publisher) whose link records what
    it publishes."""

    def __init__(self, tmp: Path) -> None:
        config = make_config(data_qos=1)
        catalog = TagCatalog(config.devices)
        self.contract = SparkplugPayloads(config, catalog, "9.9.9")
        self.catalog = catalog
        self.outbox = MemoryOutbox(1000)
        states = lambda: dict.fromkeys(catalog.devices(), "up")  # noqa: E731
        self.edge = SparkplugEdgeNode(config, self.contract, BdSeqStore(tmp / "bdseq.json"),
                                      states, lambda tag: CurrentValue(None, None, 0), None)
        links: list[RecordingLink] = []

        def factory(cfg, client_id, will, password, on_ack, on_state, subscriptions,  # type: ignore[no-untyped-def]
                    on_message, on_taken_back, *rest):
            links.append(RecordingLink(on_ack, on_state, on_taken_back))
            return links[-1]

        self.nb = Publisher(config.northbound, catalog, self.edge, self.outbox, "test", None,
                            states, link_factory=factory)
        (self.link,) = links
        self.sent = self.link.sent
        self.task = asyncio.create_task(self.nb.run())

    def meter_batch(self, value: float) -> SampleBatch:
        ids = [t.id for t in self.catalog.tags if t.device == "meter2"]
        return SampleBatch.of(np.array(ids), np.full(len(ids), value), now_ns())

    async def connect(self) -> None:
        self.edge.will()  # as before a CONNECT
        self.link.generation += 1
        self.link.connected.set()
        self.link.on_state()
        await self.sent_all()

    async def disconnect(self, in_flight: list[int]) -> None:
        """The link drops; the client's unacknowledged messages are taken back."""
        assert self.link.on_taken_back is not None  # the Sparkplug contract asks for it
        self.link.on_taken_back(in_flight)
        self.link.connected.clear()
        self.link.on_state()
        await self.sent_all()

    async def flush_data(self, value: float) -> None:
        """Submit a batch of meter2 and flush it; the sender runs."""
        self.nb.submit(self.meter_batch(value))
        self.nb.flush()
        await self.sent_all()

    async def sent_all(self) -> None:
        """The sender has made its pass over what it was woken for: it clears the wake-up
        first and then sends without awaiting anything."""
        await until(lambda: not self.nb._wake.is_set(), "the sender's pass")

    def data_sent(self) -> list[OutboundMessage]:
        return [m for m in self.sent if "/DDATA/" in m.topic]

    async def close(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    n = Node(tmp_path)
    yield n
    await n.close()


def all_historical(payload: bytes) -> bool:
    metrics = decode_payload(payload)["metrics"]
    return bool(metrics) and all(m["is_historical"] for m in metrics)


@pytest.fixture
def reencodes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Payloads the edge node re-encodes as historical."""
    calls: list[bytes] = []

    def spy(payload: bytes) -> bytes:
        calls.append(payload)
        return wire.as_historical(payload)

    monkeypatch.setattr(edge_node_module, "as_historical", spy)
    return calls


async def test_data_encoded_without_a_session_is_historical_and_replayed_as_is(
    node: Node, reencodes: list[bytes]
) -> None:
    node.nb.submit(node.meter_batch(1.5))
    node.nb.flush()  # no connection: this can only go out as replay
    (stored,) = list(node.outbox._live.values())
    assert all_historical(stored.payload)
    stored_payload = stored.payload

    await node.connect()
    assert [m.topic.split("/")[2] for m in node.sent] == ["NBIRTH", "DBIRTH", "DBIRTH",
                                                          "DDATA"]  # fmt: skip
    (replayed,) = node.data_sent()
    assert reencodes == []  # not decoded and re-encoded
    seq = decode_payload(replayed.payload)["seq"]
    assert seq == 3
    assert replayed.payload == wire.with_seq(stored_payload, seq)
    assert node.edge.counters.historical_messages == 1
    assert node.edge.counters.historical_reencoded == 0

    await node.flush_data(2.5)  # within the session: live
    assert len(node.data_sent()) == 2
    live = node.data_sent()[-1]
    assert not decode_payload(live.payload)["metrics"][0]["is_historical"]
    assert reencodes == []


async def test_live_data_replayed_after_a_drop_is_re_encoded_historical(
    node: Node, reencodes: list[bytes]
) -> None:
    await node.connect()
    await node.flush_data(7.0)
    (live,) = node.data_sent()
    assert not any(m["is_historical"] for m in decode_payload(live.payload)["metrics"])

    await node.disconnect([live.id])  # in flight when the connection dropped
    node.nb.submit(node.meter_batch(8.0))
    node.nb.flush()  # while down: encoded historical
    await node.connect()

    replayed = node.data_sent()[1:]
    assert len(replayed) == 2
    assert all(all_historical(m.payload) for m in replayed)
    values = [decode_payload(m.payload)["metrics"][0]["value"] for m in replayed]
    assert values == [7.0, 8.0]  # in order, the taken back one first
    assert len(reencodes) == 1  # only the live-encoded one
    assert decode_payload(reencodes[0])["metrics"][0]["value"] == 7.0
    assert node.edge.counters.historical_messages == 2
    assert node.edge.counters.historical_reencoded == 1


async def test_data_of_a_device_that_died_since_goes_historical(
    node: Node, reencodes: list[bytes]
) -> None:
    await node.connect()
    node.nb.submit(node.meter_batch(3.0))
    node.outbox.put_many(node.nb._encode())  # encoded live, not yet sent
    node.edge._born_devices.discard("meter2")  # the device died meanwhile (its DDEATH)
    node.nb.wake()
    await node.sent_all()
    (sent,) = node.data_sent()
    assert all_historical(sent.payload)
    assert len(reencodes) == 1


def test_with_payload_keeps_every_other_field() -> None:
    values: dict[str, Any] = {
        "topic": "t", "payload": b"p", "kind": "cmd-result", "qos": 0, "retain": True,
        "samples": 3, "oldest_ns": 4, "id": 5, "seq": 6,
    }  # fmt: skip
    assert set(values) == {f.name for f in dataclasses.fields(OutboundMessage)}
    message = OutboundMessage(**values)
    copy = message.with_payload(b"q")
    assert copy == dataclasses.replace(message, payload=b"q")
    assert message.payload == b"p"


def test_is_historical_reads_the_first_metric() -> None:
    contract = SparkplugPayloads(make_config(), TagCatalog(make_config().devices), "9.9.9")
    batch = SampleBatch.of(np.arange(3), np.array([1.0, 2.0, 3.0]), now_ns())
    (live,) = contract.data(batch, now_ns(), 100)
    (old,) = contract.data(batch, now_ns(), 100, historical=True)
    assert not wire.is_historical(live.payload)
    assert not wire.is_historical(wire.with_seq(live.payload, 200))
    assert wire.is_historical(old.payload)
    assert wire.is_historical(wire.with_seq(old.payload, 7))
    assert wire.is_historical(wire.as_historical(live.payload))
    assert all_historical(old.payload)
    assert decode_payload(old.payload)["metrics"] == decode_payload(
        wire.as_historical(live.payload))["metrics"]  # fmt: skip
    assert wire.is_historical(contract.ddeath("meter", now_ns()).payload)  # no metrics
    for garbage in (b"\xff", b"\x12\x40abc", b"\x0b"):
        with pytest.raises(ValueError):
            wire.is_historical(garbage)


async def test_damaged_spooled_messages_go_out_as_they_are_with_one_error_line(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    """A disk fault can damage every spooled payload: each is sent as it is (not lost),
    counted, and the log gets the first failure, not one traceback per message."""
    caplog.set_level(logging.INFO, "gateway.northbound.sparkplug.edge_node")
    topic = node.contract.device_topic("DDATA", "meter2")
    for _ in range(10):  # a payload that does not parse (the replay's first burst: 10)
        node.outbox.put(OutboundMessage(topic, b"\xff\xff\xff", "data", samples=1))
    await node.connect()
    assert len(node.data_sent()) == 10
    assert node.edge.counters.historical_reencoded == 10
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    (record,) = errors  # before: 10 ERRORs with a traceback each
    assert record.levelno == logging.ERROR and record.exc_info is None
    assert record.getMessage().startswith("spooled message could not be marked historical: ")
