"""The wire under the MC driver: one request frame out, its answer frame back, TCP or UDP.

This is the driver's own small client (no protocol library): an asyncio protocol for
TCP, a datagram endpoint for UDP. It knows frames only as far as it must to cut them
out of a stream (the header's length field, frames.py); the driver checks their
contents. Each exchange has a deadline the link keeps itself (one watchdog timer per
link, no task cancellation), and the link is told to :meth:`Link.resync` when an answer went
missing or came garbled:

- TCP: a 3E answer has no serial number, so an answer arriving after its request
  timed out would be taken for the answer to the next one. The stream is out of
  step; it is closed, and the next request opens a fresh connection.
- UDP: each datagram is one frame. With 3E a late datagram is as dangerous, so the
  socket is replaced (a late answer then finds no one listening); with 4E, answers
  to other serial numbers are recognised and dropped.

Errors, all of gateway/errors.py: :class:`DeviceUnreachable` (no connection),
:class:`RequestFailed` (the deadline passed: counted ``timeout``, or ``short_answer`` when
part of an answer had come), :class:`ConnectionLost` (the connection broke or the device
refused the datagram), :class:`McFrameError` ``garbled`` (bytes that are no answer frame).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable

from drivers.mc.frames import MAX_ANSWER_DATA, FrameKind, answer_length, answer_serial, header_size
from gateway.errors import ConnectionLost, DeviceUnreachable, McFrameError, RequestFailed

__all__ = ["Link", "TcpLink", "UdpLink"]

#: answers queued on a UDP socket before the oldest are dropped (a flooding peer costs no
#: memory)
_UDP_QUEUE = 16
#: bytes kept from a TCP stream waiting to be read: more than any answer (a flooding peer
#: costs no memory; the driver resyncs on the garbage)
_TCP_BUFFER = 2 * (13 + MAX_ANSWER_DATA)


class _Inbox:
    """What a protocol received, with one waiter woken by data, an error or the deadline."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.expired = False
        self._waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def expire(self) -> None:
        self.expired = True
        self.wake()

    async def wait(self) -> None:
        """Until :meth:`wake` (data, an error, the deadline)."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


class Link(ABC):
    """One connection to an SLMP port. One exchange at a time (the driver holds a lock)."""

    def __init__(self, host: str, port: int, kind: FrameKind) -> None:
        self.host, self.port, self.kind = host, port, kind
        self._header = header_size(kind)
        #: answers dropped because they belonged to an earlier request (4E serial numbers)
        self.late_answers = 0
        self._waiting: _Inbox | None = None  # the exchange waiting for its answer
        self._deadline = 0.0
        self._watchdog: asyncio.TimerHandle | None = None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    @abstractmethod
    def is_open(self) -> bool: ...

    @abstractmethod
    async def open(self) -> None:
        """Connect; :class:`DeviceUnreachable` with a readable reason. The caller bounds the
        time."""

    @abstractmethod
    def close(self) -> None:
        """Close; safe to call twice, never raises."""

    @abstractmethod
    async def exchange(self, request: bytes, serial: int | None, timeout: float,
                       meanwhile: Callable[[], None] | None = None) -> bytes:
        """Send ``request`` and return the whole answer frame (4E: the one with ``serial``)
        within ``timeout`` seconds, else :class:`RequestFailed` (``timeout``, or
        ``short_answer`` when part of one had come). ``meanwhile`` runs once the request
        is on its way (the driver decodes the previous answer then)."""

    def resync(self) -> None:
        """An answer went missing or came garbled: drop what could be out of step."""
        self.close()

    def _no_answer(self, timeout: float, partial: int) -> RequestFailed:
        if partial:
            return RequestFailed("short_answer", f"the answer was cut off ({partial} bytes, "
                                 f"then nothing within {timeout:g} s)")
        return RequestFailed("timeout", f"no answer within {timeout:g} s")

    def _arm(self, inbox: _Inbox, timeout: float) -> None:
        """Expire ``inbox`` ``timeout`` s from now. One watchdog timer per link, moved on to
        the current deadline when it fires, rather than a timer per request: thousands of
        requests a second would otherwise each push and cancel a heap entry."""
        loop = asyncio.get_running_loop()
        self._waiting, self._deadline = inbox, loop.time() + timeout
        watchdog = self._watchdog
        if watchdog is not None and watchdog.when() > self._deadline:
            watchdog.cancel()  # a shorter timeout than the one it waits for
            watchdog = None
        if watchdog is None:
            self._watchdog = loop.call_at(self._deadline, self._watch)

    def _disarm(self) -> None:
        self._waiting = None

    def _watch(self) -> None:
        self._watchdog = None
        inbox = self._waiting
        if inbox is None:
            return
        loop = asyncio.get_running_loop()
        if loop.time() >= self._deadline:
            inbox.expire()
        else:
            self._watchdog = loop.call_at(self._deadline, self._watch)

    def _stop_watching(self) -> None:
        watchdog, self._watchdog, self._waiting = self._watchdog, None, None
        if watchdog is not None:
            watchdog.cancel()


def _unreachable(where: str, exc: BaseException) -> DeviceUnreachable:
    if isinstance(exc, socket.gaierror):
        return DeviceUnreachable(f"cannot resolve the host name of {where} (DNS lookup failed: "
                           f"{exc.strerror})")
    if isinstance(exc, ConnectionRefusedError):
        return DeviceUnreachable(f"connection refused by {where}: nothing listens on the port (is "
                           "the SLMP port opened in the CPU's Ethernet settings?) or a "
                           "firewall rejects it")
    if isinstance(exc, OSError):
        return DeviceUnreachable(f"cannot connect to {where}: {exc.strerror or exc}")
    return DeviceUnreachable(f"cannot connect to {where}: {exc}")


class _Stream(asyncio.Protocol):
    """A TCP connection's received bytes, bounded."""

    def __init__(self) -> None:
        self.inbox = _Inbox()
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # create_connection hands a stream protocol an asyncio.Transport
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _TCP_BUFFER:
            del self.buffer[:-_TCP_BUFFER]
        self.inbox.wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.inbox.error = exc
        self.inbox.wake()


