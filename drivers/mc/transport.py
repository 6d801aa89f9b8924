"""The wire under the MC driver: one request frame out, its answer frame back, TCP or UDP.

This is the driver's own small client (no protocol library): asyncio streams for
TCP, a datagram endpoint for UDP. It knows frames only as far as it must to cut
them out of a stream (the header's length field, frames.py); the driver checks
their contents. The caller bounds each exchange with its timeout and tells the
link to :meth:`Link.resync` when an answer went missing or came garbled:

- TCP: a 3E answer has no serial number, so an answer arriving after its request
  timed out would be taken for the answer to the next one. The stream is out of
  step; it is closed, and the next request opens a fresh connection.
- UDP: each datagram is one frame. With 3E a late datagram is as dangerous, so the
  socket is replaced (a late answer then finds no one listening); with 4E, answers
  to other serial numbers are recognised and dropped.

Errors: :class:`Unreachable` (no connection), :class:`Closed` (the connection broke
or the device refused the datagram), :class:`Garbled` (bytes that are no answer frame).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from abc import ABC, abstractmethod
from collections import deque

from drivers.mc.frames import FrameError, FrameKind, answer_length, answer_serial, header_size

__all__ = ["Closed", "Garbled", "Link", "LinkError", "TcpLink", "UdpLink", "Unreachable"]

#: answers queued on a UDP socket before more are dropped (a flooding peer costs no memory)
_UDP_QUEUE = 16


class LinkError(Exception):
    """Base of the link's errors; ``reason`` is readable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unreachable(LinkError):
    """The device cannot be reached (refused, DNS, connect timeout)."""


class Closed(LinkError):
    """The connection broke during an exchange (closed by the device, reset, refused)."""


class Garbled(LinkError):
    """Bytes came that are not an answer frame."""


class Link(ABC):
    """One connection to an SLMP port. One exchange at a time (the driver holds a lock)."""

    def __init__(self, host: str, port: int, kind: FrameKind) -> None:
        self.host, self.port, self.kind = host, port, kind
        #: bytes of the current answer received so far (an answer cut off shows as > 0)
        self.partial = 0
        #: answers dropped because they belonged to an earlier request (4E serial numbers)
        self.late_answers = 0

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    @abstractmethod
    def is_open(self) -> bool: ...

    @abstractmethod
    async def open(self) -> None:
        """Connect; :class:`Unreachable` with a readable reason. The caller bounds the time."""

    @abstractmethod
    def close(self) -> None:
        """Close; safe to call twice, never raises."""

    @abstractmethod
    async def exchange(self, request: bytes, serial: int | None) -> bytes:
        """Send ``request`` and return the whole answer frame (4E: the one with ``serial``)."""

    def resync(self) -> None:
        """An answer went missing or came garbled: drop what could be out of step."""
        self.close()


def _unreachable(where: str, exc: BaseException) -> Unreachable:
    if isinstance(exc, socket.gaierror):
        return Unreachable(f"cannot resolve the host name of {where} (DNS lookup failed: "
                           f"{exc.strerror})")
    if isinstance(exc, ConnectionRefusedError):
        return Unreachable(f"connection refused by {where}: nothing listens on the port (is "
                           "the SLMP port opened in the CPU's Ethernet settings?) or a "
                           "firewall rejects it")
    if isinstance(exc, OSError):
        return Unreachable(f"cannot connect to {where}: {exc.strerror or exc}")
    return Unreachable(f"cannot connect to {where}: {exc}")


