"""The FINS transports: FINS/UDP datagrams and FINS/TCP with its node-address handshake.

A link sends one command at a time and hands back the response frame that answers it
(same service id and command code). What a link raises:

- :class:`DeviceUnreachable` from :meth:`FinsLink.open`: no route, refused, no answer,
  the PLC refusing the handshake (all node addresses in use...);
- :class:`ConnectionLost` from :meth:`FinsLink.exchange` when the transport broke: the
  TCP connection closed, bytes that are no FINS/TCP message (the stream is out of step),
  an answer stopping half-way, an ICMP "port unreachable" for a datagram;
- :class:`RequestFailed` for one command: no answer in time (``timeout``), an answer that
  is no FINS frame (``garbled``); the link stays.

A late answer to an earlier command (its service id is not the one waited for) is
dropped and counted in :attr:`FinsLink.stale`.

A poll's reads go through :meth:`FinsLink.exchange_all`: each good answer sends the next
read from the callback the answer arrived in (no task switch and no coroutine layers
between an answer and the next command); anything else hands that read back to its
caller, which settles it command by command as :meth:`FinsLink.exchange_raw` would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from drivers.fins.frames import (
    MAX_FRAME,
    TCP_ERRORS,
    TCP_FRAME,
    TCP_FRAME_ERROR,
    TCP_HEADER_SIZE,
    TCP_MAGIC,
    TCP_MAX_LENGTH,
    TCP_NODE_ADDRESS_RESPONSE,
    Frame,
    Route,
    TcpMessage,
    node_address_request,
    parse_frame,
    parse_node_address_response,
    parse_tcp_header,
)
from drivers.watchdog import Watchdog
from gateway.errors import (
    ConnectionLost,
    DeviceUnreachable,
    FinsFrameError,
    RequestFailed,
)

__all__ = ["FinsLink", "LinkSettings", "Outcome", "TcpLink", "UdpLink", "local_node_for"]

log = logging.getLogger(__name__)

#: the service id byte of each number, made once
_SID = tuple(bytes((sid,)) for sid in range(256))
#: a FINS/TCP header's command and error fields for a frame (:func:`tcp_message`)
_TCP_FRAME_FIELDS = TCP_FRAME.to_bytes(4, "big") + bytes(4)

#: what :meth:`FinsLink.exchange_all` hands back for the command it stopped at: the answer
#: its ``take`` refused, the failure (not raised: the caller settles it with its retries),
#: or None (all done, or the link handed to another command waiting for it)
Outcome: TypeAlias = bytes | RequestFailed | ConnectionLost | None


class _Run:
    """The commands of one :meth:`FinsLink.exchange_all`, and how far they got."""

    __slots__ = ("at", "bodies", "future", "loop", "meanwhile", "sent_ns", "take", "timeout")

    def __init__(self, bodies: Sequence[bytes], at: int, timeout: float, sent_ns: list[int],
                 take: Callable[[int, bytes], bool], meanwhile: Callable[[int], None],
                 loop: asyncio.AbstractEventLoop,
                 future: asyncio.Future[tuple[int, bytes | None] | None]) -> None:
        self.bodies = bodies
        self.at = at  # the command on its way
        self.timeout = timeout
        self.sent_ns = sent_ns
        self.take = take
        self.meanwhile = meanwhile
        self.loop = loop
        self.future = future


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """What a link needs of the device's config."""

    host: str
    port: int
    timeout: float
    node: int | None  # the PLC's node; None: UDP from the host's address, TCP the handshake's
    source_node: int | None  # the gateway's; None: UDP from its own address, TCP assigned
    network: int = 0
    unit: int = 0
    source_network: int = 0
    source_unit: int = 0
    gateway_count: int = 2
    local_port: int = 0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def route(self, dest_node: int, src_node: int) -> Route:
        return Route(dest_node, src_node, self.network, self.unit, self.source_network,
                     self.source_unit, self.gateway_count)