class TcpLink(Link):
    """SLMP over TCP: answers cut out of the byte stream by their length field."""

    def __init__(self, host: str, port: int, kind: FrameKind) -> None:
        super().__init__(host, port, kind)
        self._stream: _Stream | None = None

    @property
    def is_open(self) -> bool:
        stream = self._stream
        return stream is not None and not stream.closed

    async def open(self) -> None:
        self.close()
        loop = asyncio.get_running_loop()
        try:
            transport, stream = await loop.create_connection(_Stream, self.host, self.port)
        except (OSError, ValueError, UnicodeError) as exc:  # ValueError/UnicodeError: bad names
            raise _unreachable(self.where, exc) from None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._stream = stream

    def close(self) -> None:
        self._stop_watching()
        stream, self._stream = self._stream, None
        if stream is not None and stream.transport is not None:
            with contextlib.suppress(Exception):
                stream.transport.close()

    async def exchange(self, request: bytes, serial: int | None, timeout: float,
                       meanwhile: Callable[[], None] | None = None) -> bytes:
        stream = self._stream
        if not self.is_open or stream is None or stream.transport is None:
            raise ConnectionLost(f"the connection to {self.where} is closed")
        inbox, buffer = stream.inbox, stream.buffer
        buffer.clear()  # nothing may be pending between exchanges: it belongs to no request
        inbox.expired = False
        stream.transport.write(request)
        self._arm(inbox, timeout)
        if meanwhile is not None:
            meanwhile()
        try:
            while True:
                frame = self._cut(buffer, serial)
                if frame is not None:
                    return frame
                if stream.closed:
                    self.close()
                    error = inbox.error
                    cut = f" after {len(buffer)} bytes of an answer" if buffer else ""
                    if isinstance(error, OSError):
                        raise ConnectionLost(f"the connection to {self.where} broke{cut}: "
                                             f"{error.strerror or error}")
                    raise ConnectionLost(f"the connection to {self.where} was closed by the "
                                         f"device{cut}")
                if inbox.expired:
                    raise self._no_answer(timeout, len(buffer))
                await inbox.wait()
        finally:
            self._disarm()

    def _cut(self, buffer: bytearray, serial: int | None) -> bytes | None:
        """The answer at the start of ``buffer``, taken out of it; None while incomplete."""
        size = self._header
        while len(buffer) >= size:
            end = size + answer_length(bytes(buffer[:size]), self.kind)  # or McFrameError
            if len(buffer) < end:
                return None
            if len(buffer) == end:  # the usual case: the answer and nothing else, one copy
                frame = bytes(buffer)
                buffer.clear()
            else:
                frame = bytes(buffer[:end])
                del buffer[:end]
            if serial is None or answer_serial(frame) == serial:
                return frame
            self.late_answers += 1  # an answer to a request that timed out: skip it
        return None


