"""The MQTT connection: paho-mqtt 2.x in its network thread, bridged to asyncio.

paho runs keep-alive, reconnects and retransmission of unacknowledged QoS 1
messages in its own thread (``loop_start``); callbacks are handed to the event
loop in order (a queue drained by one ``call_soon_threadsafe`` per burst: PUBACKs
come one per message) so the rest of the gateway stays single-threaded. Reconnect
delays get jitter from :class:`Backoff` each time the link drops, so a fleet of
gateways does not reconnect in lock step.

Failover: with several brokers (``northbound.mqtt.urls``) every connection attempt
asks :class:`BrokerRotation` where to go. The one paho client moves between them,
so QoS 1 messages in flight are re-sent to the next broker after its CONNACK.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from gateway.backoff import Backoff
from gateway.config.broker_url import BrokerAddress
from gateway.config.models import MqttConfig, MqttTlsConfig
from gateway.northbound.broker_rotation import BrokerRotation
from gateway.northbound.message import OutboundMessage

log = logging.getLogger(__name__)


def tls_context(tls: MqttTlsConfig) -> ssl.SSLContext:
    """The client's TLS context: the configured CA (or the system's), host names verified,
    the client certificate for mutual TLS. Unreadable files raise :class:`OSError`."""
    try:
        context = ssl.create_default_context(cafile=str(tls.ca) if tls.ca else None)
    except (OSError, ssl.SSLError) as exc:
        raise OSError(f"northbound.mqtt.tls.ca: cannot load {tls.ca}: {exc}") from None
    if tls.certificate is not None and tls.key is not None:
        try:
            context.load_cert_chain(str(tls.certificate), str(tls.key))
        except (OSError, ssl.SSLError) as exc:
            raise OSError(
                f"northbound.mqtt.tls: cannot load the client certificate {tls.certificate} "
                f"with key {tls.key}: {exc}"
            ) from None
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def describe_connect_error(exc: BaseException) -> str:
    """A readable reason for a failed connection attempt (TCP or TLS)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS: the broker's certificate was not accepted: {exc.verify_message} "
            "(check northbound.mqtt.tls.ca and the broker's host name)"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the broker running on this port?)"
    return f"cannot connect: {exc}"


def _readable_detail(message: str) -> str:
    """paho's socket error line, with TLS alerts named as such."""
    message = message.removeprefix("failed to receive on socket: ")
    if "SSL" in message or "TLS" in message.upper():
        return f"TLS: {message} (check northbound.mqtt.tls: client certificate, CA)"
    return message


