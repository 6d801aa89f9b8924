"""Register codec: Modbus registers <-> numbers, for every type and byte order.

Decoding works on a whole response at once. A :class:`DecodePlan` is built once
per read request (at driver construction); it groups the request's tags by
type and byte order and precomputes, per group, an index array of the registers
each tag takes, already in big-endian word order. A poll then does, per group,
one gather, one byte-order conversion and one ``view`` -- no Python loop over
registers or tags.

Byte orders name the bytes of a value, ``A`` being the most significant, in the
order they arrive on the wire (register by register, high byte first):

======  ==========================  =========================  =============================
order   32-bit registers            16-bit register            64-bit registers
======  ==========================  =========================  =============================
ABCD    ``AB CD`` (big endian)      ``AB``                     ``AB CD EF GH``
CDAB    ``CD AB`` (word swap)       ``AB``                     ``GH EF CD AB``
BADC    ``BA DC`` (byte swap)       ``BA``                     ``BA DC FE HG``
DCBA    ``DC BA`` (little endian)   ``BA``                     ``HG FE DC BA``
======  ==========================  =========================  =============================

So "word swap" reverses the order of all registers of a value and "byte swap"
swaps the two bytes inside each register.

Integers of 64 bits are returned as Python ints in an object array, exact over
their whole range (float64 would round them above 2**53: ``uint64`` 2**64 - 1, the
usual "not available" marker, would become 2**64); every other numeric type as
float64.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from drivers.modbus.config import REGISTER_TYPES, ByteOrder
from gateway.errors import RegisterDecodeError
from gateway.types import INTEGER_RANGES, DataType

#: registers (words of 16 bits) a value of each type takes; bool is one bit or one register;
#: a string takes the ``length`` of its field
WORDS: dict[DataType, int] = {DataType.BOOL: 1, **REGISTER_TYPES}

#: the value's big-endian NumPy type; the words are put in big-endian order before the view
_BIG_ENDIAN: dict[DataType, np.dtype] = {
    DataType.INT16: np.dtype(">i2"),
    DataType.UINT16: np.dtype(">u2"),
    DataType.INT32: np.dtype(">i4"),
    DataType.UINT32: np.dtype(">u4"),
    DataType.FLOAT32: np.dtype(">f4"),
    DataType.INT64: np.dtype(">i8"),
    DataType.UINT64: np.dtype(">u8"),
    DataType.FLOAT64: np.dtype(">f8"),
}

#: struct formats for the encoder (big endian)
_STRUCT: dict[DataType, str] = {
    DataType.INT16: ">h",
    DataType.UINT16: ">H",
    DataType.INT32: ">i",
    DataType.UINT32: ">I",
    DataType.FLOAT32: ">f",
    DataType.INT64: ">q",
    DataType.UINT64: ">Q",
    DataType.FLOAT64: ">d",
}


BYTE_ORDERS: tuple[ByteOrder, ...] = ("ABCD", "CDAB", "BADC", "DCBA")
_WORD_SWAP = frozenset({"CDAB", "DCBA"})
_BYTE_SWAP = frozenset({"BADC", "DCBA"})


@dataclass(frozen=True, slots=True)
class Field:
    """One value inside a response: ``offset`` registers (or bits) from its start.

    ``bit`` picks one bit (0 = least significant) of a register as a bool;
    ``length`` is the number of registers of a string.
    """

    offset: int
    type: DataType
    byte_order: ByteOrder = "ABCD"
    bit: int | None = None
    length: int | None = None

    def __post_init__(self) -> None:
        if self.type in WORDS and self.bit is None and self.length is None:
            if self.byte_order not in BYTE_ORDERS:  # a number: the checks below come to these
                raise ValueError(f"unknown byte order {self.byte_order!r}")
            if self.offset < 0:
                raise ValueError(f"negative offset {self.offset}")
            return
        if self.type not in WORDS and self.type is not DataType.STRING:
            raise ValueError(f"the Modbus codec has no type {self.type.value!r}")
        if self.byte_order not in BYTE_ORDERS:
            raise ValueError(f"unknown byte order {self.byte_order!r}")
        if self.offset < 0:
            raise ValueError(f"negative offset {self.offset}")
        if self.bit is not None and (self.type is not DataType.BOOL or not 0 <= self.bit <= 15):
            raise ValueError(f"bit {self.bit} needs a bool field and 0..15")
        if self.type is DataType.STRING and (self.length is None or self.length < 1):
            raise ValueError("a string field needs a length of at least 1 register")

    @property
    def words(self) -> int:
        if self.type is DataType.STRING:
            return self.length or 1
        return WORDS[self.type]


@dataclass(frozen=True, slots=True)
class _Group:
    """Fields of one type and byte order, decoded together."""

    positions: npt.NDArray[np.intp]  # where each field's value goes in the output
    index: npt.NDArray[np.intp]  # (fields, words): register indices in big-endian word order
    wire: np.dtype | None  # '>u2', or '<u2' to swap the bytes of each word; None for bool
    value: np.dtype | None  # big-endian value type to view the bytes as; None for bool/string
    shifts: npt.NDArray[np.uint16] | None = None  # bit-in-register bools: bit of each field
    exact: bool = False  # 64-bit integers: Python ints into an object array
    #: numbers packed back to back in word order into consecutive places of the output (the
    #: usual block of float32 tags): (its registers, its places, wire, value), read without
    #: gathering
    dense: tuple[slice, slice, np.dtype, np.dtype] | None = None

    def decode(self, registers: npt.NDArray[np.uint16], out: np.ndarray) -> None:
        dense = self.dense
        if dense is not None:
            out[dense[1]] = registers[dense[0]].astype(dense[2]).view(dense[3])
            return
        words = registers[self.index]
        if self.wire is None:  # bool: any non-zero bit or register is true
            out[self.positions] = words[:, 0] != 0
            return
        raw = words.astype(self.wire)  # contiguous, bytes of each value now in ABCD... order
        if self.shifts is not None:  # a bit of a register, after the byte order's swap
            value = raw.view(">u2")[:, 0]
            out[self.positions] = (value >> self.shifts) & 1
        elif self.value is None:  # strings: one bytes object per field, not per register
            width = raw.shape[1] * 2
            data = raw.view(f"S{width}")[:, 0]  # NumPy drops trailing NULs
            text = [_text(b) for b in data.tolist()]
            out[self.positions] = text
        elif self.exact:
            out[self.positions] = raw.view(self.value)[:, 0].tolist()
        else:
            out[self.positions] = raw.view(self.value)[:, 0]


def _text(data: bytes) -> str:
    """A device's string: up to the first NUL, without surrounding spaces."""
    return data.split(b"\0", 1)[0].decode("utf-8", errors="replace").strip(" ")


