"""smpclient behind one module: the only place the project reaches smpclient (and ``smp``,
its wire format package).

- :class:`SharedLineTransport`: smpclient's ``SMPTransport`` on a serial port the node
  driver owns. smpclient's own ``SMPSerialTransport`` opens the port itself; here the port
  belongs to :class:`~firmware_bridge.driver.McuNodeDriver` (its one reader also decodes
  the telemetry). ``send`` encodes the request with ``smp.packet.encode`` (base64 lines,
  0x06 0x09 / 0x04 0x14, CRC16, 0x0A) and writes the lines through the driver; the
  driver's frame decoder hands every SMP line to :meth:`SharedLineTransport.feed`, and
  ``receive`` reassembles them with ``smp.packet.decode`` and drops (counts) an answer
  smpclient could not parse without raising.
- :class:`SmpSession`: the MCUmgr requests of a firmware update (image state, upload,
  test, confirm, reset) in the update's words; an error answer is :class:`NodeRefused`.
- :func:`map_smp_errors`: smpclient's exceptions as the project's (:mod:`gateway.errors`):
  no answer in time, a disconnected transport or an answer out of sequence is
  :class:`ConnectionLost` (the link is cut: an upload resumes); an upload the node
  refuses is :class:`HashMismatch` (its SHA-256 of the image differs) or
  :class:`NodeRefused`; an answer smpclient cannot validate is
  :class:`FirmwareUpdateError`.
- :func:`read_image_header`, :func:`pack_image_header`: MCUboot's image header
  (``smpclient.mcuboot``); a header that is not one is :class:`ImageError`.

Reliance on smpclient beyond its documented API (smpclient is pinned to 7.x), each pinned
by tests/firmware_bridge/test_fb_smp_transport.py:

- ``SMPTransport._smp_server_transport_buffer_size``: the attribute smpclient's transport
  protocol declares and its ``initialize`` sets; :attr:`SharedLineTransport.mtu` reads the
  server's buffer size from it;
- which answers ``SMPClient.request`` cannot parse without raising an error that does not
  tell a broken line from a bug (a short header fails an assert, a body that is not CBOR
  raises cbor2's error, a body that is not a map of text keys a TypeError, another
  group's answer ``SMPMismatchedGroupId``): the transport drops them
  (:meth:`SharedLineTransport._check`), the request times out as a link error, while a
  CBOR map of the wrong fields is still smpclient's ``SMPValidationException``;
- ``SMPUploadError``'s text: smpclient raises it with "mismatched SHA256" when the node's
  hash of the uploaded image differs from the one sent, the one upload error that is the
  image's fault.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import cbor2
from smp import header as smpheader
from smp import packet as smppacket
from smp.exceptions import SMPBadContinueDelimiter, SMPBadCRC, SMPBadStartDelimiter
from smpclient import SMPClient
from smpclient.exceptions import SMPBadSequence, SMPClientException, SMPUploadError
from smpclient.generics import error
from smpclient.mcuboot import IMAGE_HEADER_STRUCT, IMAGE_MAGIC, ImageHeader, MCUBootImageError
from smpclient.requests.image_management import ImageStatesRead, ImageStatesWrite
from smpclient.requests.os_management import ResetWrite
from smpclient.transport import SMPTransport, SMPTransportDisconnected

from gateway.errors import (
    ConnectionLost,
    FirmwareUpdateError,
    HashMismatch,
    ImageError,
    NodeRefused,
)

__all__ = [
    "IMAGE_HEADER_SIZE",
    "ImageHeaderFields",
    "SharedLineTransport",
    "SmpSession",
    "map_smp_errors",
    "pack_image_header",
    "read_image_header",
]

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

    smp_sink: Callable[[bytes], None] | None

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


# -- errors --------------------------------------------------------------------------------

#: smpclient's words for "the link is cut or out of step" (an upload resumes after them)
_LINK_ERRORS = (TimeoutError, SMPTransportDisconnected, SMPBadSequence)
#: how smpclient says that the node's SHA-256 of the upload differs from the one sent
_HASH_MISMATCH = "mismatched SHA256"


@contextmanager
def map_smp_errors(device: str, what: str) -> Iterator[None]:
    """smpclient's exceptions raised in the block as the project's (see the module
    docstring); ``what`` ("read the image state") and ``device`` name them."""
    try:
        yield
    except _LINK_ERRORS as exc:
        raise ConnectionLost(f"{device}: cannot {what}: {exc or type(exc).__name__}") from exc
    except SMPUploadError as exc:
        if _HASH_MISMATCH in str(exc):
            raise HashMismatch(f"{device}: the node's SHA-256 of the uploaded image differs "
                               "from the file's; the image was discarded") from None
        raise NodeRefused(f"{device}: upload refused: {exc}") from None
    except SMPClientException as exc:
        raise FirmwareUpdateError(f"{device}: cannot {what}: {type(exc).__name__}: {exc}; "
                                  "the node keeps a bootable image (MCUboot)") from exc


# -- the requests of an update ---------------------------------------------------------------


class SmpSession:
    """smpclient's client on a transport, with the requests of a firmware update.

    Every method raises the project's errors only (:func:`map_smp_errors`);
    :class:`NodeRefused` when the node answers with an error.
    """

    def __init__(self, transport: SMPTransport, device: str, address: str,
                 timeout: float) -> None:
        self.device = device
        self._client = SMPClient(transport, address, timeout_s=timeout)

    async def connect(self) -> None:
        with map_smp_errors(self.device, "connect"):
            await self._client.connect()

    async def disconnect(self) -> None:
        with map_smp_errors(self.device, "disconnect"):
            await self._client.disconnect()

    async def active_image_hash(self) -> bytes | None:
        """The SHA-256 of the image the node runs (None when it reports none)."""
        response = await self._request(ImageStatesRead(), "read the image state")
        for state in response.images:
            if state.active:
                return bytes(state.hash) if state.hash is not None else None
        return None

    async def upload(self, image: bytes, first_timeout: float,
                     timeout: float) -> AsyncIterator[int]:
        """Send ``image`` in chunks with its SHA-256; yields the offset the node holds. A
        node that holds part of the same image (same ``sha`` and ``len``) resumes there."""
        with map_smp_errors(self.device, "upload"):
            async for offset in self._client.upload(image, first_timeout_s=first_timeout,
                                                    subsequent_timeout_s=timeout):
                yield offset

    async def mark_for_test(self, sha256: bytes) -> None:
        """The uploaded image boots once on the next reset (MCUboot's test swap)."""
        await self._request(ImageStatesWrite(hash=sha256, confirm=False),
                            "mark the image for test")

    async def confirm(self, sha256: bytes) -> None:
        """Keep the running image for good; :class:`NodeRefused` when the node will not."""
        await self._request(ImageStatesWrite(hash=sha256, confirm=True), "confirm the image")

    async def reset(self) -> None:
        """Ask the node to reset (its answer may be lost in the reset: not checked)."""
        with map_smp_errors(self.device, "reset the node"):
            await self._client.request(ResetWrite())

    async def _request(self, request: Any, what: str) -> Any:
        with map_smp_errors(self.device, what):
            response = await self._client.request(request)
        if error(response):
            raise NodeRefused(f"{self.device}: the node refused to {what}: {response}")
        return response


# -- MCUboot image header ----------------------------------------------------------------------

IMAGE_HEADER_SIZE: int = IMAGE_HEADER_STRUCT.size  # 32


@dataclass(frozen=True, slots=True)
class ImageHeaderFields:
    """What the gateway reads of MCUboot's ``struct image_header``."""

    hdr_size: int
    img_size: int
    version: tuple[int, int, int]
    build: int


def read_image_header(data: bytes) -> ImageHeaderFields:
    """The header at the start of ``data`` (at least :data:`IMAGE_HEADER_SIZE` bytes);
    :class:`ImageError` when it is not an MCUboot header."""
    try:
        header = ImageHeader.loads(data[:IMAGE_HEADER_SIZE])
    except (MCUBootImageError, ValueError) as exc:
        raise ImageError(f"not an MCUboot image: {exc}") from None
    v = header.ver
    return ImageHeaderFields(header.hdr_size, header.img_size, (v.major, v.minor, v.revision),
                             v.build_num)


def pack_image_header(version: tuple[int, int, int], body_size: int, build: int = 0) -> bytes:
    """An MCUboot header (magic, 32-byte header, no TLV protection, no flags)."""
    major, minor, revision = version
    return IMAGE_HEADER_STRUCT.pack(IMAGE_MAGIC, 0, IMAGE_HEADER_SIZE, 0, body_size, 0,
                                    major, minor, revision, build)