class _LastError(logging.Handler):
    """Keeps paho's last error log line: a TLS alert or socket error that paho reports to
    ``on_disconnect`` only as "Unspecified error"."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.message: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.message = record.getMessage()

    def take(self) -> str | None:
        message, self.message = self.message, None
        return message


class _Client(mqtt.Client):
    """paho's client, remembering why the last connection attempt failed (paho's
    ``on_connect_fail`` does not say), and asking ``choose_broker`` (when set) where each
    connection attempt goes."""

    last_socket_error: BaseException | None = None
    choose_broker: Callable[[], BrokerAddress] | None = None

    def _create_socket(self) -> Any:
        if self.choose_broker is not None:
            target = self.choose_broker()
            # paho reads these when it opens the socket; the old socket is closed by now
            self._host, self._port, self._ssl = target.host, target.port, target.tls
        try:
            return super()._create_socket()  # type: ignore[misc]
        except Exception as exc:
            self.last_socket_error = exc
            raise


class MqttLink:
    def __init__(
        self,
        config: MqttConfig,
        client_id: str,
        will: OutboundMessage | None,
        password: str | None,
        on_ack: Callable[[int], None],
        on_state: Callable[[], None] = lambda: None,
        subscriptions: tuple[tuple[str, int], ...] = (),
        on_message: Callable[[str, bytes, bool], None] | None = None,
    ) -> None:
        """``subscriptions`` (topic, QoS) are made on every connect; ``on_message(topic,
        payload, retained)`` receives their messages on the event loop."""
        self.config = config
        self.rotation = BrokerRotation(config.brokers())
        #: the broker connected to, or being tried
        self.url = self.rotation.current.url
        self.broker_switches = 0
        self.connected = asyncio.Event()
        self.generation = 0  # counts successful connects; a new one needs a new birth
        self.last_error: str | None = None
        self.connects = 0
        self.disconnects = 0
        self._loop = asyncio.get_running_loop()
        self._on_ack = on_ack
        self._on_state = on_state
        self._subscriptions = subscriptions
        self._on_message = on_message
        self._mid_to_id: dict[int, int] = {}
        #: paho thread -> event loop: (callback, args) not yet run (see _post)
        self._events: collections.deque[tuple[Callable[..., None], tuple[Any, ...]]] = (
            collections.deque()
        )
        self._drain_scheduled = False
        self._stopping = False
        self._backoff = Backoff(config.reconnect_min, config.reconnect_max)
        v5 = config.protocol == "5"
        self._client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else True,
        )
        if any(b.tls for b in self.rotation.brokers):
            tls = config.tls or MqttTlsConfig()
            self._client.tls_set_context(tls_context(tls))
            if tls.insecure_skip_verify:
                self._client.tls_insecure_set(True)
        if len(self.rotation.brokers) > 1:
            self._client.choose_broker = self._choose_broker
        self._client.max_inflight_messages_set(65535)  # the outbox bounds what is in flight
        self._client.max_queued_messages_set(0)
        if config.username is not None:
            self._client.username_pw_set(config.username, password)
        if will is not None:
            self._client.will_set(will.topic, will.payload, will.qos, will.retain)
        self._client.reconnect_delay_set(config.reconnect_min, config.reconnect_max)
        self._client.on_connect = self._paho_connect
        self._client.on_disconnect = self._paho_disconnect
        self._client.on_publish = self._paho_publish
        self._client.on_message = self._paho_message
        self._client.on_subscribe = self._paho_subscribe
        self._client.on_connect_fail = self._paho_connect_fail
        # a private logger (not in logging's registry): paho's errors, for last_error
        self._paho_errors = _LastError()
        paho_log = logging.Logger(f"paho:{client_id}", logging.ERROR)
        paho_log.addHandler(self._paho_errors)
        self._client.enable_logger(paho_log)

    # --- paho thread -> event loop -------------------------------------------------
    def _choose_broker(self) -> BrokerAddress:
        previous = self.rotation.current
        target = self.rotation.next_attempt()
        if target != previous:
            self._post(self._switched, previous, target)
        return target

    def _paho_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason: ReasonCode,
        properties: object,
    ) -> None:
        if not reason.is_failure:
            self.rotation.connected()
        if not reason.is_failure and self._subscriptions:
            # before the loop hears of the connect, hence before the birth is published
            client.subscribe(list(self._subscriptions))
        self._post(self._connected, reason.is_failure, str(reason))

    def _paho_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        if len(self.rotation.brokers) > 1:  # jitter, also between brokers
            delay = self._backoff.next_delay()
            client.reconnect_delay_set(
                min(delay, self.config.reconnect_max), self.config.reconnect_max
            )
        error = getattr(client, "last_socket_error", None)
        reason = describe_connect_error(error) if error is not None else "connection failed"
        self._post(self._connect_failed, reason)

    def _paho_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if self._on_message is not None:
            self._post(self._on_message, msg.topic, bytes(msg.payload), bool(msg.retain))

    def _paho_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: object,
    ) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            self._post(self._subscribe_refused, ", ".join(refused))

    def _paho_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason: ReasonCode,
        properties: object,
    ) -> None:
        # jitter for paho's next reconnect wait; its own delay doubles from here up to the max
        delay = self._backoff.next_delay()
        client.reconnect_delay_set(min(delay, self.config.reconnect_max), self.config.reconnect_max)
        text = str(reason)
        detail = self._paho_errors.take()
        if detail:
            text += f" ({_readable_detail(detail)})"
        self._post(self._disconnected, text)

    def _paho_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason: ReasonCode,
        properties: object,
    ) -> None:
        self._post(self._acked, mid, reason if reason.is_failure else None)

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        """From paho's thread: ``callback(*args)`` on the event loop, in the order paho's
        events happened. One wake-up of the loop per burst: PUBACKs come one per message,
        and each ``call_soon_threadsafe`` writes the loop's self-pipe (a system call)."""
        self._events.append((callback, args))  # before the flag: a running drain sees it
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self._loop.call_soon_threadsafe(self._drain_events)

    # --- event loop ------------------------------------------------------------------
    def _switched(self, previous: BrokerAddress, target: BrokerAddress) -> None:
        self.broker_switches += 1
        self.url = target.url
        log.warning("MQTT: %s unreachable, trying the next broker %s", previous.url, target.url)

    def _connected(self, failed: bool, reason: str) -> None:
        if failed:
            self.last_error = f"connection refused by broker: {reason}"
            log.warning("MQTT %s: %s", self.url, self.last_error)
            return
        self.connects += 1
        self.generation += 1
        self.last_error = None
        self._backoff.reset()
        log.info("MQTT connected to %s", self.url)
        self.connected.set()
        self._on_state()

    def _connect_failed(self, reason: str) -> None:
        if reason != self.last_error:
            log.warning("MQTT %s: %s", self.url, reason)
        self.last_error = reason
        self._on_state()

    def _subscribe_refused(self, reasons: str) -> None:
        topics = ", ".join(t for t, _ in self._subscriptions)
        self.last_error = f"subscription to {topics} refused by the broker: {reasons}"
        log.error("MQTT %s: %s", self.url, self.last_error)

    def _disconnected(self, reason: str) -> None:
        if self._stopping:
            log.info("MQTT disconnected from %s", self.url)
        elif self.connected.is_set():
            self.disconnects += 1
            log.warning("MQTT disconnected from %s: %s", self.url, reason)
        self.connected.clear()
        self.last_error = f"disconnected: {reason}"
        self._on_state()

    def _drain_events(self) -> None:
        """What paho's thread posted, in order."""
        events = self._events
        self._drain_scheduled = False  # first: what is posted from now on schedules a drain
        while events:
            callback, args = events.popleft()
            try:
                callback(*args)
            except Exception:  # logged as the loop does for a callback of its own
                log.exception("MQTT event %s failed", getattr(callback, "__name__", callback))

    def _acked(self, mid: int, failure: ReasonCode | None) -> None:
        message_id = self._mid_to_id.pop(mid, None)
        if message_id is None:
            return
        if failure is not None:  # MQTT 5 PUBACK with an error code: the broker will not route it
            log.error("broker rejected message %d: %s", message_id, failure)
        self._on_ack(message_id)

    # --- API -------------------------------------------------------------------------
    def start(self) -> None:
        first = self.rotation.current
        self._client.connect_async(first.host, first.port, int(self.config.keepalive))
        self._client.loop_start()

    def publish(self, message: OutboundMessage) -> None:
        """Hand a message to paho; ``on_ack(message.id)`` follows the broker's PUBACK."""
        info = self._client.publish(message.topic, message.payload, message.qos, message.retain)
        if message.qos == 0:
            self._loop.call_soon(self._on_ack, message.id)
        else:
            self._mid_to_id[info.mid] = message.id

    async def stop(self) -> None:
        """Disconnect cleanly (the broker then does not send the will)."""
        self._stopping = True
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        self.connected.clear()