class DecodePlan:
    """Precomputed decoding of every field of one response of ``count`` registers (or bits)."""

    __slots__ = ("_floats", "_groups", "count", "has_objects", "size")

    def __init__(self, fields: Sequence[Field], count: int) -> None:
        """The fields are not kept (an object each, and a plan is kept for every request of
        every device: 77 bytes a tag of RSS, issue 21): only their grouped arrays."""
        #: fields decoded
        self.size = len(fields)
        self.count = count
        keyed: dict[tuple[DataType, str, bool, int], list[int]] = {}
        types = set()
        for pos, f in enumerate(fields):
            words = f.words
            if f.offset + words > count:
                raise ValueError(
                    f"a {f.type.value} at offset {f.offset} runs past the {count} registers "
                    "of the response"
                )
            in_register = f.bit is not None
            plain_bool = f.type is DataType.BOOL and not in_register
            order = "ABCD" if plain_bool else f.byte_order
            key = (f.type, order, in_register, words)
            keyed.setdefault(key, []).append(pos)
            types.add(f.type)
        #: the output holds Python strings or exact 64-bit ints: decode into an object array
        self.has_objects = any(t.is_object for t in types)
        self._groups = tuple(self._group(fields, t, o, b, w, p)
                             for (t, o, b, w), p in keyed.items())
        #: a float type among the fields (NumPy's floating-point error state matters then)
        self._floats = bool(types & {DataType.FLOAT32, DataType.FLOAT64})

    @staticmethod
    def _group(fields: Sequence[Field], type_: DataType, order: str, in_register: bool,
               words: int, positions: list[int]) -> _Group:
        offsets = np.array([fields[p].offset for p in positions], dtype=np.intp)
        word_order = np.arange(words, dtype=np.intp)
        if order in _WORD_SWAP and type_ is not DataType.STRING:
            word_order = word_order[::-1]
        index = offsets[:, None] + word_order[None, :]
        pos = np.array(positions, dtype=np.intp)
        wire = np.dtype("<u2") if order in _BYTE_SWAP else np.dtype(">u2")
        if in_register:
            shifts = np.array([fields[p].bit for p in positions], dtype=np.uint16)
            return _Group(pos, index, wire, None, shifts)
        if type_ is DataType.BOOL:
            return _Group(pos, index, None, None)
        if type_ is DataType.STRING:
            return _Group(pos, index, wire, None)
        exact, value = type_.is_wide_integer, _BIG_ENDIAN[type_]
        flat = index.ravel()
        dense = None
        if (not exact and np.array_equal(flat, np.arange(flat[0], flat[0] + flat.size))
                and np.array_equal(pos, np.arange(pos[0], pos[0] + pos.size))):
            dense = (slice(int(flat[0]), int(flat[0]) + flat.size),
                     slice(int(pos[0]), int(pos[0]) + pos.size), wire, value)
        return _Group(pos, index, wire, value, exact=exact, dense=dense)

    def __len__(self) -> int:
        return self.size

    def decode(self, registers: npt.ArrayLike, out: np.ndarray | None = None) -> np.ndarray:
        """Values of all fields as float64, in field order, written into ``out`` if given.

        ``registers`` is the response's register values (or bits, as 0/1); its
        length must be exactly ``count``, otherwise :class:`RegisterDecodeError`. A plan
        with strings or 64-bit integers decodes into an object array (``out`` must be
        one): strings and exact Python ints.
        """
        regs = np.asarray(registers, dtype=np.uint16)
        if regs.shape != (self.count,):
            raise RegisterDecodeError(
                f"expected {self.count} values in the response, got {regs.size}")
        if out is None:
            out = np.empty(self.size, dtype=object if self.has_objects else np.float64)
        elif out.shape != (self.size,):
            raise ValueError(f"out has shape {out.shape}, expected ({self.size},)")
        # a signalling-NaN pattern from a device is data, not a floating-point error
        with np.errstate(invalid="ignore") if self._floats else _NO_CONTEXT:
            for group in self._groups:
                group.decode(regs, out)
        return out


