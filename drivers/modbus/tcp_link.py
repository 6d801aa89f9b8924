"""One Modbus TCP connection of the project's own: MBAP framing, transaction ids, timeouts.

:class:`MbapConnection` is the asyncio protocol of a Modbus TCP device's connection. It
sends one request at a time (the driver holds the link's lock), each with the next
transaction id in an MBAP header built with ``struct``, and hands back the PDU of the
answer with that transaction id (and unit id); one :class:`~drivers.watchdog.Watchdog`
timer per connection ends a request that outlives its timeout, instead of a timer, a
future and a task wake-up of a library's per request. What the PDUs mean is not its
business: the driver decodes register answers from the bytes with NumPy and asks
pymodbus (:mod:`drivers.modbus.pymodbus_adapter`) for everything else, through
:class:`MbapDeviceClient`, which imports pymodbus the first time it is needed (a gateway
whose Modbus TCP devices are only polled for registers never does: 2.7 MiB, issue 21).

Why not pymodbus's TCP client, which the driver used until 2026-12-05 (issue 21): at
2,000 devices polled every second, its transaction manager, framer and the timers around
each request were about half of the gateway's Python per poll. The bytes on the wire and
what a driver sees are the same; how each case ends is pymodbus's:

- an answer with another transaction id (a late answer to an earlier request; 0 matches
  any) or another unit id than asked (unit 0 matches any) is dropped: the request
  waits on (counted in :attr:`MbapConnection.stale`);
- bytes that are no Modbus TCP frame (a protocol id other than 0, a length no ADU has)
  are dropped and counted as a bad frame: the request ends at its timeout as
  ``garbled``;
- a request starts with nothing received: half an answer left from a request that timed
  out is dropped (pymodbus cleared its buffer at each request too);
- an answer that cannot be decoded (the driver says so, :meth:`MbapConnection.undecodable`)
  closes the connection, its stream being out of step (the driver raises
  :class:`~gateway.errors.UndecodableAnswer`);
- the connection closing (either side) ends the request at once (the driver raises
  :class:`~gateway.errors.ConnectionLost`).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import TYPE_CHECKING, Any

from drivers.modbus.requests import BadFrames
from drivers.watchdog import Watchdog

if TYPE_CHECKING:
    from drivers.modbus.pymodbus_adapter import MbapClient

__all__ = ["MAX_ADU_LENGTH", "MbapConnection", "MbapDeviceClient"]

log = logging.getLogger(__name__)

#: MBAP header: transaction id, protocol id (0), length (unit id + PDU), unit id
_MBAP = struct.Struct(">HHHB")
#: the largest MBAP length: the unit id and a PDU of 253 bytes
MAX_ADU_LENGTH = 254
#: the transaction ids used, as pymodbus's client: 1..65000, then round again
_LAST_TID = 65000


class MbapConnection(asyncio.Protocol):
    """A Modbus TCP connection to ``where`` (``host:port``, for messages). ``bad`` counts
    the frames that are of no use; ``lost`` resolves when the connection closes."""

    def __init__(self, where: str, bad: BadFrames) -> None:
        self.where = where
        self.bad = bad
        #: bytes received for requests (the serial links' counter; TCP leaves it at 0)
        self.rx = [0]
        #: answers dropped: another transaction or unit id than the request waiting
        self.stale = 0
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._tid = 0
        #: the request waiting: its future (None: no answer in time), transaction and unit id
        self._waiting: asyncio.Future[bytes | None] | None = None
        self._waiting_tid = 0
        self._waiting_unit = 0
        self._watchdog = Watchdog(self._expired)
        self.lost.add_done_callback(self._on_lost)  # also when the driver lets go of it

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._lose()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        pos, size = 0, len(buffer)
        while size - pos >= 8:  # an MBAP header and a function code
            tid, protocol, length, unit = _MBAP.unpack_from(buffer, pos)
            if protocol or not 2 <= length <= MAX_ADU_LENGTH:
                what = f"protocol id {protocol}" if protocol else f"length {length}"
                self.bad(f"not a Modbus TCP frame: {what}, {size - pos} bytes")
                self._buffer = b""  # dropped; the request waits for its answer or times out
                return
            end = pos + 6 + length
            if length == 2 and size - pos == 9:  # an exception answer whose length is 1 short
                end += 1  # (pymodbus's framer takes it so too)
            if size < end:
                break
            waiting = self._waiting
            if (waiting is None or waiting.done() or (tid and tid != self._waiting_tid)
                    or (self._waiting_unit and unit != self._waiting_unit)):
                self.stale += 1
                log.debug("%s: dropped an answer (transaction %d, unit %d) nobody waits for",
                          self.where, tid, unit)
            else:
                waiting.set_result(buffer[pos + 7:end])
            pos = end
        self._buffer = buffer[pos:] if pos < size else b""

    # -- requests -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        transport = self._transport
        return transport is not None and not self.lost.done() and not transport.is_closing()

    async def send(self, unit: int, pdu: bytes, timeout: float | None) -> bytes | None:
        """Send ``pdu`` (from its function code on) to ``unit``; return the answer's PDU,
        or None when the connection closed or, with a ``timeout``, none came in time
        (:func:`~drivers.modbus.pymodbus_adapter.unanswered` says which). A cancellation
        from outside leaves the connection usable (a late answer is dropped by its
        transaction id)."""
        transport = self._transport
        if transport is None or self.lost.done():
            return None
        tid = self._tid = self._tid % _LAST_TID + 1
        loop = asyncio.get_running_loop()
        waiting: asyncio.Future[bytes | None] = loop.create_future()
        self._waiting, self._waiting_tid, self._waiting_unit = waiting, tid, unit
        self._buffer = b""
        if timeout is not None:
            self._watchdog.arm(loop, timeout)
        try:
            transport.write(_MBAP.pack(tid, 0, len(pdu) + 1, unit) + pdu)
            return await waiting
        finally:
            self._watchdog.disarm()
            self._waiting = None

    def undecodable(self, reason: str) -> None:
        """The answer waited for cannot be decoded: count it and close the connection (the
        stream is out of step)."""
        self.bad(reason)
        self.close()

    def close(self) -> None:
        """Close the connection (safe to call twice); a request waiting ends at once."""
        transport, self._transport = self._transport, None
        self._lose()
        if transport is not None:
            transport.abort()

    def _lose(self) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self._on_lost(self.lost)

    def _on_lost(self, _: object) -> None:
        self._watchdog.stop()
        waiting = self._waiting
        if waiting is not None and not waiting.done():
            waiting.set_result(None)  # ended: request() tells a loss from a timeout

    def _expired(self) -> None:
        waiting = self._waiting
        if waiting is not None and not waiting.done():
            waiting.set_result(None)  # no answer in time


class MbapDeviceClient:
    """A Modbus TCP device's connection as the driver's client: pymodbus's read and write
    methods and its :meth:`~drivers.modbus.pymodbus_adapter.MbapClient.decode` (a
    :class:`~drivers.modbus.pymodbus_adapter.MbapClient` on :attr:`transport`, built, and
    pymodbus imported, the first time one of them is asked for); register reads need none
    of it (the driver sends their bytes on :attr:`transport`)."""

    def __init__(self, transport: MbapConnection) -> None:
        self.transport = transport
        self._pymodbus: MbapClient | None = None

    @property
    def connected(self) -> bool:
        return self.transport.connected

    def close(self) -> None:
        self.transport.close()

    def pymodbus(self) -> MbapClient:
        """pymodbus's client on the connection (made on first use)."""
        client = self._pymodbus
        if client is None:
            from drivers.modbus.pymodbus_adapter import MbapClient

            client = self._pymodbus = MbapClient(self.transport)
        return client

    def __getattr__(self, name: str) -> Any:
        """``read_coils``, ``write_register``, ``decode``, ...: pymodbus's client's."""
        if name.startswith("_"):  # not built yet (copy, pickle): no pymodbus for that
            raise AttributeError(name)
        return getattr(self.pymodbus(), name)
