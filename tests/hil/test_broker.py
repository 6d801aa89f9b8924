"""The broker launcher: real Mosquitto, and the amqtt fallback, with paho-mqtt clients."""

from __future__ import annotations

import queue
import socket
import threading
import uuid
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hil.broker import MqttBroker, find_mosquitto, mqtt_ping
from hil.netutil import port_is_open


def _require_mosquitto() -> None:
    """Mosquitto is part of the test set-up (scripts/bootstrap.sh): missing is a failure."""
    if find_mosquitto() is None:
        pytest.fail("Mosquitto is not installed: run scripts/bootstrap.sh as root")


needs_mosquitto = pytest.mark.usefixtures("mosquitto_installed")


@pytest.fixture
def mosquitto_installed() -> None:
    _require_mosquitto()


class Client:
    """A paho 2.x client with a background loop and a queue of received messages."""

    def __init__(self, broker: MqttBroker, client_id: str | None = None, *, clean: bool = True):
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.paho = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"t-{uuid.uuid4().hex[:8]}",
            clean_session=clean,
        )
        self.paho.on_connect = lambda *_a: self.connected.set()
        self.paho.on_subscribe = lambda *_a: self.subscribed.set()
        self.paho.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.paho.connect(broker.host, broker.port, keepalive=10)
        self.paho.loop_start()
        assert self.connected.wait(5), "no CONNACK"

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self.subscribed.clear()
        self.paho.subscribe(topic, qos=qos)
        assert self.subscribed.wait(5), "no SUBACK"

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        info = self.paho.publish(topic, payload, qos=qos)
        info.wait_for_publish(5)
        assert info.is_published()  # QoS 1: PUBACK received

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


def round_trip(broker: MqttBroker, topic: str = "chenxing/test/meter") -> None:
    sub, pub = Client(broker), Client(broker)
    try:
        sub.subscribe("chenxing/test/#")
        payload = uuid.uuid4().bytes
        pub.publish(topic, payload)
        msg = sub.messages.get(timeout=5)
        assert (msg.topic, msg.payload, msg.qos) == (topic, payload, 1)
    finally:
        sub.close()
        pub.close()


@pytest.fixture
def mosquitto() -> Iterator[MqttBroker]:
    with MqttBroker(kind="mosquitto") as broker:
        yield broker


@pytest.mark.broker
@needs_mosquitto
def test_mosquitto_round_trip_qos1(mosquitto: MqttBroker) -> None:
    assert mosquitto.kind == "mosquitto"
    assert mosquitto.host == "127.0.0.1"
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"
    config = mosquitto.config_path.read_text()
    assert f"listener {mosquitto.port} 127.0.0.1" in config
    assert "allow_anonymous true" in config
    assert "persistence false" in config
    round_trip(mosquitto)
    assert "running" in mosquitto.log_path.read_text()


@pytest.mark.broker
@needs_mosquitto
def test_mosquitto_stop_then_start_on_the_same_port(mosquitto: MqttBroker) -> None:
    port, pid = mosquitto.port, mosquitto.pid
    mosquitto.stop()
    assert not mosquitto.running
    assert not port_is_open("127.0.0.1", port)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    mosquitto.start()
    assert mosquitto.port == port
    assert mosquitto.pid != pid
    round_trip(mosquitto)


@pytest.mark.broker
@needs_mosquitto
def test_mosquitto_restart_disconnects_and_client_reconnects(mosquitto: MqttBroker) -> None:
    client = Client(mosquitto)
    disconnected = threading.Event()
    client.paho.on_disconnect = lambda *_a: disconnected.set()
    client.connected.clear()
    try:
        port = mosquitto.port
        mosquitto.restart()
        assert mosquitto.port == port
        assert disconnected.wait(5)
        assert client.connected.wait(10), "paho did not reconnect after the restart"
    finally:
        client.close()
    round_trip(mosquitto)


@pytest.mark.broker
@needs_mosquitto
def test_mosquitto_kill_and_start(mosquitto: MqttBroker) -> None:
    mosquitto.kill()
    assert not mosquitto.running
    assert not port_is_open("127.0.0.1", mosquitto.port)
    mosquitto.start()
    round_trip(mosquitto)


@pytest.mark.broker
@needs_mosquitto
def test_mosquitto_persistence_keeps_queued_messages_across_restart() -> None:
    with MqttBroker(kind="mosquitto", persistence=True) as broker:
        sub = Client(broker, "persistent-sub", clean=False)
        sub.subscribe("chenxing/persist", qos=1)
        sub.close()
        pub = Client(broker)
        pub.publish("chenxing/persist", b"queued while away")
        pub.close()
        broker.restart()
        sub = Client(broker, "persistent-sub", clean=False)
        try:
            msg = sub.messages.get(timeout=5)
            assert msg.payload == b"queued while away"
        finally:
            sub.close()


@pytest.mark.broker
@needs_mosquitto
def test_fixed_port_in_use_fails() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        broker = MqttBroker(kind="mosquitto", port=port, start_timeout=3)
        try:
            with pytest.raises(RuntimeError, match="in use"):
                broker.start()
            assert not broker.running
        finally:
            broker.close()


@pytest.mark.broker
@needs_mosquitto
def test_close_removes_the_work_directory() -> None:
    broker = MqttBroker(kind="mosquitto").start()
    workdir = broker.workdir
    assert (workdir / "mosquitto.conf").exists()
    broker.close()
    assert not workdir.exists()
    assert not broker.running


def test_amqtt_fallback_round_trip_and_restart() -> None:
    with MqttBroker(kind="amqtt") as broker:
        assert broker.kind == "amqtt"
        round_trip(broker)
        port = broker.port
        broker.restart()
        assert broker.port == port
        round_trip(broker)
        broker.kill()
        assert not port_is_open(broker.host, port)


def test_amqtt_rejects_persistence() -> None:
    with pytest.raises(ValueError):
        MqttBroker(kind="amqtt", persistence=True)


async def test_async_context_manager() -> None:
    async with MqttBroker() as broker:
        assert broker.running
        assert port_is_open(broker.host, broker.port)
    assert not broker.running


def test_mqtt_ping_needs_an_mqtt_broker() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        assert not mqtt_ping("127.0.0.1", silent.getsockname()[1], timeout=0.2)
    with MqttBroker(kind="amqtt") as broker:
        assert mqtt_ping(broker.host, broker.port)


def test_broker_that_exits_at_once_reports_it() -> None:
    broker = MqttBroker(kind="mosquitto", mosquitto="/bin/false", start_timeout=3)
    try:
        with pytest.raises(RuntimeError, match="exited with code 1"):
            broker.start()
        assert not broker.running
    finally:
        broker.close()
