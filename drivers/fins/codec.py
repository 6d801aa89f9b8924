"""Words and bits of FINS answers <-> tag values.

A FINS word is 16 bits sent high byte first, exactly a Modbus register: values over
words are decoded with the Modbus driver's register codec
(:mod:`drivers.modbus.codec`, NumPy, batched), whose byte orders name the bytes of a
value as they arrive. A word read's answer is decoded by its :class:`AnswerDecoder`
(shared with the MC driver): the words swapped to little endian once, numbers in
Omron's order (``CDAB``, below) are then views or one byte gather per type.

Omron CPUs keep a 32-bit value (DINT, UDINT, REAL) with its low
word at the lower address and a 64-bit one (LINT, LREAL) lowest word first: byte order
``CDAB``, this driver's default. A string keeps its first character in the high byte
of its first word (``ABCD``), as the string instructions (MOV$, ...) store it.

Bits read with bit access come as one byte each, 0x00 or 0x01.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from drivers.fins.config import ByteOrder
from drivers.modbus.codec import (
    AnswerDecoder,
    DecodePlan,
    Field,
    decode_value,
    encode,
    encode_string,
)
from gateway.errors import FinsFrameError
from gateway.types import DataType

__all__ = [
    "AnswerDecoder",
    "DecodePlan",
    "Field",
    "bits_of",
    "decode_value",
    "encode_bit",
    "encode_words",
    "words_of",
]


def words_of(text: bytes, count: int) -> npt.NDArray[np.uint16]:
    """The ``count`` words of a memory area read's answer; :class:`FinsFrameError`
    (``decode``) when it holds another number of bytes."""
    if len(text) != 2 * count:
        raise FinsFrameError("decode", f"{len(text)} bytes came for {count} words "
                             f"({2 * count} bytes)")
    return np.frombuffer(text, dtype=">u2").astype(np.uint16)


def bits_of(text: bytes, count: int) -> npt.NDArray[np.uint16]:
    """The ``count`` bits of a bit read's answer (one byte each, 0 or 1)."""
    if len(text) != count:
        raise FinsFrameError("decode", f"{len(text)} bytes came for {count} bits")
    data = np.frombuffer(text, dtype=np.uint8)
    if (data > 1).any():
        bad = int(data[data > 1][0])
        raise FinsFrameError("decode", f"a bit came as 0x{bad:02X}, not 0x00 or 0x01")
    return data.astype(np.uint16)


def encode_bit(value: float | bool) -> bytes:
    """The one byte a bit write sends: true/1 -> 0x01, false/0 -> 0x00; else ValueError."""
    if isinstance(value, bool | np.bool_):
        return b"\x01" if value else b"\x00"
    if value in (0, 1):
        return b"\x01" if value == 1 else b"\x00"
    raise ValueError(f"{value!r} is not a boolean (true/false or 0/1)")


def encode_words(value: float | int | str, type_: DataType, byte_order: ByteOrder,
                 length: int | None = None) -> bytes:
    """The bytes of a word write of ``value`` (checked, never wrapped or rounded)."""
    if type_ is DataType.STRING:
        if not isinstance(value, str):
            raise ValueError(f"expects a text, got {value!r}")
        words = encode_string(value, length or 1, byte_order)
    else:
        if isinstance(value, str):
            raise ValueError(f"expects a number, got the text {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number")
        words = encode(value, type_, byte_order)
    return b"".join(w.to_bytes(2, "big") for w in words)