class TcpLink(Link):
    """SLMP over TCP: answers cut out of the byte stream by their length field."""

    def __init__(self, host: str, port: int, kind: FrameKind) -> None:
        super().__init__(host, port, kind)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def is_open(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def open(self) -> None:
        self.close()
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except (OSError, ValueError, UnicodeError) as exc:  # ValueError/UnicodeError: bad names
            raise _unreachable(self.where, exc) from None
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader, self._writer = reader, writer

    def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()

    async def exchange(self, request: bytes, serial: int | None) -> bytes:
        reader, writer = self._reader, self._writer
        if reader is None or writer is None or writer.is_closing():
            raise Closed(f"the connection to {self.where} is closed")
        self.partial = 0
        try:
            writer.write(request)
            await writer.drain()
            while True:
                header = await self._read(reader, header_size(self.kind))
                try:
                    length = answer_length(header, self.kind)
                except FrameError as exc:
                    raise Garbled(exc.reason) from None
                frame = header + await self._read(reader, length)
                if serial is not None and answer_serial(frame) != serial:
                    self.late_answers += 1  # an answer to a request that timed out: skip it
                    self.partial = 0
                    continue
                return frame
        except (ConnectionError, OSError) as exc:
            self.close()
            raise Closed(f"the connection to {self.where} broke: "
                         f"{exc.strerror or exc}") from None  # type: ignore[union-attr]

    async def _read(self, reader: asyncio.StreamReader, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = await reader.read(n - len(data))
            if not chunk:
                self.close()
                cut = f" after {self.partial} bytes of an answer" if self.partial else ""
                raise Closed(f"the connection to {self.where} was closed by the device{cut}")
            data += chunk
            self.partial += len(chunk)
        return bytes(data)


class _Datagrams(asyncio.DatagramProtocol):
    """Received datagrams (the newest few: a flooding peer costs no memory) and the last
    socket error, with one waiter woken by either."""

    def __init__(self) -> None:
        self.received: deque[bytes] = deque(maxlen=_UDP_QUEUE)
        self.error: OSError | None = None
        self._waiter: asyncio.Future[None] | None = None

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.received.append(data)
        self._wake()

    def error_received(self, exc: Exception) -> None:
        self.error = exc if isinstance(exc, OSError) else OSError(str(exc))
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.error_received(exc or OSError("socket closed"))

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self) -> None:
        """Until a datagram or an error is there."""
        while not self.received and self.error is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None


class UdpLink(Link):
    """SLMP over UDP: one datagram each way. A connected socket: the kernel drops datagrams
    from anyone else, and an ICMP "port unreachable" shows as :class:`Closed`."""

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
        transport, self._transport, self._protocol = self._transport, None, None
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.close()

    def resync(self) -> None:
        if self.kind == "3e":
            self.close()  # a late 3E answer must find no one: the next exchange opens anew
        # 4E: answers to other serial numbers are dropped as they come

    async def exchange(self, request: bytes, serial: int | None) -> bytes:
        if not self.is_open:
            await self.open()
        transport, protocol = self._transport, self._protocol
        assert transport is not None and protocol is not None
        while protocol.received:  # answers to requests given up on: not ours
            protocol.received.popleft()
            self.late_answers += 1
        self.partial = 0
        protocol.error = None
        transport.sendto(request)
        while True:
            data = await self._next(protocol)
            self.partial = len(data)
            size = header_size(self.kind)
            try:
                if len(data) < size:
                    raise FrameError("garbled", f"a datagram of {len(data)} bytes, shorter "
                                     "than an answer header")
                length = answer_length(data[:size], self.kind)
            except FrameError as exc:
                raise Garbled(exc.reason) from None
            if len(data) != size + length:
                raise Garbled(f"a datagram of {len(data)} bytes announcing {size + length}")
            if serial is not None and answer_serial(data) != serial:
                self.late_answers += 1
                continue
            return data

    async def _next(self, protocol: _Datagrams) -> bytes:
        await protocol.wait()
        if protocol.received:
            return protocol.received.popleft()
        error, protocol.error = protocol.error, None
        self.close()
        if isinstance(error, ConnectionRefusedError):
            raise Closed(f"{self.where}/udp refused the request (port unreachable: is the "
                         "device's SLMP UDP port open?)")
        raise Closed(f"{self.where}/udp: {getattr(error, 'strerror', None) or error}")
