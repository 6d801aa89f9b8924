"""An smpclient transport that shares the node's serial port with the telemetry.

smpclient's own ``SMPSerialTransport`` opens the port itself; here the port
belongs to :class:`~firmware_bridge.driver.McuNodeDriver` (its one reader also
decodes the telemetry). :class:`SharedLineTransport` implements smpclient's
``SMPTransport`` on top of the driver: ``send`` encodes the request with
``smp.packet.encode`` (base64 lines, 0x06 0x09 / 0x04 0x14, CRC16, 0x0A) and
writes the lines through the driver; the driver's frame decoder hands every SMP
line to :meth:`SharedLineTransport.feed`, and ``receive`` reassembles them with
``smp.packet.decode`` and drops (counts) an answer smpclient could not parse
without raising.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import cbor2
from smp import header as smpheader
from smp import packet as smppacket
from smp.exceptions import SMPBadContinueDelimiter, SMPBadCRC, SMPBadStartDelimiter
from smpclient.transport import SMPTransport, SMPTransportDisconnected

from gateway.errors import ConnectionLost

log = logging.getLogger(__name__)

#: bytes per SMP line on the wire (the MCUmgr convention)
LINE_LENGTH = 128
#: the SMP frame length + CRC16 that share the server's reassembly buffer
FRAME_OVERHEAD = 4
#: message size before the server told its buffer size (MCUmgr parameters)
DEFAULT_MAX_MESSAGE = 256
#: SMP lines kept while nobody receives (stale answers beyond this are dropped)
MAX_QUEUED_LINES = 4096
#: body keys smpclient's message classes take as their own arguments
_RESERVED_KEYS = frozenset({"header", "smp_data"})


class SmpPort(Protocol):
    """The part of the node driver the transport uses."""

    smp_sink: object

    def write_raw(self, data: bytes) -> None: ...


class SharedLineTransport(SMPTransport):
    """smpclient transport over a port owned by the node driver (``address`` is ignored)."""

    def __init__(self, port: SmpPort, line_length: int = LINE_LENGTH) -> None:
        self._port = port
        self._line_length = line_length
        self._lines: asyncio.Queue[bytes] = asyncio.Queue(MAX_QUEUED_LINES)
        self._smp_server_transport_buffer_size: int | None = None
        #: SMP bytes written and received (line framing included), for figures
        self.bytes_out = 0
        self.bytes_in = 0
        self.broken_answers = 0
        #: the header of the request in flight (its answer has the same group and command)
        self._request: smpheader.Header | None = None

    def feed(self, line: bytes) -> None:
        """One SMP line from the driver's decoder (0x0A included)."""
        self.bytes_in += len(line)
        try:
            self._lines.put_nowait(line)
        except asyncio.QueueFull:
            log.warning("SMP: %d answer lines unread; dropping one", MAX_QUEUED_LINES)

    async def connect(self, address: str, timeout_s: float) -> None:
        self._drain()
        self._port.smp_sink = self.feed

    async def disconnect(self) -> None:
        if getattr(self._port, "smp_sink", None) == self.feed:
            self._port.smp_sink = None

    async def send(self, data: bytes) -> None:
        self._drain()  # an answer that came too late belongs to an abandoned request
        self._request = smpheader.Header.loads(data[: smpheader.Header.SIZE])
        try:
            for line in smppacket.encode(data, line_length=self._line_length):
                self._port.write_raw(line)
                self.bytes_out += len(line)
        except ConnectionLost as exc:
            raise SMPTransportDisconnected(str(exc)) from exc

    async def receive(self) -> bytes:
        """The next complete SMP answer; broken ones are skipped (the request times out)."""
        while True:
            decoder = smppacket.decode()
            next(decoder)
            try:
                while True:
                    decoder.send(await self._lines.get())
            except StopIteration as done:
                answer = bytes(done.value)
            except (SMPBadStartDelimiter, SMPBadContinueDelimiter, SMPBadCRC, ValueError) as exc:
                self.broken_answers += 1
                log.debug("SMP: broken answer dropped: %s", exc)
                continue
            problem = self._check(answer)
            if problem:
                self.broken_answers += 1
                log.debug("SMP: answer dropped: %s", problem)
                continue
            return answer

    def _check(self, answer: bytes) -> str:
        """Why smpclient could not parse ``answer`` without raising ("" when it can).

        smpclient checks the sequence and turns a body of the wrong shape into
        SMPValidationException, but a short header fails an assert, a body that is
        not CBOR raises cbor2's error, a CBOR body that is not a map of text keys (or
        that names ``header``) a TypeError, an answer of another group a
        SMPMismatchedGroupId: none of them tells a broken line from a bug. Dropped
        here, the request times out and the update handles it as a link error.
        """
        size = smpheader.Header.SIZE
        try:
            header = smpheader.Header.loads(answer[:size])
            body = cbor2.loads(answer[size:])
        except (AssertionError, ValueError, cbor2.CBORDecodeError) as exc:
            return f"bad header or body: {exc}"
        if not isinstance(body, dict) or not all(isinstance(k, str) for k in body):
            return f"body is not a CBOR map of text keys: {body!r:.80}"
        if _RESERVED_KEYS & body.keys():
            return f"body names {sorted(_RESERVED_KEYS & body.keys())}"
        asked = self._request
        if asked is not None and (int(header.group_id), int(header.command_id)) != (
            int(asked.group_id), int(asked.command_id)):
            return (f"answer to group {int(header.group_id)} command "
                    f"{int(header.command_id)}, asked {int(asked.group_id)} "
                    f"{int(asked.command_id)}")
        return ""

    async def send_and_receive(self, data: bytes) -> bytes:
        await self.send(data)
        return await self.receive()

    def initialize(self, smp_server_transport_buffer_size: int) -> None:
        self._smp_server_transport_buffer_size = smp_server_transport_buffer_size

    @property
    def mtu(self) -> int:
        return (self._smp_server_transport_buffer_size or DEFAULT_MAX_MESSAGE + FRAME_OVERHEAD)

    @property
    def max_unencoded_size(self) -> int:
        return self.mtu - FRAME_OVERHEAD

    def _drain(self) -> None:
        while not self._lines.empty():
            self._lines.get_nowait()