def local_node_for(local_ip: str) -> int:
    """The gateway's default FINS node over UDP: the last number of its own IPv4 address
    towards the PLC (Omron's automatic address conversion maps node n to host n)."""
    try:
        last = int(local_ip.rsplit(".", 1)[-1])
    except ValueError:
        return 254
    return last if 1 <= last <= 254 else 254


class FinsLink(ABC):
    """One transport to one PLC; commands go one at a time."""

    def __init__(self, settings: LinkSettings) -> None:
        self.settings = settings
        self._route: Route | None = None
        self._head = b""  # the route's header without its service id (set with the route)
        #: late answers to earlier commands, dropped
        self.stale = 0
        self._sid = 0
        self._lock = asyncio.Lock()
        #: commands waiting for the lock (a run of commands gives way to them)
        self._queued = 0
        #: the command waiting: (service id, the 2 bytes of its command code, its future)
        #: (a run's future: the run's results, see :meth:`exchange_all`)
        self._pending: tuple[int, bytes, asyncio.Future[Any]] | None = None
        #: the run of commands under way (:meth:`exchange_all`), if any
        self._run: _Run | None = None
        self._lost: asyncio.Future[str] | None = None
        self._watchdog = Watchdog(self._expired)

    @property
    def route(self) -> Route | None:
        """Who sends to whom (set by :meth:`open`)."""
        return self._route

    @route.setter
    def route(self, route: Route | None) -> None:
        self._route = route
        self._head = route.header(0)[:-1] if route is not None else b""

    @abstractmethod
    async def open(self) -> None:
        """Connect (and, over TCP, shake hands); set :attr:`route`."""

    @abstractmethod
    def _send(self, frame: bytes) -> None: ...

    @abstractmethod
    def close(self) -> None:
        """Release the transport; safe to call twice."""

    @property
    def is_open(self) -> bool:
        return self._route is not None and self._lost is not None and not self._lost.done()

    def _next_sid(self) -> int:
        self._sid = self._sid % 255 + 1  # 1..255: 0 is what a zeroed buffer would echo
        return self._sid

    def _lose(self, reason: str) -> None:
        """The transport broke: the waiting command (if any) raises :class:`ConnectionLost`."""
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(reason)
        pending, self._pending = self._pending, None
        if pending is not None and not pending[2].done():
            pending[2].set_exception(ConnectionLost(reason))
        self._watchdog.stop()

    def _deliver(self, data: bytes) -> None:
        """A FINS frame arrived: the answer waited for, a late one, or garbage.

        The usual answer (a response of a whole header and end code, with the service id
        and command code waited for) is taken by a few byte comparisons; anything else goes
        through :func:`parse_frame` for its verdict and reason."""
        pending = self._pending
        size = len(data)
        if 14 <= size <= MAX_FRAME and data[0] & 0xFE == 0xC0:  # a well-formed response
            if pending is not None and data[9] == pending[0] and data[10:12] == pending[1]:
                future = pending[2]
                if not future.done():
                    run = self._run
                    if run is None:
                        future.set_result(data)
                    else:
                        self._step(run, data)
                return
            self.stale += 1
            if pending is not None:
                log.debug("%s: dropped a late answer (SID %d, waiting for %d)",
                          self.settings.address, data[9], pending[0])
            return
        try:
            frame = parse_frame(data)
        except FinsFrameError as exc:
            if pending is not None and not pending[2].done():
                pending[2].set_exception(
                    RequestFailed("garbled", f"a garbled answer from {self.settings.address}: "
                                  f"{exc}"))
            return
        # a command, or a response parse_frame takes that the test above did not (none
        # today): the same matching
        if pending is None or not frame.is_response:
            self.stale += 1
            return
        if frame.sid == pending[0] and frame.code.to_bytes(2, "big") == pending[1]:
            if not pending[2].done():
                if self._run is None:
                    pending[2].set_result(bytes(data))
                else:
                    self._step(self._run, bytes(data))
        else:
            self.stale += 1

    async def exchange(self, code: int, text: bytes, timeout: float, what: str,
                       sent: list[int] | None = None,
                       meanwhile: Callable[[], None] | None = None) -> Frame:
        """Send command ``code`` with ``text``, return its response frame (see
        :meth:`exchange_raw`)."""
        return parse_frame(await self.exchange_raw(code.to_bytes(2, "big") + text, timeout,
                                                   what, sent, meanwhile))

    async def exchange_raw(self, body: bytes, timeout: float, what: str,
                           sent: list[int] | None = None,
                           meanwhile: Callable[[], None] | None = None) -> bytes:
        """Send the command whose code and text are ``body``; return the bytes of its
        response frame (checked: a FINS response of a whole header and end code, from the
        service id and command code sent). ``sent[0]`` gets the time the command left
        (after waiting for the previous one), in ns; ``meanwhile()`` runs once the command
        is on its way (work done while the PLC answers; it must not raise)."""
        await self._acquire()
        try:
            self._check_open()
            loop = asyncio.get_running_loop()
            future: asyncio.Future[bytes | None] = loop.create_future()
            try:
                if sent is not None:
                    sent[0] = time.time_ns()
                self._issue(body, future, loop, timeout)
                if meanwhile is not None:
                    meanwhile()
                data = await future
                if data is None:
                    raise self._timed_out(what, timeout)
                return data
            finally:
                self._watchdog.disarm()
                self._pending = None
        finally:
            self._lock.release()

    async def exchange_all(self, bodies: Sequence[bytes], first: int, timeout: float,
                           whats: Sequence[str], sent_ns: list[int],
                           take: Callable[[int, bytes], bool],
                           meanwhile: Callable[[int], None]) -> tuple[int, Outcome]:
        """Commands ``bodies[first:]`` one at a time, as :meth:`exchange_raw` sends them
        (each with its own service id and ``timeout``; ``sent_ns[i]``: when command i
        left). Each answer (checked as there) goes to ``take(i, answer)``; when it takes it,
        the next command leaves at once, from the callback the answer came in. After
        command i left, ``meanwhile(i)`` runs while the PLC answers it (work done in the
        meantime). ``take`` and ``meanwhile`` must not raise.

        Returns ``(i, outcome)``: ``(len(bodies), None)`` when every answer was taken;
        else command i's: the answer ``take`` refused, its :class:`RequestFailed` or
        :class:`ConnectionLost` (returned, not raised), or None when the link was handed to
        another command waiting for it after command i - 1 (carry on from i)."""
        await self._acquire()
        try:
            self._check_open()
            loop = asyncio.get_running_loop()
            future: asyncio.Future[tuple[int, bytes | None] | None] = loop.create_future()
            run = _Run(bodies, first, timeout, sent_ns, take, meanwhile, loop, future)
            self._run = run
            try:
                sent_ns[first] = time.time_ns()
                self._issue(bodies[first], future, loop, timeout)
                meanwhile(first)
                try:
                    result = await future
                except (RequestFailed, ConnectionLost) as failure:
                    return run.at, failure
                if result is None:  # the watchdog: command run.at got no answer in time
                    try:
                        return run.at, self._timed_out(whats[run.at], timeout)
                    except ConnectionLost as lost:
                        return run.at, lost
                return result
            finally:
                self._watchdog.disarm()
                self._pending = None
                self._run = None
        finally:
            self._lock.release()

    def _step(self, run: _Run, data: bytes) -> None:
        """The answer to the run's command ``run.at``: taken, the next command leaves (or
        the run ends); refused, the run ends there."""
        future = run.future
        at = run.at
        try:
            if not run.take(at, data):
                future.set_result((at, data))
                return
            at += 1
            if at == len(run.bodies) or self._queued:
                future.set_result((at, None))
                return
            run.at = at
            run.sent_ns[at] = time.time_ns()
            self._issue(run.bodies[at], future, run.loop, run.timeout)
            run.meanwhile(at)
        except Exception as exc:  # take/meanwhile must not raise: the run's owner sees it
            if not future.done():
                future.set_exception(exc)

    async def _acquire(self) -> None:
        """Take the link for a command (or a run of them), counted while waiting."""
        self._queued += 1
        try:
            await self._lock.acquire()
        finally:
            self._queued -= 1

    def _check_open(self) -> None:
        lost = self._lost
        if self._route is None or lost is None or lost.done():
            reason = lost.result() if lost is not None and lost.done() else "not connected"
            raise ConnectionLost(f"{self.settings.address}: {reason}")

    def _issue(self, body: bytes, future: asyncio.Future[Any],
               loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        """Send one command with the next service id; its answer goes to ``future``."""
        sid = self._sid = self._sid % 255 + 1  # 1..255: 0 is what a zeroed buffer echoes
        self._pending = (sid, body[:2], future)
        self._watchdog.arm(loop, timeout)
        self._send(self._head + _SID[sid] + body)

    def _timed_out(self, what: str, timeout: float) -> RequestFailed:
        """The command got no answer in time (:class:`ConnectionLost` from
        :meth:`_on_timeout` when that broke the link)."""
        self._on_timeout(what, timeout)
        return RequestFailed("timeout", f"{what}: no answer from {self.settings.address} "
                             f"within {timeout:g} s")

    def _expired(self) -> None:
        """The command waiting outlived its timeout (one watchdog timer per link)."""
        pending = self._pending
        if pending is not None and not pending[2].done():
            pending[2].set_result(None)  # no answer in time

    @abstractmethod
    def _on_timeout(self, what: str, timeout: float) -> None:
        """A command got no answer in time (TCP: was it cut half-way?)."""


class UdpLink(FinsLink):
    """FINS/UDP: one datagram per frame. The PLC's node is configured (or the last number of
    its IPv4 address); the gateway's own node is configured or the last number of the
    gateway's own address towards the PLC.

    :meth:`open` sends CONTROLLER DATA READ (05 01) and waits for any answer: a PLC that
    does not answer is unreachable; the answer is kept in :attr:`probe`."""

    def __init__(self, settings: LinkSettings) -> None:
        super().__init__(settings)
        self._transport: asyncio.DatagramTransport | None = None
        self.probe: Frame | None = None

    async def open(self) -> None:
        from drivers.fins.frames import CONTROLLER_DATA_READ

        s = self.settings
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()
        link = self

        class _Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
                link._deliver(data)

            def error_received(self, exc: Exception) -> None:
                if isinstance(exc, ConnectionRefusedError):
                    link._lose(f"nothing listens on UDP port {s.port} of {s.host} (ICMP port "
                               "unreachable): the PLC is off or restarting")

            def connection_lost(self, exc: Exception | None) -> None:
                link._lose("the UDP socket was closed")

        try:
            transport, _ = await asyncio.wait_for(loop.create_datagram_endpoint(
                _Protocol, local_addr=("0.0.0.0", s.local_port), remote_addr=(s.host, s.port),
                family=socket.AF_INET), s.timeout)
        except TimeoutError:
            raise DeviceUnreachable(f"cannot resolve {s.host!r} within {s.timeout:g} s") from None
        except socket.gaierror as exc:
            raise DeviceUnreachable(
                f"cannot resolve host name {s.host!r} (DNS lookup failed: {exc.strerror})"
            ) from None
        except OSError as exc:
            where = f" from local UDP port {s.local_port}" if s.local_port else ""
            raise DeviceUnreachable(f"cannot reach {s.address}{where}: "
                                    f"{exc.strerror or exc}") from None
        self._transport = transport
        local_ip = transport.get_extra_info("sockname")[0]
        dest = s.node if s.node is not None else local_node_for(s.host)
        src = s.source_node if s.source_node is not None else local_node_for(local_ip)
        self.route = s.route(dest, src)
        try:
            self.probe = await self.exchange(CONTROLLER_DATA_READ, b"", s.timeout,
                                             "controller data read")
        except RequestFailed as failure:
            self.close()
            if failure.counter == "timeout":
                raise DeviceUnreachable(
                    f"no FINS answer from {s.address} within {s.timeout:g} s (UDP; to node "
                    f"{dest} from node {src}: check the PLC's IP address, its node number and "
                    "that it answers this gateway's node)") from None
            raise DeviceUnreachable(f"{s.address}: {failure.reason}") from None
        except ConnectionLost as lost:
            self.close()
            raise DeviceUnreachable(str(lost).removeprefix(f"{s.address}: ")) from None

    def _send(self, frame: bytes) -> None:
        assert self._transport is not None
        self._transport.sendto(frame)

    def _on_timeout(self, what: str, timeout: float) -> None:
        """Nothing to do: a late answer is dropped by its service id."""

    def close(self) -> None:
        transport, self._transport = self._transport, None
        self._lose("closed")
        if transport is not None:
            transport.close()


class TcpLink(FinsLink):
    """FINS/TCP: a connection, the node-address handshake, then frames in FINS/TCP
    messages. The PLC assigns the gateway's node (or accepts the one asked for) and says
    its own; a configured ``node`` overrides the latter (a PLC on another network).

    The link is the connection's protocol (``data_received``): an answer is cut out of the
    bytes and handed to the command waiting for it in the same event-loop step, with no
    reader task in between (one task switch an answer less)."""

    def __init__(self, settings: LinkSettings) -> None:
        super().__init__(settings)
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        #: the handshake's answer while it is awaited: (header, payload) or an error
        self._greeting: asyncio.Future[tuple[TcpMessage, bytes]] | None = None
        #: the (client, PLC) nodes of the handshake
        self.nodes: tuple[int, int] | None = None

    async def open(self) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(lambda: _TcpProtocol(self), s.host, s.port), s.timeout)
        except TimeoutError:
            raise DeviceUnreachable(f"no answer from {s.address} within {s.timeout:g} s "
                                    "(connect timed out)") from None
        except socket.gaierror as exc:
            raise DeviceUnreachable(
                f"cannot resolve host name {s.host!r} (DNS lookup failed: {exc.strerror})"
            ) from None
        except ConnectionRefusedError:
            raise DeviceUnreachable(f"connection refused by {s.address}: nothing listens on TCP "
                                    f"port {s.port} (FINS/TCP off?) or a firewall rejects it"
                                    ) from None
        except OSError as exc:
            raise DeviceUnreachable(f"cannot connect to {s.address}: {exc.strerror or exc}"
                                    ) from None
        self._transport = transport
        self._lost = loop.create_future()
        try:
            client, server = await asyncio.wait_for(self._handshake(), s.timeout)
        except TimeoutError:
            self.close()
            raise DeviceUnreachable(f"{s.address} accepted the connection but did not answer "
                                    f"the FINS/TCP node address request within {s.timeout:g} s"
                                    ) from None
        except (OSError, asyncio.IncompleteReadError) as exc:
            self.close()
            raise DeviceUnreachable(f"{s.address} closed the connection during the FINS/TCP "
                                    f"handshake ({exc})") from None
        except DeviceUnreachable:
            self.close()
            raise
        self.nodes = (client, server)
        self.route = s.route(s.node if s.node is not None else server, client)

    async def _handshake(self) -> tuple[int, int]:
        s = self.settings
        assert self._transport is not None
        self._greeting = asyncio.get_running_loop().create_future()
        self._transport.write(node_address_request(s.source_node or 0))
        try:
            header, payload = await self._greeting
        except FinsFrameError as exc:
            raise DeviceUnreachable(f"{s.address} is no FINS/TCP server: {exc}") from None
        finally:
            self._greeting = None
        if header.error:
            raise DeviceUnreachable(f"{s.address} refused the FINS/TCP node address request: "
                                    f"{header.describe_error()}")
        if header.command != TCP_NODE_ADDRESS_RESPONSE:
            raise DeviceUnreachable(f"{s.address} answered the node address request with "
                                    f"FINS/TCP command {header.command}, not 1")
        try:
            client, server = parse_node_address_response(payload)
        except FinsFrameError as exc:
            raise DeviceUnreachable(f"{s.address}: {exc}") from None
        if s.source_node and client != s.source_node:
            raise DeviceUnreachable(f"{s.address} gave node {client}, not the {s.source_node} "
                                    "asked for (source_node)")
        return client, server

    def _received(self, chunk: bytes) -> None:
        """Bytes from the PLC: every whole FINS/TCP message in them, in order; the rest of a
        message begun is kept for the next bytes."""
        lost = self._lost
        if lost is None or lost.done():
            return  # out of step or closed: nothing more is taken
        if self._buffer:  # the rest of a message begun in an earlier chunk
            self._buffer += chunk
            data = bytes(self._buffer)
            self._buffer.clear()
        else:
            data = chunk
        pos, size = 0, len(data)
        try:
            while size - pos >= TCP_HEADER_SIZE:
                length = int.from_bytes(data[pos + 4:pos + 8], "big")
                if data[pos:pos + 4] != TCP_MAGIC or not 8 <= length <= TCP_MAX_LENGTH:
                    parse_tcp_header(data[pos:pos + TCP_HEADER_SIZE])  # raises, says why
                end = pos + 8 + length
                if size < end:
                    break
                greeting = self._greeting
                if greeting is not None:  # the handshake's answer
                    if not greeting.done():
                        greeting.set_result((parse_tcp_header(data[pos:pos + TCP_HEADER_SIZE]),
                                             data[pos + TCP_HEADER_SIZE:end]))
                else:
                    self._message(int.from_bytes(data[pos + 8:pos + 12], "big"),
                                  int.from_bytes(data[pos + 12:pos + 16], "big"),
                                  data[pos + TCP_HEADER_SIZE:end])
                pos = end
        except FinsFrameError as exc:
            greeting = self._greeting
            if greeting is not None and not greeting.done():
                greeting.set_exception(exc)
                return
            self._lose(f"bytes that are no FINS/TCP message came from {self.settings.address} "
                       f"({exc}): the stream is out of step")
            return
        if pos < size:
            self._buffer += data[pos:]

    def _closed(self, exc: Exception | None) -> None:
        """The connection ended: the PLC closed it (``exc`` None) or it broke."""
        s = self.settings
        greeting = self._greeting
        if greeting is not None and not greeting.done():
            got = bytes(self._buffer)
            whole = (8 + int.from_bytes(got[4:8], "big") if len(got) >= TCP_HEADER_SIZE
                     else TCP_HEADER_SIZE)
            greeting.set_exception(asyncio.IncompleteReadError(got, whole)
                                   if exc is None else exc)
        if exc is None:
            self._lose(f"{s.address} closed the connection")
        elif isinstance(exc, OSError):
            self._lose(f"the connection to {s.address} broke: {exc.strerror or exc}")
        else:
            self._lose(f"the connection to {s.address} broke: {exc}")

    def _message(self, command: int, error: int, payload: bytes) -> None:
        if command == TCP_FRAME:
            self._deliver(payload)
        elif command == TCP_FRAME_ERROR or error:
            words = TCP_ERRORS.get(error, f"error code 0x{error:08X}")
            pending = self._pending
            if pending is not None and not pending[2].done():
                pending[2].set_exception(RequestFailed(
                    "garbled", f"{self.settings.address} refused the frame: {words}"))
        else:
            self.stale += 1

    def _on_timeout(self, what: str, timeout: float) -> None:
        if self._buffer:
            got = len(self._buffer)
            self._lose(f"{what}: the answer from {self.settings.address} stopped after {got} "
                       f"bytes for {timeout:g} s (half a frame): the stream is out of step")
            raise ConnectionLost(f"{self.settings.address}: {what}: half an answer ({got} "
                                 "bytes); reconnecting")

    def _send(self, frame: bytes) -> None:
        assert self._transport is not None
        self._transport.write(TCP_MAGIC + (8 + len(frame)).to_bytes(4, "big")
                              + _TCP_FRAME_FIELDS + frame)

    def close(self) -> None:
        self._lose("closed")
        transport, self._transport = self._transport, None
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.close()


class _TcpProtocol(asyncio.Protocol):
    """The connection's events, handed to its :class:`TcpLink`."""

    def __init__(self, link: TcpLink) -> None:
        self._link = link

    def data_received(self, data: bytes) -> None:
        self._link._received(data)

    def eof_received(self) -> bool | None:
        return None  # the transport closes; connection_lost says so

    def connection_lost(self, exc: Exception | None) -> None:
        self._link._closed(exc)
