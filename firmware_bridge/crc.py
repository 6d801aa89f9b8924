"""CRC-16/CCITT-FALSE, the frame check of the link protocol.

Parameters (Rocksoft model): width 16, poly 0x1021, init 0xFFFF, refin false,
refout false, xorout 0x0000, **check 0x29B1** (the CRC of ASCII ``"123456789"``).
Also known as CRC-16/IBM-3740 in the reveng catalogue. ``binascii.crc_hqx`` is this
CRC with the init value passed in, so the hot path runs in C.
"""

from __future__ import annotations

import binascii

POLY = 0x1021
INIT = 0xFFFF
#: CRC-16/CCITT-FALSE over b"123456789"
CHECK = 0x29B1


def crc16(data: bytes | bytearray | memoryview, crc: int = INIT) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (continue a running CRC by passing it as ``crc``)."""
    return binascii.crc_hqx(data, crc)


def crc16_bitwise(data: bytes | bytearray | memoryview, crc: int = INIT) -> int:
    """The same CRC computed bit by bit, as a C implementation on a node would (reference)."""
    for byte in bytes(data):
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ POLY) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc
