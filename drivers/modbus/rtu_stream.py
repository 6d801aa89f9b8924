"""One TCP connection carrying Modbus RTU frames: a serial device server's, or a DTU's.

:class:`RtuStream` is the asyncio protocol of such a connection, whichever side
opened it (the gateway dials a serial device server; a DTU dials the gateway). It
keeps what arrived in one buffer, and :meth:`RtuStream.transact` sends one request
and takes its answer out of the buffer with
:func:`~drivers.modbus.rtu_framing.find_answer`, dropping the DTU's packets
(registration, heartbeat) and skipping garbage on the way. Requests go one at a
time (the caller holds the link's lock): RTU has no transaction id.

What it counts, for the driver's errors (``pymodbus_adapter.exchange`` reads them
when a request times out): ``rx`` holds the bytes that came for requests, other
packets not included, so that a timeout after a half answer or garbage is
``garbled`` and a timeout in silence (or with a heartbeat alone) is ``timeout``;
``on_bad`` is told of an answer with a wrong CRC. ``packets`` and ``garbage``
count the packets dropped and the bytes skipped over the connection's life.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from drivers.modbus.rtu_framing import Expect, Packets, find_answer
from gateway.errors import ConnectionLost

__all__ = ["MAX_BUFFER", "RtuStream"]

log = logging.getLogger(__name__)

#: bytes kept while no request waits (a peer streaming garbage between polls cannot
#: fill the memory); the oldest go first
MAX_BUFFER = 8192


class RtuStream(asyncio.Protocol):
    """A TCP connection carrying Modbus RTU frames and, maybe, a DTU's own packets.

    ``packets``: what to drop from the stream; ``on_bad``: told why, for each answer
    whose CRC is wrong; ``rx``: a one-item counter of the bytes that came for requests;
    ``on_open``: called once the connection is made (a listener starts reading the
    DTU's registration packet). Owners may replace ``packets``, ``on_bad`` and ``rx``.
    """

    def __init__(self, packets: Packets, on_bad: Callable[[str], None] = lambda _: None,
                 rx: list[int] | None = None,
                 on_open: Callable[[RtuStream], None] | None = None) -> None:
        self.packets = packets
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.rx = rx if rx is not None else [0]
        self.on_bad = on_bad
        self._on_open = on_open
        #: other packets dropped (registration, heartbeat), and bytes skipped as garbage
        self.packets_dropped = 0
        self.garbage = 0
        loop = asyncio.get_running_loop()
        #: resolved when the connection is closed (from either side)
        self.lost: asyncio.Future[None] = loop.create_future()
        self._waiter: asyncio.Future[None] | None = None
        self._busy = False
        #: why the gateway closed the connection, when it did (for the lost-connection message)
        self.closed_because = ""

    # -- asyncio protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
        if self._on_open is not None:
            self._on_open(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self._busy and len(self.buffer) > MAX_BUFFER:
            excess = len(self.buffer) - MAX_BUFFER // 16
            self.garbage += excess
            del self.buffer[:excess]
        self._wake()

    def eof_received(self) -> bool:
        return False  # the peer closed its side: close ours

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- use --------------------------------------------------------------------------

    @property
    def open(self) -> bool:
        return not self.lost.done() and self.transport is not None \
            and not self.transport.is_closing()

    def close(self, because: str = "") -> None:
        """Close the connection (a request waiting for its answer ends at once);
        ``because`` says why, for the driver's message."""
        if because and not self.closed_because:
            self.closed_because = because
        if self.transport is not None:
            self.transport.abort()
        if not self.lost.done():
            self.lost.set_result(None)
        self._wake()

    async def more(self) -> None:
        """Wait until more bytes came; :class:`ConnectionLost` when the connection closed."""
        if self.lost.done():
            raise self._lost_error()
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None
        if self.lost.done():
            raise self._lost_error()

    def _lost_error(self) -> ConnectionLost:
        return ConnectionLost(self.closed_because or f"the connection with {self.peer} closed")

    def take(self, n: int) -> bytes:
        """The first ``n`` bytes of the buffer, removed from it."""
        taken = bytes(self.buffer[:n])
        del self.buffer[:n]
        return taken

    async def transact(self, request: bytes, expect: Expect) -> bytes:
        """Send ``request`` and return its answer frame (unit to CRC). Raises
        :class:`ConnectionLost`; a timeout is the caller's (cancel the task)."""
        if not self.open:
            raise self._lost_error()
        assert self.transport is not None
        self._drop_stale()
        self._busy = True
        self.transport.write(request)
        try:
            while True:
                found = find_answer(self.buffer, expect, self.packets)
                if found.kind == "answer":
                    del self.buffer[:found.used]
                    if found.packets:
                        self.packets_dropped += 1
                    self.rx[0] += len(found.frame)
                    return found.frame
                if found.kind == "packet":
                    del self.buffer[:found.used]
                    self.packets_dropped += 1
                elif found.kind == "garbage":
                    del self.buffer[:found.used]
                    self.garbage += found.used
                    self.rx[0] += found.used
                    if found.bad_crc:
                        self.on_bad(f"an answer of unit {expect.unit} with a wrong CRC")
                else:
                    await self.more()
        except asyncio.CancelledError:
            # the deadline: what is here is part of an answer (or garbage), not silence
            partial = self._answer_bytes()
            if partial:
                self.rx[0] += partial
                self.on_bad(f"{partial} bytes of an answer of unit {expect.unit} and then "
                            "nothing (half an answer)")
            raise
        finally:
            self._busy = False

    def _answer_bytes(self) -> int:
        """Bytes of the buffer that are neither whole packets nor the start of one."""
        if not self.packets:
            return len(self.buffer)
        kept, _ = self.packets.strip(self.buffer, 0)
        return len(kept) - self.packets.tail(kept)

    def _drop_stale(self) -> None:
        """Before a request: drop what came since the last answer (a late answer, garbage,
        whole packets), keeping the start of a packet still arriving."""
        while self.buffer:
            n = self.packets.at(self.buffer, 0) if self.packets else 0
            if not n:
                break
            del self.buffer[:n]
            self.packets_dropped += 1
        if self.buffer and not self.packets.arriving(self.buffer):
            self.garbage += len(self.buffer)
            log.debug("%s: %d stale bytes dropped before a request", self.peer, len(self.buffer))
            self.buffer.clear()
