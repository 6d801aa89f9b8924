"""paho-mqtt behind one module: the only place the project reaches paho.

:class:`PahoConnection` is paho's client driven by the asyncio event loop, presented
with plain callbacks (booleans, strings, bytes) instead of paho's ReasonCode,
Properties and MQTTMessage objects, and with paho's reasons turned into the words the
log and ``/healthz`` use. Everything here that relies on paho's internals is listed
with the behaviour it relies on, pinned by tests/gateway/test_mqtt_link_events.py
(paho is pinned to 2.2 in pyproject.toml for it):

- receives are buffered (``_sock_recv``): paho reads a PUBACK with three ``recv``
  calls (command, length, body); the buffer makes it one per burst;
- a plain PUBACK (2 bytes, success) is answered without building paho's reason code
  and properties objects (``_handle_pubackcomp``, reading ``_in_packet`` and
  ``_out_messages``): a quarter of the loop's time in a profile;
- only errors reach the logger (``_easy_log``): paho makes two debug logging calls
  per message that nobody reads;
- sockets are made by the link in a worker thread and handed to paho's
  ``reconnect`` (``_create_socket``), so TCP connect and the TLS handshake never
  block the event loop;
- unacknowledged QoS 1 messages can be taken back before a CONNECT instead of being
  re-sent by paho (``_out_messages``, ``_inflight_messages``,
  ``_messages_reconnect_reset_out``): a Sparkplug message's ``seq`` belongs to the
  session it was sent in, and a birth is superseded by the one the next session sends
  (re-sending an old birth the broker refused, e.g. over its packet limit, would end
  every session it is sent in);
- PINGREQ on demand and a callback for every PINGREQ sent and PINGRESP received
  (``_send_pingreq``, ``_handle_pingresp``, ``_ping_t``): QoS 0 messages count as
  delivered only when a PINGRESP to a later PINGREQ came back on the same connection
  (the broker reads a connection's packets in order), not when they were written to a
  socket that may already be dead.

What it costs to do without them: paho's own network thread (``loop_start``) used
0.067 ms of CPU per message against 0.043 ms on the loop (bench/README.md), and
without the PUBACK fast path the loop spends about a quarter more per message.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, LogLevel, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.config.broker_url import BrokerAddress
from gateway.config.models import MqttTlsConfig

__all__ = ["PahoConnection", "describe_connect_error", "tls_context"]

#: paho's reason for a connection that ended without a DISCONNECT from the broker
_CONNECTION_LOST = "Unspecified error"
#: what a PUBACK without reason code and properties means (MQTT 3.1.1, and MQTT 5 success)
_PUBACK_SUCCESS = ReasonCode(PacketTypes.PUBACK, identifier=0)
_NO_PROPERTIES = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]  # paho's own
#: bytes taken from the socket per receive (paho asks for 1, 1 and 2 bytes per PUBACK)
_RECEIVE_BYTES = 65536


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
    """paho's client with the internals listed in the module docstring."""

    _ready_socket: Any = None
    _received = b""
    _received_pos = 0

    def open_socket(self, target: BrokerAddress) -> Any:
        """A connected (and TLS-wrapped) socket to ``target``; raises what connect raises."""
        self._host, self._port, self._ssl = target.host, target.port, target.tls
        return super()._create_socket()  # paho internal, pinned

    def reconnect_with(self, sock: Any) -> MQTTErrorCode:
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
            data = super()._sock_recv(_RECEIVE_BYTES)  # pinned
            if not data:  # the connection's end: paho closes it
                return data
            self._received, pos = data, 0
        end = pos + bufsize
        self._received_pos = end
        return data[pos:end]

    def buffered(self) -> bool:
        """Received bytes paho has not read yet (the socket no longer signals them)."""
        return self._received_pos < len(self._received)

    def drop_buffer(self) -> None:
        self._received, self._received_pos = b"", 0

    def _handle_pubackcomp(self, cmd: Any) -> MQTTErrorCode:
        packet = self._in_packet["packet"]  # pinned
        if cmd != "PUBACK" or len(packet) != 2:
            return super()._handle_pubackcomp(cmd)
        mid = packet[0] << 8 | packet[1]
        with self._out_message_mutex:  # pinned
            if mid in self._out_messages:  # pinned
                return self._do_on_publish(mid, _PUBACK_SUCCESS, _NO_PROPERTIES)  # pinned
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _easy_log(self, level: LogLevel, fmt: str, *args: Any) -> None:
        """Only errors reach the logger (see the module docstring)."""
        if level == mqtt.MQTT_LOG_ERR:
            super()._easy_log(level, fmt, *args)  # pinned

    def close_socket(self) -> None:
        """Close the connection now, without DISCONNECT (paho calls ``on_socket_close``)."""
        self._sock_close()  # pinned

    on_pingreq: Callable[[], None] | None = None
    on_pingresp: Callable[[], None] | None = None

    def _send_pingreq(self) -> MQTTErrorCode:
        rc = super()._send_pingreq()  # pinned
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self.on_pingreq is not None:
            self.on_pingreq()
        return rc

    def _handle_pingresp(self) -> MQTTErrorCode:
        rc = super()._handle_pingresp()  # pinned
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self.on_pingresp is not None:
            self.on_pingresp()
        return rc

    def ping(self) -> bool:
        """Send a PINGREQ unless one is outstanding (paho's keep-alive or ours); True when
        one was sent."""
        if self._ping_t:  # pinned: 0 while none is outstanding
            return False
        return bool(self._send_pingreq() == MQTTErrorCode.MQTT_ERR_SUCCESS)

    def take_back_unacked(self) -> list[int]:
        """The mids of unacknowledged messages, removed so that paho does not re-send them
        after the next CONNACK."""
        with self._out_message_mutex:  # pinned
            mids = list(self._out_messages)  # pinned
            self._out_messages.clear()  # pinned
            self._inflight_messages = 0  # pinned
        return mids

    def take_back(self, mids: set[int]) -> list[int]:
        """Those of ``mids`` still unacknowledged, removed so that paho does not re-send
        them after the next CONNACK (called after paho's reset of the messages' states,
        which is run again so that the in-flight count leaves them out)."""
        with self._out_message_mutex:  # pinned
            taken = [mid for mid in mids if self._out_messages.pop(mid, None) is not None]  # pinned
        if taken:
            self._messages_reconnect_reset_out()  # pinned
        return taken