def decode_value(
    registers: Sequence[int],
    type_: DataType,
    byte_order: ByteOrder = "ABCD",
    *,
    bit: int | None = None,
) -> float | int | str:
    """Decode one value from its registers (convenience; the driver uses :class:`DecodePlan`):
    a string, an exact int for 64-bit integers, otherwise a float."""
    length = len(registers) if type_ is DataType.STRING else None
    plan = DecodePlan([Field(0, type_, byte_order, bit, length)], len(registers))
    value = plan.decode(registers)[0]
    return value if isinstance(value, str | int) else float(value)


def encode_string(text: str, length: int, byte_order: ByteOrder = "ABCD") -> list[int]:
    """The ``length`` registers of ``text`` (UTF-8), padded with NULs; too long: ValueError."""
    data = text.encode("utf-8")
    if len(data) > 2 * length:
        raise ValueError(f"{text!r} takes {len(data)} bytes; the tag holds {2 * length}")
    if byte_order not in ("ABCD", "BADC"):
        raise ValueError(f"a string's byte order is ABCD or BADC, not {byte_order!r}")
    wire = "<u2" if byte_order == "BADC" else ">u2"
    raw = np.frombuffer(data.ljust(2 * length, b"\0"), dtype=wire)
    return [int(w) for w in raw]


