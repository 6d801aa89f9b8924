"""Firmware images as MCUboot lays them out: a 32-byte header with the version, then the body.

The header is MCUboot's ``struct image_header`` (little-endian), parsed with smpclient's
``ImageHeader`` (:func:`~firmware_bridge.smp_adapter.read_image_header`)::

    offset size field
    0      4    magic            0x96F3B83D
    4      4    load_addr        0
    8      2    hdr_size         32
    10     2    protect_tlv_size 0
    12     4    img_size         bytes of the body after the header
    16     4    flags            0
    20     1    ver.major
    21     1    ver.minor
    22     2    ver.revision     the node's HELLO reports (major, minor, revision)
    24     4    ver.build_num
    28     4    (padding)

Real images carry a TLV trailer (hash, signature) after the body; the gateway only
needs the header's version and the SHA-256 of the whole file, which is what the
SMP upload sends and what the node reports as the image hash. The simulated node
(``hil/devices/smp_server.py``) treats a body that starts with :data:`BAD_MARKER`
as an image that fails its self-test: it never confirms and reverts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from firmware_bridge.smp_adapter import IMAGE_HEADER_SIZE, pack_image_header, read_image_header
from gateway.errors import ImageError

HEADER_SIZE = IMAGE_HEADER_SIZE  # 32
#: a simulated image whose body starts with this fails its self-test after boot
BAD_MARKER = b"CX-SIM-BAD-IMAGE"


@dataclass(frozen=True, slots=True)
class FirmwareImage:
    """An image file's bytes, its version and its SHA-256."""

    data: bytes
    version: tuple[int, int, int]
    build: int
    sha256: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))

    @classmethod
    def parse(cls, data: bytes) -> FirmwareImage:
        """Check the MCUboot header; raise :class:`~gateway.errors.ImageError` naming what
        is wrong."""
        if len(data) < HEADER_SIZE:
            raise ImageError(f"{len(data)} bytes: too short for an MCUboot header ({HEADER_SIZE})")
        header = read_image_header(data)
        if header.hdr_size < HEADER_SIZE or header.hdr_size + header.img_size > len(data):
            raise ImageError(
                f"header says {header.hdr_size} + {header.img_size} bytes, the file has {len(data)}"
            )
        return cls(bytes(data), header.version, header.build, hashlib.sha256(data).digest())


def build_image(version: tuple[int, int, int], size: int, *, bad: bool = False,
                build: int = 0, seed: int = 0) -> bytes:
    """A test image of ``size`` bytes in total: header + a deterministic body."""
    body_size = size - HEADER_SIZE
    if body_size < len(BAD_MARKER):
        raise ValueError(f"an image needs at least {HEADER_SIZE + len(BAD_MARKER)} bytes")
    header = pack_image_header(version, body_size, build)
    body = bytearray()
    block = hashlib.sha256(f"{version}{seed}".encode()).digest()
    while len(body) < body_size:
        block = hashlib.sha256(block).digest()
        body += block
    if bad:
        body[: len(BAD_MARKER)] = BAD_MARKER
    return header + bytes(body[:body_size])