class _Datagrams(asyncio.DatagramProtocol):
    """Received datagrams (the newest few) and the last socket error."""

    def __init__(self) -> None:
        self.inbox = _Inbox()
        self.received: deque[bytes] = deque(maxlen=_UDP_QUEUE)

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.received.append(data)
        self.inbox.wake()

    def error_received(self, exc: Exception) -> None:
        self.inbox.error = exc
        self.inbox.wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.error_received(exc or OSError("socket closed"))


class UdpLink(Link):
    """SLMP over UDP: one datagram each way. A connected socket: the kernel drops datagrams
    from anyone else, and an ICMP "port unreachable" shows as :class:`ConnectionLost`."""

    def __init__(self, host: str, port: int, kind: FrameKind) -> None:
        super().__init__(host, port, kind)
        self._transport: asyncio.DatagramTransport | None = None
        self._protocol: _Datagrams | None = None

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    async def open(self) -> None:
        self.close()
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                _Datagrams, remote_addr=(self.host, self.port))
        except (OSError, ValueError, UnicodeError) as exc:
            raise _unreachable(f"{self.where}/udp", exc) from None
        self._transport, self._protocol = transport, protocol

    def close(self) -> None:
        self._stop_watching()
        transport, self._transport, self._protocol = self._transport, None, None
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.close()

    def resync(self) -> None:
        if self.kind == "3e":
            self.close()  # a late 3E answer must find no one: the next exchange opens anew
        # 4E: answers to other serial numbers are dropped as they come

    async def exchange(self, request: bytes, serial: int | None, timeout: float,
                       meanwhile: Callable[[], None] | None = None) -> bytes:
        if not self.is_open:
            await self.open()
        transport, protocol = self._transport, self._protocol
        assert transport is not None and protocol is not None
        inbox, received = protocol.inbox, protocol.received
        while received:  # answers to requests given up on: not ours
            received.popleft()
            self.late_answers += 1
        inbox.error, inbox.expired = None, False
        transport.sendto(request)
        self._arm(inbox, timeout)
        if meanwhile is not None:
            meanwhile()
        try:
            while True:
                while received:
                    data = received.popleft()
                    if self._checked(data, serial):
                        return data
                if inbox.error is not None:
                    raise self._refused(inbox.error)
                if inbox.expired:
                    raise self._no_answer(timeout, 0)
                await inbox.wait()
        finally:
            self._disarm()

    def _checked(self, data: bytes, serial: int | None) -> bool:
        """True for the answer to ``serial``; False for a late one; :class:`McFrameError`
        (``garbled``) else."""
        size = self._header
        if len(data) < size:
            raise McFrameError("garbled", f"a datagram of {len(data)} bytes, shorter than an "
                               "answer header")
        length = answer_length(data[:size], self.kind)
        if len(data) != size + length:
            raise McFrameError("garbled", f"a datagram of {len(data)} bytes announcing "
                               f"{size + length}")
        if serial is not None and answer_serial(data) != serial:
            self.late_answers += 1
            return False
        return True

    def _refused(self, error: BaseException) -> ConnectionLost:
        self.close()
        if isinstance(error, ConnectionRefusedError):
            return ConnectionLost(f"{self.where}/udp refused the request (port unreachable: "
                                  "is the device's SLMP UDP port open?)")
        return ConnectionLost(f"{self.where}/udp: {getattr(error, 'strerror', None) or error}")