Sock = Any


class PahoConnection:
    """One MQTT client connection, driven from the event loop by the link.

    Set the ``on_*`` attributes before :meth:`connect_async`; paho calls them from
    inside its own reads and writes (the link defers its work out of that stack).
    Callbacks, all with plain values:

    - ``on_pre_connect()`` before each CONNECT packet is built;
    - ``on_connect(failed, reason)`` for the CONNACK;
    - ``on_disconnect(reason)`` when a connection ended, ``reason`` in words;
    - ``on_publish(mid, failure)`` for a PUBACK (``failure``: an MQTT 5 error code's
      name, else None);
    - ``on_message(topic, payload, retained)``;
    - ``on_subscribe_refused(reasons)``;
    - ``on_pingreq()`` when a PINGREQ was sent (paho's keep-alive or :meth:`ping`),
      ``on_pingresp()`` when its PINGRESP came;
    - ``on_socket_open(sock)``, ``on_socket_close(sock)``, ``on_want_write(sock)``,
      ``on_written(sock)`` for the event loop's reader and writer.
    """

    def __init__(self, client_id: str, mqtt5: bool, tls: ssl.SSLContext | None = None,
                 insecure: bool = False, username: str | None = None,
                 password: str | None = None) -> None:  # fmt: skip
        self.mqtt5 = mqtt5
        self._client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311,
            clean_session=None if mqtt5 else True,
        )
        if tls is not None:
            self._client.tls_set_context(tls)
            if insecure:
                self._client.tls_insecure_set(True)
        self._client.max_inflight_messages_set(65535)  # the link's owner bounds what is in flight
        self._client.max_queued_messages_set(0)
        if username is not None:
            self._client.username_pw_set(username, password)
        self.on_pre_connect: Callable[[], None] = _nothing
        self.on_connect: Callable[[bool, str], None] = _nothing
        self.on_disconnect: Callable[[str], None] = _nothing
        self.on_publish: Callable[[int, str | None], None] = _nothing
        self.on_message: Callable[[str, bytes, bool], None] = _nothing
        self.on_subscribe_refused: Callable[[list[str]], None] = _nothing
        self.on_socket_open: Callable[[Sock], None] = _nothing
        self.on_socket_close: Callable[[Sock], None] = _nothing
        self.on_want_write: Callable[[Sock], None] = _nothing
        self.on_written: Callable[[Sock], None] = _nothing
        self.on_pingreq: Callable[[], None] = _nothing
        self.on_pingresp: Callable[[], None] = _nothing
        c = self._client
        c.on_pingreq = lambda: self.on_pingreq()
        c.on_pingresp = lambda: self.on_pingresp()
        c.on_pre_connect = lambda client, userdata: self.on_pre_connect()
        c.on_connect = self._paho_connect
        c.on_disconnect = self._paho_disconnect
        c.on_publish = self._paho_publish
        c.on_message = self._paho_message
        c.on_subscribe = self._paho_subscribe
        c.on_socket_open = lambda client, userdata, sock: self.on_socket_open(sock)
        c.on_socket_close = lambda client, userdata, sock: self.on_socket_close(sock)
        c.on_socket_register_write = lambda client, userdata, sock: self.on_want_write(sock)
        c.on_socket_unregister_write = lambda client, userdata, sock: self.on_written(sock)
        # a private logger (not in logging's registry): paho's errors, for the reasons
        self._errors = _LastError()
        paho_log = logging.Logger(f"paho:{client_id}", logging.ERROR)
        paho_log.addHandler(self._errors)
        self._client.enable_logger(paho_log)

    # --- paho's callbacks, in plain values ---------------------------------------------------
    def _paho_connect(self, client: mqtt.Client, userdata: object, flags: object,
                      reason: ReasonCode, properties: object) -> None:  # fmt: skip
        self.on_connect(reason.is_failure, str(reason))

    def _paho_disconnect(self, client: mqtt.Client, userdata: object, flags: object,
                         reason: ReasonCode, properties: object) -> None:  # fmt: skip
        text = str(reason)
        detail = self._errors.take()
        if text == _CONNECTION_LOST:  # paho's word for "the socket failed or closed"
            text = (_readable_detail(detail) if detail
                    else "the connection was closed (by the broker or the network)")
        elif detail:
            text += f" ({_readable_detail(detail)})"
        self.on_disconnect(text)

    def _paho_publish(self, client: mqtt.Client, userdata: object, mid: int,
                      reason: ReasonCode, properties: object) -> None:  # fmt: skip
        self.on_publish(mid, str(reason) if reason.is_failure else None)

    def _paho_message(self, client: mqtt.Client, userdata: object,
                      msg: mqtt.MQTTMessage) -> None:  # fmt: skip
        self.on_message(msg.topic, bytes(msg.payload), bool(msg.retain))

    def _paho_subscribe(self, client: mqtt.Client, userdata: object, mid: int,
                        reasons: list[ReasonCode], properties: object) -> None:  # fmt: skip
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            self.on_subscribe_refused(refused)

    # --- what the link does with it -------------------------------------------------------
    def connect_async(self, host: str, port: int, keepalive: int) -> None:
        self._client.connect_async(host, port, keepalive)

    def open_socket(self, target: BrokerAddress) -> Sock:
        return self._client.open_socket(target)

    def reconnect_with(self, sock: Sock) -> None:
        self._client.reconnect_with(sock)

    def close_socket(self) -> None:
        self._client.close_socket()

    def socket(self) -> Sock | None:
        return self._client.socket()

    def buffered(self) -> bool:
        return self._client.buffered()

    def drop_buffer(self) -> None:
        self._client.drop_buffer()

    def loop_read(self) -> None:
        self._client.loop_read()

    def loop_write(self) -> None:
        self._client.loop_write()

    def loop_misc(self) -> None:
        self._client.loop_misc()

    def will_set(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self._client.will_set(topic, payload, qos, retain)

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        """Hand a message to paho; its mid (PUBACKs name it)."""
        return self._client.publish(topic, payload, qos, retain).mid

    def subscribe(self, subscriptions: list[tuple[str, int]]) -> None:
        """Subscribe; under MQTT 5 with retain-as-published, so that a message's retain flag
        is the one it was published with (MQTT 3.1.1 brokers clear it on a live message to
        a connected subscriber)."""
        if not self.mqtt5:
            self._client.subscribe(subscriptions)
            return
        self._client.subscribe([(topic, SubscribeOptions(qos=qos, retainAsPublished=True))
                                for topic, qos in subscriptions])  # fmt: skip

    def disconnect(self) -> None:
        self._client.disconnect()

    def take_back_unacked(self) -> list[int]:
        return self._client.take_back_unacked()

    def take_back(self, mids: set[int]) -> list[int]:
        return self._client.take_back(mids)

    def ping(self) -> bool:
        """A PINGREQ now unless one is outstanding; True when one was sent."""
        return self._client.ping()


def _nothing(*args: object) -> None:
    pass
