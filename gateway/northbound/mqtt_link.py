"""The MQTT connection: paho-mqtt 2.x driven by the asyncio event loop.

paho's socket is watched by the event loop (``add_reader``/``add_writer``, paho's
"external event loop" callbacks); there is no network thread. Each connection
attempt opens its socket in a worker thread (TCP connect and TLS handshake block),
then hands it to paho, which sends CONNECT; keep-alive runs from a one-second timer.
Running on the loop costs about half the CPU per message of paho's own thread
(``loop_start``): no wake-up byte per publish, no thread switch per PUBACK, and the
packets of a burst are written in one go (bench/README.md). paho's callbacks are
handed to the link's handlers in order, one loop callback per burst (PUBACKs come one
per message), outside paho's call stack so a handler may publish.

Reconnects: when a connection ends, the next attempt follows a :class:`Backoff`
delay with jitter, so a fleet of gateways does not reconnect in lock step. paho
re-sends unacknowledged QoS 1 messages after the next CONNACK.

Failover: with several brokers (``northbound.mqtt.urls``) every connection attempt
asks :class:`BrokerRotation` where to go. The one paho client moves between them,
so QoS 1 messages in flight are re-sent to the next broker after its CONNACK.

The log: every reason the session is down or cannot come up (refused, TLS handshake or
alert, CONNACK refusal, keep-alive timeout, closed by the broker) is a WARNING once per
outage, in the words ``/healthz`` shows as ``broker.last_error``; retries failing for the
same reason add nothing; the connect that ends the outage is logged at INFO.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.backoff import Backoff
from gateway.config.broker_url import BrokerAddress
from gateway.config.models import MqttConfig, MqttTlsConfig
from gateway.northbound.broker_rotation import BrokerRotation
from gateway.northbound.message import OutboundMessage
from gateway.repeated_log import RepeatedKinds

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


#: paho's reason for a connection that ended without a DISCONNECT from the broker
_CONNECTION_LOST = "Unspecified error"
#: distinct reasons logged per outage at most (each once): a bound, not a limit in practice
_REASONS_PER_OUTAGE = 16


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


#: what a PUBACK without reason code and properties means (MQTT 3.1.1, and MQTT 5 success)
_PUBACK_SUCCESS = ReasonCode(PacketTypes.PUBACK, identifier=0)
_NO_PROPERTIES = Properties(PacketTypes.PUBACK)
#: bytes taken from the socket per receive (paho asks for 1, 1 and 2 bytes per PUBACK)
_RECEIVE_BYTES = 65536


class _Client(mqtt.Client):
    """paho's client driven by the event loop: :meth:`open_socket` makes the connection
    (blocking: TCP connect, TLS handshake; run it in a worker thread) and
    :meth:`reconnect_with` hands that socket to paho's ``reconnect``, which sends CONNECT.

    Two per-message costs of paho are cut here (paho 2.x internals, pinned in
    pyproject.toml and covered by tests/gateway/test_mqtt_link_events.py): receives are
    buffered (paho reads a PUBACK with three ``recv`` calls: command, length, body), and
    a plain PUBACK (2 bytes, success) is answered without building paho's reason code
    and properties objects for it."""

    _ready_socket: Any = None
    _received = b""
    _received_pos = 0

    def open_socket(self, target: BrokerAddress) -> Any:
        """A connected (and TLS-wrapped) socket to ``target``; raises what connect raises."""
        self._host, self._port, self._ssl = target.host, target.port, target.tls
        return super()._create_socket()  # type: ignore[misc]

    def reconnect_with(self, sock: Any) -> mqtt.MQTTErrorCode:
        self._ready_socket = sock
        try:
            return self.reconnect()
        finally:
            self._ready_socket = None

    def _create_socket(self) -> Any:
        if self._ready_socket is None:
            raise RuntimeError("the link opens its sockets itself (open_socket)")
        return self._ready_socket

    def _sock_recv(self, bufsize: int) -> bytes:
        data, pos = self._received, self._received_pos
        if pos >= len(data):
            data = super()._sock_recv(_RECEIVE_BYTES)  # type: ignore[misc]
            if not data:  # the connection's end: paho closes it
                return data  # type: ignore[no-any-return]
            self._received, pos = data, 0
        end = pos + bufsize
        self._received_pos = end
        return data[pos:end]  # type: ignore[no-any-return]

    def buffered(self) -> bool:
        """Received bytes paho has not read yet (the socket no longer signals them)."""
        return self._received_pos < len(self._received)

    def drop_buffer(self) -> None:
        self._received, self._received_pos = b"", 0

    def _handle_pubackcomp(self, cmd: Any) -> mqtt.MQTTErrorCode:
        packet = self._in_packet["packet"]  # type: ignore[attr-defined]
        if cmd != "PUBACK" or len(packet) != 2:
            return super()._handle_pubackcomp(cmd)  # type: ignore[misc, no-any-return]
        mid = packet[0] << 8 | packet[1]
        with self._out_message_mutex:  # type: ignore[attr-defined]
            if mid in self._out_messages:  # type: ignore[attr-defined]
                return self._do_on_publish(mid, _PUBACK_SUCCESS, _NO_PROPERTIES)  # type: ignore[attr-defined, no-any-return]
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _easy_log(self, level: int, fmt: str, *args: Any) -> None:
        """Only errors reach the logger: paho logs every packet sent and received at
        debug level, a logging call each (two per message) that nobody reads."""
        if level == mqtt.MQTT_LOG_ERR:
            super()._easy_log(level, fmt, *args)  # type: ignore[misc]

    def close_socket(self) -> None:
        """Close the connection now, without DISCONNECT (paho calls ``on_socket_close``)."""
        self._sock_close()  # type: ignore[attr-defined]


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
        payload, retained)`` receives their messages."""
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
        #: connection attempts that failed since the last successful connect
        self.failed_attempts = 0
        self._logged_reasons: set[str] = set()  # reasons logged in this outage
        # MQTT 5: a broker may refuse every message (quota, not authorised): per reason code
        self._rejections = RepeatedKinds(log, "broker rejected a message", logging.ERROR)
        self._refused = False  # the current attempt's CONNACK was a refusal
        self._loop = asyncio.get_running_loop()
        self._on_ack = on_ack
        self._on_state = on_state
        self._subscriptions = subscriptions
        self._on_message = on_message
        self._mid_to_id: dict[int, int] = {}
        #: paho's callbacks -> the link's handlers: (callback, args) not yet run (see _post)
        self._events: collections.deque[tuple[Callable[..., None], tuple[Any, ...]]] = (
            collections.deque()
        )
        self._drain_scheduled = False
        self._stopping = False
        self._backoff = Backoff(config.reconnect_min, config.reconnect_max)
        self._socket_closed = asyncio.Event()
        self._connection: asyncio.Task[None] | None = None
        self._misc_timer: asyncio.TimerHandle | None = None
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
        self._client.max_inflight_messages_set(65535)  # the outbox bounds what is in flight
        self._client.max_queued_messages_set(0)
        if config.username is not None:
            self._client.username_pw_set(config.username, password)
        if will is not None:
            self._client.will_set(will.topic, will.payload, will.qos, will.retain)
        self._client.on_connect = self._paho_connect
        self._client.on_disconnect = self._paho_disconnect
        self._client.on_publish = self._paho_publish
        self._client.on_message = self._paho_message
        self._client.on_subscribe = self._paho_subscribe
        self._client.on_socket_open = self._socket_open
        self._client.on_socket_close = self._socket_close
        self._client.on_socket_register_write = self._want_write
        self._client.on_socket_unregister_write = self._written
        # a private logger (not in logging's registry): paho's errors, for last_error
        self._paho_errors = _LastError()
        paho_log = logging.Logger(f"paho:{client_id}", logging.ERROR)
        paho_log.addHandler(self._paho_errors)
        self._client.enable_logger(paho_log)

    # --- the socket on the event loop ------------------------------------------------
    def _socket_open(self, client: mqtt.Client, userdata: object, sock: Any) -> None:
        self._client.drop_buffer()
        self._socket_closed.clear()
        self._loop.add_reader(sock, self._readable)

    def _socket_close(self, client: mqtt.Client, userdata: object, sock: Any) -> None:
        self._client.drop_buffer()
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)
        self._socket_closed.set()

    def _want_write(self, client: mqtt.Client, userdata: object, sock: Any) -> None:
        self._loop.add_writer(sock, self._client.loop_write)

    def _written(self, client: mqtt.Client, userdata: object, sock: Any) -> None:
        self._loop.remove_writer(sock)

    def _readable(self) -> None:
        client = self._client
        sock = client.socket()
        client.loop_read()
        # what the socket no longer signals: bytes in the receive buffer, and TLS records
        # already decrypted that wait in the SSL object
        while client.socket() is sock and (
            client.buffered() or (isinstance(sock, ssl.SSLSocket) and sock.pending())
        ):
            client.loop_read()

    def _misc(self) -> None:
        """Every second: keep-alive pings, and closing a connection whose broker went
        silent (no PINGRESP, no CONNACK) within the keep-alive."""
        self._misc_timer = self._loop.call_later(1.0, self._misc)
        self._client.loop_misc()
        self._rejections.due()

    async def _run(self) -> None:
        """Connect, wait until the connection ends, wait the backoff delay, again."""
        while not self._stopping:
            target = self.rotation.next_attempt()
            if target.url != self.url:
                self._switched(self.url, target)
            try:
                sock = await self._open(target)
            except Exception as exc:
                self._connect_failed(describe_connect_error(exc))
            else:
                try:
                    self._client.reconnect_with(sock)
                except Exception as exc:
                    self._client.close_socket()
                    sock.close()
                    self._connect_failed(f"cannot send CONNECT: {exc}")
                else:
                    await self._socket_closed.wait()
            if not self._stopping:
                await asyncio.sleep(self._backoff.next_delay())

    async def _open(self, target: BrokerAddress) -> Any:
        """A socket connected to ``target``, made in a worker thread (TCP connect and TLS
        handshake block). Cancelled meanwhile, the socket is closed when it comes."""
        future = self._loop.run_in_executor(None, self._client.open_socket, target)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(
                lambda f: f.cancelled() or f.exception() is not None or f.result().close()
            )
            raise

    # --- paho's callbacks ----------------------------------------------------------------
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
            # before the link reports the connect, hence before the birth is published
            client.subscribe(self._subscribe_list())
        self._post(self._connected, reason.is_failure, str(reason))

    def _subscribe_list(self) -> list[tuple[str, Any]]:
        """The subscriptions; under MQTT 5 with retain-as-published, so that a message's
        retain flag is the one it was published with (MQTT 3.1.1 brokers clear it on a
        live message to a connected subscriber: a retained command would look live)."""
        if self.config.protocol != "5":
            return list(self._subscriptions)
        return [(topic, SubscribeOptions(qos=qos, retainAsPublished=True))
                for topic, qos in self._subscriptions]  # fmt: skip

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
        text = str(reason)
        detail = self._paho_errors.take()
        if text == _CONNECTION_LOST:  # paho's word for "the socket failed or closed"
            text = (_readable_detail(detail) if detail
                    else "the connection was closed (by the broker or the network)")
        elif detail:
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
        """``callback(*args)`` soon, in the order paho's events happened, outside paho's
        own call stack (a handler may publish). One loop callback per burst of events."""
        self._events.append((callback, args))
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self._loop.call_soon(self._drain_events)

    # --- the link's handlers ---------------------------------------------------------------
    def _switched(self, previous: str, target: BrokerAddress) -> None:
        self.broker_switches += 1
        self.url = target.url
        self._warn_once(previous, f"unreachable, trying the next broker {target.url}")

    def _session_down(self, reason: str) -> None:
        """The session is down or could not come up, for ``reason`` (what /healthz shows):
        a WARNING the first time in this outage, then only counted (each retry fails again
        for the same reason, at every backoff step)."""
        self.last_error = reason
        self._warn_once(self.url, reason)
        self._on_state()

    def _warn_once(self, url: str, reason: str) -> None:
        """Log ``reason`` unless it was logged for ``url`` in this outage (bounded)."""
        key = f"{url} {reason}"
        if key not in self._logged_reasons and len(self._logged_reasons) < _REASONS_PER_OUTAGE:
            self._logged_reasons.add(key)
            log.warning("MQTT %s: %s", url, reason)

    def _connected(self, failed: bool, reason: str) -> None:
        if failed:
            self._refused = True  # the broker closes the connection next: same failure
            self._session_down(f"connection refused by broker: {reason}")
            return
        self.connects += 1
        self.generation += 1
        self.last_error = None
        self._backoff.reset()
        after = f" (after {self.failed_attempts} failed attempts)" if self.failed_attempts else ""
        log.info("MQTT connected to %s%s", self.url, after)
        self.failed_attempts = 0
        self._logged_reasons.clear()
        self.connected.set()
        self._on_state()

    def _connect_failed(self, reason: str) -> None:
        self.failed_attempts += 1
        self._session_down(reason)

    def _subscribe_refused(self, reasons: str) -> None:
        topics = ", ".join(t for t, _ in self._subscriptions)
        self.last_error = f"subscription to {topics} refused by the broker: {reasons}"
        log.error("MQTT %s: %s", self.url, self.last_error)

    def _disconnected(self, reason: str) -> None:
        refused, self._refused = self._refused, False
        if self._stopping:
            log.info("MQTT disconnected from %s", self.url)
            self.connected.clear()
            self.last_error = f"disconnected: {reason}"
            self._on_state()
            return
        if self.connected.is_set():
            self.disconnects += 1
            self.connected.clear()
        else:  # the attempt failed after the socket was made: TLS alert, refusal, silence
            self.failed_attempts += 1
            if refused:  # the refusal said why; the broker's close that follows adds nothing
                self._on_state()
                return
        self._session_down(f"disconnected: {reason}")

    def _drain_events(self) -> None:
        """What paho's callbacks posted, in order."""
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
            self._rejections.failure(f"{failure} (message {message_id})", str(failure))
        self._on_ack(message_id)

    # --- API -------------------------------------------------------------------------
    def start(self) -> None:
        first = self.rotation.current
        self._client.connect_async(first.host, first.port, int(self.config.keepalive))
        self._connection = self._loop.create_task(self._run(), name="mqtt-connection")
        self._misc_timer = self._loop.call_later(1.0, self._misc)

    def publish(self, message: OutboundMessage) -> None:
        """Hand a message to paho; ``on_ack(message.id)`` follows the broker's PUBACK."""
        info = self._client.publish(message.topic, message.payload, message.qos, message.retain)
        if message.qos == 0:
            self._loop.call_soon(self._on_ack, message.id)
        else:
            self._mid_to_id[info.mid] = message.id

    async def stop(self, timeout: float = 2.0) -> None:
        """Disconnect cleanly (the broker then does not send the will): DISCONNECT is
        written within ``timeout`` seconds, or the connection is closed without it."""
        self._stopping = True
        if self._client.socket() is not None:
            self._client.disconnect()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._socket_closed.wait(), timeout)
            self._client.close_socket()
        if self._connection is not None:
            self._connection.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connection
        if self._misc_timer is not None:
            self._misc_timer.cancel()
        self._drain_events()  # the disconnect's event
        self.connected.clear()