def encode(value: float | int | bool, type_: DataType, byte_order: ByteOrder = "ABCD") -> list[int]:
    """The registers to write for ``value`` as ``type_`` in ``byte_order``.

    Integers must be in the type's range; a float given for an integer type must
    be integral (within 1e-9 relative, 1e-6 absolute: unscaling ``1500 / 0.1``
    gives ``15000.000000000002``), otherwise :class:`ValueError` -- a write is
    never silently rounded or wrapped. float32 rejects finite values beyond its
    range; NaN and infinities encode to their IEEE patterns. ``bool`` gives one
    register of 0 or 1.
    """
    if byte_order not in BYTE_ORDERS:
        raise ValueError(f"unknown byte order {byte_order!r}")
    if type_ is DataType.BOOL:
        return [1 if _to_bool(value) else 0]
    if type_ not in _STRUCT:
        raise ValueError(f"the Modbus codec has no type {type_.value!r}")
    number = _to_int(value, type_) if type_ in INTEGER_RANGES else float(value)
    try:
        data = struct.pack(_STRUCT[type_], number)
    except (struct.error, OverflowError) as exc:
        raise ValueError(f"{value!r} does not fit in a {type_.value}") from exc
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if byte_order in _BYTE_SWAP:
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    if byte_order in _WORD_SWAP:
        words.reverse()
    return words


def _to_bool(value: float | int | bool) -> bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if value in (0, 1):
        return bool(value)
    raise ValueError(f"{value!r} is not a boolean (true/false or 0/1)")


def _to_int(value: float | int | bool, type_: DataType) -> int:
    if isinstance(value, bool | int | np.integer):
        number = int(value)
    else:
        number_f = float(value)
        if not math.isfinite(number_f):
            raise ValueError(f"{value!r} is not a valid {type_.value}")
        number = round(number_f)
        if not math.isclose(number_f, number, rel_tol=1e-9, abs_tol=1e-6):
            raise ValueError(f"{value!r} is not an integer; a {type_.value} cannot hold it")
    low, high = INTEGER_RANGES[type_]
    if not low <= number <= high:
        raise ValueError(f"{value!r} is outside the {type_.value} range {low}..{high}")
    return number


# -- answers of whole word runs: views and gathers of the answer's bytes ----------------------

#: the little-endian NumPy type of each number type :class:`AnswerDecoder` takes from the
#: answer's bytes as they stand (64-bit integers are exact Python ints: the shared plan
#: makes them)
_NATIVE: dict[DataType, np.dtype] = {
    DataType.INT16: np.dtype("<i2"),
    DataType.UINT16: np.dtype("<u2"),
    DataType.INT32: np.dtype("<i4"),
    DataType.UINT32: np.dtype("<u4"),
    DataType.FLOAT32: np.dtype("<f4"),
    DataType.FLOAT64: np.dtype("<f8"),
}
#: runs of one type beyond which its fields are one gather instead of many views (a view
#: and its assignment cost about as much as a gather of a few hundred values)
_MAX_RUNS = 2


@dataclass(frozen=True, slots=True)
class _Run:
    """``count`` values of ``dtype`` every ``stride`` bytes from byte ``start``, going to
    ``positions`` of the output."""

    dtype: np.dtype
    start: int
    stride: int
    count: int
    positions: slice


@dataclass(frozen=True, slots=True)
class _Gather:
    """Scattered values of ``dtype``: their words (``index`` into the answer's words, each
    value's lowest word first) go to ``positions`` of the output."""

    dtype: np.dtype
    index: npt.NDArray[np.intp]
    positions: npt.NDArray[np.intp] | slice


def _takes_native(f: Field) -> bool:
    """The field's value is its words' little-endian bytes as they stand: one word in
    ``ABCD`` (or ``CDAB``, the same for one word), or several with the lowest word first
    (``CDAB``)."""
    if f.type not in _NATIVE or f.bit is not None:
        return False
    return f.byte_order == "CDAB" or (f.words == 1 and f.byte_order == "ABCD")


