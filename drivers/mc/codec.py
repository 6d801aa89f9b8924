"""Device words <-> tag values: the register codec of ``drivers/modbus/codec.py`` on MELSEC words.

A MELSEC answer carries each word little endian; the codec turns the answer into
16-bit words (:func:`words_of`) and decodes them with the shared
:class:`~drivers.modbus.codec.DecodePlan` (one gather and one view per type and
order, no loop over tags), so every type decodes exactly as a Modbus register
does. The orders map onto it:

==================  =====================================  ==========================
MC tag              meaning                                register codec order
==================  =====================================  ==========================
``word_order:``     low word in the lower device number    ``CDAB`` (word swap)
``low_first``       (MELSEC's DINT, REAL, LREAL, LINT)
``high_first``      high word first                        ``ABCD``
``byte_order:``     a string's first character in the      ``BADC`` (byte swap)
``low_first``       low byte of its word (GX Works)
``high_first``      first character in the high byte       ``ABCD``
==================  =====================================  ==========================

A bool is one bit: bit ``n % 16`` of the word holding bit device ``n`` (read in
word units), or bit ``.n`` of a word device.

:class:`AnswerDecoder` (shared with the FINS driver, in ``drivers/modbus/codec.py``) adds a
fast path for the common case: numbers in MELSEC's own order (``low_first``) are the
answer's little-endian bytes as they stand, so evenly spaced fields of one type are one
strided NumPy view of the answer and one assignment (scattered ones one byte gather),
with no byte swap. Everything else (``high_first``, strings, bools, 64-bit integers)
goes through the shared plan; both give the same values
(``tests/drivers/mc/test_mc_codec.py`` checks it with hypothesis).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from drivers.mc.config import HalfOrder, McTagConfig
from drivers.mc.devices import WORD_BITS, Address
from drivers.modbus.codec import AnswerDecoder, DecodePlan, Field, encode, encode_string
from drivers.modbus.config import ByteOrder
from gateway.errors import RegisterDecodeError
from gateway.types import DataType

__all__ = [
    "AnswerDecoder",
    "DecodePlan",
    "field_of",
    "tag_words",
    "words_of",
]

NUMBER_ORDER: dict[HalfOrder, ByteOrder] = {"low_first": "CDAB", "high_first": "ABCD"}
STRING_ORDER: dict[HalfOrder, ByteOrder] = {"low_first": "BADC", "high_first": "ABCD"}


def words_of(data: bytes) -> npt.NDArray[np.uint16]:
    """The 16-bit words of an answer's data (little endian on the wire); an odd length is
    :class:`RegisterDecodeError`."""
    if len(data) % 2:
        raise RegisterDecodeError(f"{len(data)} bytes of data are no whole words")
    return np.frombuffer(data, dtype="<u2")  # read-only; the decoder gathers from it


def field_of(tag: McTagConfig, where: Address, offset: int) -> Field:
    """The codec field of ``tag`` at ``offset`` words into an answer."""
    if tag.type is DataType.BOOL:
        bit = where.number % WORD_BITS if where.device.bit else where.bit
        return Field(offset, DataType.BOOL, "ABCD", bit=bit)
    if tag.type is DataType.STRING:
        return Field(offset, DataType.STRING, STRING_ORDER[tag.byte_order],
                     length=tag.length)
    return Field(offset, tag.type, NUMBER_ORDER[tag.word_order])


def tag_words(tag: McTagConfig, value: float | int | bool | str) -> list[int]:
    """The words that write ``value`` to ``tag`` (not for bools: those are single bits).
    ValueError when the value does not fit the tag's type (never rounded or wrapped)."""
    if tag.type is DataType.STRING:
        if not isinstance(value, str):
            raise ValueError(f"expects a text, got {value!r}")
        return encode_string(value, tag.words, STRING_ORDER[tag.byte_order])
    if isinstance(value, str):
        raise ValueError(f"expects a number, got the text {value!r}")
    return encode(value, tag.type, NUMBER_ORDER[tag.word_order])


