"""Consistent Overhead Byte Stuffing (COBS): frames without 0x00, so 0x00 delimits them.

Encoding splits the data at each zero byte into blocks of at most 254 non-zero
bytes; each block is sent as a code byte (block length + 1) followed by the
block. A code of 0xFF means "254 bytes, no zero follows". Overhead: one byte per
254 bytes, at most, plus one.
"""

from __future__ import annotations

from gateway.errors import CobsError


def encode(data: bytes | bytearray | memoryview) -> bytes:
    """COBS-encode ``data``; the result holds no 0x00 byte (the delimiter is not added)."""
    data = bytes(data)
    out = bytearray()
    start = 0
    n = len(data)
    while True:
        zero = data.find(0, start, start + 254)
        if zero < 0:
            end = min(start + 254, n)
            out.append(end - start + 1)
            out += data[start:end]
            if end - start == 254 and end < n:
                start = end  # a full block (code 0xFF): the next one follows, no zero between
                continue
            return bytes(out)
        out.append(zero - start + 1)
        out += data[start:zero]
        start = zero + 1
        if start == n:  # a trailing zero: one more (empty) block carries it
            out.append(1)
            return bytes(out)


def decode(data: bytes | bytearray | memoryview) -> bytes:
    """Decode one COBS block sequence (without its delimiter). Raise :class:`CobsError`."""
    data = bytes(data)
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise CobsError(f"zero byte inside the frame at offset {i}")
        end = i + code
        if end > n:
            raise CobsError(f"code byte {code} at offset {i} runs past the end ({n} bytes)")
        block = data[i + 1 : end]
        if 0 in block:
            raise CobsError("zero byte inside a block")
        out += block
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)