class AnswerDecoder:
    """Every field of one answer of ``count`` words, fast where it can be.

    Its input is the answer's words as little-endian 16-bit values (MELSEC sends them so;
    a big-endian protocol, FINS or Modbus, swaps each word's bytes once: one NumPy
    ``astype``). Numbers whose value is then its bytes as they stand (one word, or the
    lowest word first: ``CDAB``, MELSEC's and Omron's own order) are taken without a
    byte-order conversion: evenly spaced fields of one type are one strided view and one
    assignment; scattered ones one byte gather per type. Everything else (other orders,
    strings, bools, 64-bit integers) goes through the shared :class:`DecodePlan`; both give
    the same values (``tests/drivers/mc/test_mc_codec.py`` checks it with hypothesis)."""

    __slots__ = ("_bits", "_floats", "_gathers", "_rest", "_rest_positions", "_runs", "count",
                 "fields", "has_objects")

    def __init__(self, fields: Sequence[Field], count: int,
                 positions: Sequence[int] | None = None) -> None:
        """``positions``: where each field's value goes in the output (default: field
        order), e.g. the batch positions of several answers' fields decoded at once."""
        self.fields = tuple(fields)
        self.count = count
        self.has_objects = any(f.type.is_object for f in fields)
        where = list(positions) if positions is not None else list(range(len(fields)))
        if len(where) != len(fields):
            raise ValueError(f"{len(where)} positions for {len(fields)} fields")
        by_type: dict[np.dtype, list[tuple[int, int]]] = {}
        bits: list[tuple[int, int, int]] = []  # (offset, bit, position)
        rest: list[int] = []
        for i, f in enumerate(fields):
            if _takes_native(f):
                by_type.setdefault(_NATIVE[f.type], []).append((f.offset, where[i]))
            elif f.bit is not None and f.byte_order in ("ABCD", "CDAB"):  # a bit of a word
                bits.append((f.offset, f.bit, where[i]))
            else:
                rest.append(i)
        DecodePlan(fields, count)  # the shared plan's checks (offsets within the answer)
        runs: list[_Run] = []
        gathers: list[_Gather] = []
        for dtype, members in by_type.items():
            mine = _runs(dtype, sorted(members))
            if len(mine) <= _MAX_RUNS:
                runs += mine
                continue
            offsets = np.array([o for o, _ in members], dtype=np.intp)
            words = dtype.itemsize // 2
            index = (offsets[:, None] + np.arange(words, dtype=np.intp)).ravel()
            gathers.append(_Gather(dtype, index, _positions([p for _, p in members])))
        rest.sort()
        self._runs = tuple(runs)
        self._gathers = tuple(gathers)
        self._floats = any(r.dtype.kind == "f" for r in runs) or any(
            g.dtype.kind == "f" for g in gathers)
        #: bools that are one bit of a word: (word offsets, shifts, output positions)
        self._bits = (np.array([o for o, _, _ in bits], dtype=np.intp),
                      np.array([b for _, b, _ in bits], dtype=np.uint16),
                      _positions([p for _, _, p in bits])) if bits else None
        self._rest = DecodePlan([fields[i] for i in rest], count) if rest else None
        self._rest_positions = np.array([where[i] for i in rest], dtype=np.intp)

    def __len__(self) -> int:
        return len(self.fields)

    def decode(self, words: npt.NDArray[np.uint16], out: np.ndarray) -> np.ndarray:
        """The values into ``out`` (one per field, in field order or at the positions
        given). ``words``: the answer's words as little-endian 16-bit values (contiguous is
        fastest)."""
        if words.shape != (self.count,):
            raise RegisterDecodeError(f"expected {self.count} values in the response, got "
                                      f"{words.size}")
        if self._runs or self._gathers:
            buffer = np.ascontiguousarray(words, dtype="<u2")
            # a signalling-NaN pattern from a device is data, not a floating-point error
            with np.errstate(invalid="ignore") if self._floats else _NO_CONTEXT:
                for run in self._runs:
                    out[run.positions] = np.ndarray(
                        (run.count,), run.dtype, buffer, run.start, (run.stride,))
                # into a float64 batch: cast first, then a plain scatter (NumPy's scatter
                # with a cast is slower than the two); take is a cheaper gather than [index]
                cast = out.dtype == np.float64
                for gather in self._gathers:
                    got = buffer.take(gather.index).view(gather.dtype)
                    out[gather.positions] = got.astype(np.float64) if cast else got
        if self._bits is not None:
            offsets, shifts, positions = self._bits
            picked = words[offsets]
            picked >>= shifts
            picked &= 1
            out[positions] = picked  # 0 or 1, as the plan gives it
        if self._rest is not None:
            out[self._rest_positions] = self._rest.decode(words)
        return out


def _positions(positions: list[int]) -> npt.NDArray[np.intp] | slice:
    """Output positions as a slice where they are evenly spaced (a cheaper assignment)."""
    if len(positions) > 1:
        step = positions[1] - positions[0]
        if step > 0 and all(b - a == step for a, b in itertools.pairwise(positions)):
            return slice(positions[0], positions[-1] + 1, step)
    return np.array(positions, dtype=np.intp)


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
