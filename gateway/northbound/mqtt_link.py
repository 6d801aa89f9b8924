"""The MQTT connection: paho-mqtt 2.x (reached only through
:mod:`gateway.northbound.paho_adapter`) driven by the asyncio event loop.

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
re-sends unacknowledged QoS 1 messages after the next CONNACK, unless the link's owner
takes them back (``on_taken_back``: a Sparkplug message's ``seq`` belongs to the
session it was sent in). A birth is never re-sent: the next session sends its own, and
re-sending one the broker refused (over its packet limit: Mosquitto just closes the
connection) would end every session after it. The will is asked for before every
CONNECT (a Sparkplug NDEATH carries the bdSeq of its connection).

QoS 0 messages have no PUBACK, and writing one to a socket says nothing about a broker
that died meanwhile: such a message counts as delivered (``on_ack``) only once a
PINGRESP to a PINGREQ sent after it came back on the same connection (the broker reads a
connection's packets in order). The link sends that PINGREQ at most every
``QOS0_CONFIRM_INTERVAL`` while QoS 0 messages wait. Their in-flight slot is freed when
they are written (``on_sent``), so throughput does not wait for the confirmation; those
still unconfirmed when the connection ends are handed back (``on_taken_back``) and the
outbox sends them again.

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

from gateway.backoff import Backoff
from gateway.config.broker_url import BrokerAddress
from gateway.config.models import MqttConfig, MqttTlsConfig
from gateway.northbound.broker_rotation import BrokerRotation
from gateway.northbound.message import OutboundMessage
from gateway.northbound.paho_adapter import PahoConnection, describe_connect_error, tls_context
from gateway.repeated_log import RepeatedKinds

__all__ = ["MqttLink", "describe_connect_error", "tls_context"]

log = logging.getLogger(__name__)

#: distinct reasons logged per outage at most (each once): a bound, not a limit in practice
_REASONS_PER_OUTAGE = 16
#: seconds between two PINGREQs confirming QoS 0 messages (at most 10 extra packets a second)
QOS0_CONFIRM_INTERVAL = 0.1

Will = OutboundMessage | Callable[[], OutboundMessage | None] | None


class MqttLink:
    def __init__(
        self,
        config: MqttConfig,
        client_id: str,
        will: Will,
        password: str | None,
        on_ack: Callable[[int], None],
        on_state: Callable[[], None] = lambda: None,
        subscriptions: tuple[tuple[str, int], ...] = (),
        on_message: Callable[[str, bytes, bool], None] | None = None,
        on_taken_back: Callable[[list[int]], None] | None = None,
        take_back_qos1: bool = False,
        on_sent: Callable[[int], None] | None = None,
    ) -> None:
        """``will``: the message the broker publishes if the connection dies, or a function
        giving it before each CONNECT. ``subscriptions`` (topic, QoS) are made on every
        connect; ``on_message(topic, payload, retained)`` receives their messages.
        ``on_taken_back(message ids)`` receives the QoS 0 messages whose delivery was not
        confirmed when their connection ended and, with ``take_back_qos1``, the
        unacknowledged QoS 1 messages too (not re-sent by paho after the reconnect); both
        before the next connect is reported. ``on_sent(message id)``: a QoS 0 message was
        written (its ``on_ack`` follows the confirmation)."""
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
        self._on_taken_back = on_taken_back
        self._take_back_qos1 = take_back_qos1
        self._on_sent = on_sent
        #: QoS 0 messages written since the last PINGREQ, and those a PINGREQ in flight covers
        self._unconfirmed: list[int] = []
        self._probed: list[int] = []
        self._probe_timer: asyncio.TimerHandle | None = None
        #: paho mids of births not yet acknowledged: a reconnect drops them (superseded)
        self._birth_mids: set[int] = set()
        self._will = will
        self._mid_to_id: dict[int, int] = {}
        #: paho's callbacks -> the link's handlers: (callback, args) not yet run (see _post)
        self._events: collections.deque[tuple[Callable[..., None], tuple[Any, ...]]] = (
            collections.deque()
        )
        self._drain_scheduled = False
        self._stopping = False
        self._backoff = Backoff(config.reconnect_min, config.reconnect_max)
        self._socket_closed = asyncio.Event()
        #: set by :meth:`retry_now`: ends the wait between two connection attempts
        self._retry = asyncio.Event()
        self._connection: asyncio.Task[None] | None = None
        self._misc_timer: asyncio.TimerHandle | None = None
        tls = None
        if any(b.tls for b in self.rotation.brokers):
            tls = config.tls or MqttTlsConfig()
        self._client = PahoConnection(
            client_id, config.protocol == "5", tls_context(tls) if tls is not None else None,
            tls.insecure_skip_verify if tls is not None else False, config.username, password,
        )  # fmt: skip
        if isinstance(will, OutboundMessage):
            self._client.will_set(will.topic, will.payload, will.qos, will.retain)
        c = self._client
        c.on_pre_connect = self._pre_connect
        c.on_connect = self._connack
        c.on_disconnect = lambda reason: self._post(self._disconnected, reason)
        c.on_publish = lambda mid, failure: self._post(self._acked, mid, failure)
        c.on_message = self._message
        c.on_subscribe_refused = lambda refused: self._post(
            self._subscribe_refused, ", ".join(refused))
        c.on_socket_open = self._socket_open
        c.on_socket_close = self._socket_close
        c.on_want_write = self._want_write
        c.on_written = self._written
        c.on_pingreq = self._pingreq
        c.on_pingresp = lambda: self._post(self._confirmed)

    # --- the socket on the event loop ------------------------------------------------
    def _socket_open(self, sock: Any) -> None:
        self._client.drop_buffer()
        self._socket_closed.clear()
        self._loop.add_reader(sock, self._readable)

    def _socket_close(self, sock: Any) -> None:
        self._client.drop_buffer()
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)
        self._socket_closed.set()

    def _want_write(self, sock: Any) -> None:
        self._loop.add_writer(sock, self._client.loop_write)

    def _written(self, sock: Any) -> None:
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
                self._retry.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._retry.wait(), self._backoff.next_delay())

    def retry_now(self) -> None:
        """Connect again without waiting out the backoff (which starts again from its
        minimum): the cause of the failures is gone, e.g. a config change whose birth the
        broker refused was rolled back. Nothing happens while a session is up."""
        self._backoff.reset()
        self._retry.set()

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

    # --- paho's callbacks (inside its call stack) -----------------------------------------
    def _pre_connect(self) -> None:
        """Before each CONNECT: this connection's will; unacknowledged messages taken back
        (when the owner wants them) before paho could re-send them."""
        if callable(self._will):
            will = self._will()
            if will is not None:
                self._client.will_set(will.topic, will.payload, will.qos, will.retain)
        if self._take_back_qos1 and self._on_taken_back is not None:
            self._post(self._taken_back, self._client.take_back_unacked())
        elif self._birth_mids:
            self._post(self._births_superseded, self._client.take_back(self._birth_mids))
        self._birth_mids = set()

    def _connack(self, failed: bool, reason: str) -> None:
        if not failed:
            self.rotation.connected()
            if self._subscriptions:
                # before the link reports the connect, hence before the birth is published
                self._client.subscribe(list(self._subscriptions))
        self._post(self._connected, failed, reason)

    def _message(self, topic: str, payload: bytes, retained: bool) -> None:
        if self._on_message is not None:
            self._post(self._on_message, topic, payload, retained)

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

    def _births_superseded(self, mids: list[int]) -> None:
        """Births of a dead connection not acknowledged: never re-sent (the next session
        sends its own); their ids reach the owner as taken back, without a replay."""
        ids = [i for i in (self._mid_to_id.pop(mid, None) for mid in mids) if i is not None]
        if ids:
            log.info("%d unacknowledged births of the last connection dropped: the next "
                     "session sends its own", len(ids))  # fmt: skip
            if self._on_taken_back is not None:
                self._on_taken_back(ids)

    def _taken_back(self, mids: list[int]) -> None:
        ids = [i for i in (self._mid_to_id.pop(mid, None) for mid in mids) if i is not None]
        self._mid_to_id.clear()  # acks of the old connection can no longer come
        if ids and self._on_taken_back is not None:
            log.info("%d unacknowledged messages taken back for replay", len(ids))
            self._on_taken_back(ids)

    # --- QoS 0 delivery ----------------------------------------------------------------------
    def _pingreq(self) -> None:
        """A PINGREQ went out (ours or paho's keep-alive): its PINGRESP confirms every QoS 0
        message written before it."""
        self._probed += self._unconfirmed
        self._unconfirmed = []

    def _confirmed(self) -> None:
        probed, self._probed = self._probed, []
        for message_id in probed:
            self._on_ack(message_id)
        if self._unconfirmed:
            self._probe_later()

    def _probe_later(self) -> None:
        if self._probe_timer is None:
            self._probe_timer = self._loop.call_later(QOS0_CONFIRM_INTERVAL, self._probe)

    def _probe(self) -> None:
        self._probe_timer = None
        if self._unconfirmed and self.connected.is_set() and not self._client.ping():
            self._probe_later()  # a PINGREQ is out: its PINGRESP covers what it covers

    def _hand_back_unconfirmed(self) -> None:
        """The connection ended: QoS 0 messages not confirmed go back to the owner (or count
        as delivered when the owner takes nothing back, as without confirmation)."""
        ids, self._probed, self._unconfirmed = self._probed + self._unconfirmed, [], []
        if not ids:
            return
        if self._on_taken_back is not None:
            self._on_taken_back(ids)
        else:
            for message_id in ids:
                self._on_ack(message_id)

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
        self._hand_back_unconfirmed()
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

    def _acked(self, mid: int, failure: str | None) -> None:
        self._birth_mids.discard(mid)
        message_id = self._mid_to_id.pop(mid, None)
        if message_id is None:
            return
        if failure is not None:  # MQTT 5 PUBACK with an error code: the broker will not route it
            self._rejections.failure(f"{failure} (message {message_id})", failure)
        self._on_ack(message_id)

    # --- API -------------------------------------------------------------------------
    def start(self) -> None:
        first = self.rotation.current
        self._client.connect_async(first.host, first.port, int(self.config.keepalive))
        self._connection = self._loop.create_task(self._run(), name="mqtt-connection")
        self._misc_timer = self._loop.call_later(1.0, self._misc)

    def publish(self, message: OutboundMessage) -> None:
        """Hand a message to paho; ``on_ack(message.id)`` follows the broker's PUBACK."""
        mid = self._client.publish(message.topic, message.payload, message.qos, message.retain)
        if message.qos:
            self._mid_to_id[mid] = message.id
            if message.kind == "birth":
                self._birth_mids.add(mid)
            return
        if self._on_sent is None:  # the owner does not tell written from delivered
            self._loop.call_soon(self._on_ack, message.id)
            return
        self._loop.call_soon(self._on_sent, message.id)
        self._unconfirmed.append(message.id)
        self._probe_later()

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
        if self._probe_timer is not None:
            self._probe_timer.cancel()
            self._probe_timer = None
        self._drain_events()  # the disconnect's event
        self._hand_back_unconfirmed()  # they stay in the outbox for the next run
        self.connected.clear()
