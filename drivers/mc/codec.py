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

:class:`AnswerDecoder` adds a fast path for the common case: numbers in MELSEC's own
order (``low_first``) are the answer's little-endian bytes as they stand, so evenly
spaced fields of one type are one strided NumPy view of the answer and one assignment,
with no gather and no byte swap. Everything else (``high_first``, strings, bools, 64-bit
integers, scattered layouts) goes through the shared plan; both give the same values
(``tests/drivers/mc/test_mc_codec.py`` checks it with hypothesis).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from drivers.mc.config import HalfOrder, McTagConfig
from drivers.mc.devices import WORD_BITS, Address
from drivers.modbus.codec import DecodePlan, Field, encode, encode_string
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


#: the little-endian NumPy type of each number type the fast path takes (64-bit integers
#: are exact Python ints: the shared plan makes them)
_NATIVE: dict[DataType, np.dtype] = {
    DataType.INT16: np.dtype("<i2"),
    DataType.UINT16: np.dtype("<u2"),
    DataType.INT32: np.dtype("<i4"),
    DataType.UINT32: np.dtype("<u4"),
    DataType.FLOAT32: np.dtype("<f4"),
    DataType.FLOAT64: np.dtype("<f8"),
}
#: runs per type beyond which a type's fields are gathered by the shared plan instead
_MAX_RUNS = 8


@dataclass(frozen=True, slots=True)
class _Run:
    """``count`` values of ``dtype`` every ``stride`` bytes from byte ``start``, going to
    ``positions`` of the output."""

    dtype: np.dtype
    start: int
    stride: int
    count: int
    positions: slice


class AnswerDecoder:
    """Every field of one answer of ``count`` words: strided views for numbers in MELSEC's
    order, the shared :class:`DecodePlan` for the rest."""

    __slots__ = ("_floats", "_rest", "_rest_positions", "_runs", "count", "has_objects")

    def __init__(self, fields: Sequence[Field], count: int) -> None:
        self.count = count
        self.has_objects = any(f.type.is_object for f in fields)
        by_type: dict[np.dtype, list[tuple[int, int]]] = {}
        rest: list[int] = []
        for position, f in enumerate(fields):
            native = _NATIVE.get(f.type)
            if native is None or f.bit is not None or (f.words > 1 and f.byte_order != "CDAB"):
                rest.append(position)
            else:
                by_type.setdefault(native, []).append((f.offset, position))
        runs: list[_Run] = []
        for dtype, members in by_type.items():
            mine = _runs(dtype, sorted(members))
            if len(mine) > _MAX_RUNS:  # scattered: one gather is cheaper than many views
                rest += [position for _, position in members]
            else:
                runs += mine
        DecodePlan(fields, count)  # the shared plan's checks (offsets within the answer)
        rest.sort()
        self._runs = tuple(runs)
        self._floats = any(r.dtype.kind == "f" for r in runs)
        self._rest = DecodePlan([fields[p] for p in rest], count) if rest else None
        self._rest_positions = np.array(rest, dtype=np.intp)

    def decode(self, words: npt.NDArray[np.uint16], out: np.ndarray) -> np.ndarray:
        """The values into ``out`` (one per field, in field order). ``words``: the answer's
        words, little endian and contiguous (:func:`words_of`, or a gather of it)."""
        if words.shape != (self.count,):
            raise RegisterDecodeError(f"expected {self.count} values in the response, got "
                                      f"{words.size}")
        if self._runs:
            buffer = np.ascontiguousarray(words, dtype="<u2")
            # a signalling-NaN pattern from a device is data, not a floating-point error
            with np.errstate(invalid="ignore") if self._floats else _NO_CONTEXT:
                for run in self._runs:
                    out[run.positions] = np.ndarray(
                        (run.count,), run.dtype, buffer, run.start, (run.stride,))
        if self._rest is not None:
            out[self._rest_positions] = self._rest.decode(words)
        return out


class _NoContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_CONTEXT = _NoContext()


def _runs(dtype: np.dtype, members: list[tuple[int, int]]) -> list[_Run]:
    """(word offset, position) sorted by offset -> runs with constant byte and position
    steps."""
    out: list[_Run] = []
    i = 0
    while i < len(members):
        offset, position = members[i]
        j = i + 1
        if j < len(members):
            step_o = members[j][0] - offset
            step_p = members[j][1] - position
            if step_o > 0 and step_p > 0:
                while (j < len(members) and members[j][0] - members[j - 1][0] == step_o
                       and members[j][1] - members[j - 1][1] == step_p):
                    j += 1
            else:
                j = i + 1
        count = j - i
        if count == 1:
            out.append(_Run(dtype, 2 * offset, dtype.itemsize, 1,
                            slice(position, position + 1)))
        else:
            step_p = members[i + 1][1] - position
            out.append(_Run(dtype, 2 * offset, 2 * (members[i + 1][0] - offset), count,
                            slice(position, position + step_p * (count - 1) + 1, step_p)))
        i = j
    return out
