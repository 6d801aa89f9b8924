"""S7 values <-> bytes: big-endian numbers, bits, S7 STRING and WSTRING, DATE_AND_TIME
(BCD), S5TIME, decoded a poll at a time (pure, NumPy where it pays).

The driver copies every answer of a poll into one byte buffer; a :class:`DecodePlan`,
built once per poll group and PDU size, knows each tag's offset in that buffer. All the
numbers of a poll are unpacked by one precompiled big-endian ``struct`` (pad bytes between
them; overlapping tags in a second one), bits with one NumPy shift; strings,
DATE_AND_TIME and S5TIME one by one (they have headers and BCD to check).

How each S7 type is published (gateway/types.py's DataType):

=================================  ===============================================
BOOL                               bool
BYTE, USINT, WORD, UINT            uint16 (SINT, INT: int16)
DWORD, UDINT / DINT                uint32 / int32
REAL / LREAL                       float32 / float64
LWORD, ULINT / LINT                uint64 / int64, exact Python ints (never float64)
STRING[n], WSTRING[n], CHAR        string: the current length's characters
DATE_AND_TIME                      string, ISO 8601 local PLC time without zone,
                                   ``2026-03-01T08:15:30.250`` (the PLC clock has no
                                   time zone, so no epoch number is made up)
S5TIME (timers)                    float64 seconds
COUNTER                            uint16, the counter word as the CPU keeps it (binary)
=================================  ===============================================

A STRING whose current length exceeds its maximum (or the tag's declared length), a
WSTRING likewise, a DATE_AND_TIME or S5TIME with a nibble above 9 or an impossible
date, text that is not valid in the tag's encoding: that tag is BAD with the reason
(:attr:`DecodePlan.decode` returns them), never a made-up value.
"""

from __future__ import annotations

import datetime as dt
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from drivers.s7.address import S7Address
from gateway.errors import S7DecodeError

__all__ = [
    "DecodePlan",
    "Field",
    "decode_date_and_time",
    "decode_value",
    "encode",
    "encode_date_and_time",
]

_BIG_ENDIAN = {
    "BYTE": ">u1", "USINT": ">u1", "SINT": ">i1",
    "WORD": ">u2", "UINT": ">u2", "INT": ">i2", "COUNTER": ">u2",
    "DWORD": ">u4", "UDINT": ">u4", "DINT": ">i4", "REAL": ">f4",
    "LWORD": ">u8", "ULINT": ">u8", "LINT": ">i8", "LREAL": ">f8",
}  # fmt: skip
_STRUCT = {k: v.replace("u1", "B").replace("i1", "b").replace("u2", "H").replace("i2", "h")
           .replace("u4", "I").replace("i4", "i").replace("f4", "f").replace("u8", "Q")
           .replace("i8", "q").replace("f8", "d") for k, v in _BIG_ENDIAN.items()}
_EXACT = frozenset({"LWORD", "ULINT", "LINT"})
_S5_BASES = (0.01, 0.1, 1.0, 10.0)
#: every valid S5TIME word (time base in bits 12-13, three BCD digits) -> seconds
_S5_SECONDS = {base << 12 | (d // 100) << 8 | (d // 10 % 10) << 4 | d % 10: d * _S5_BASES[base]
               for base in range(4) for d in range(1000)}


@dataclass(frozen=True, slots=True)
class Field:
    """One tag's value in a poll buffer: its address, ``offset`` bytes into the buffer."""

    offset: int
    address: S7Address
    encoding: str = "latin-1"


#: fields of one kind up to which a plan assigns values one by one (below the cost of an array)
_FEW = 16


@dataclass(frozen=True, slots=True)
class _Layer:
    """Numbers whose bytes do not overlap, unpacked by one precompiled ``struct`` (pad bytes
    between them): one C call for all the numbers of a poll."""

    unpack: struct.Struct
    positions: npt.NDArray[np.intp]
    exact: bool  # 64-bit integers (a layer of their own): kept as Python ints
    #: the positions as Python ints when they are few: assigned one by one, cheaper than
    #: building an array for a few values
    few: tuple[int, ...] | None = None


class DecodePlan:
    """Decoding of every field of one poll buffer of ``size`` bytes."""

    __slots__ = ("_bit_positions", "_bits", "_layers", "_merged", "_one_by_one", "fields",
                 "has_objects", "size")

    def __init__(self, fields: Sequence[Field], size: int) -> None:
        self.fields = tuple(fields)
        self.size = size
        for f in self.fields:
            if f.offset < 0 or f.offset + f.address.size > size:
                raise ValueError(f"{f.address.text()} at offset {f.offset} runs past the "
                                 f"{size} bytes of the buffer")
        self.has_objects = any(f.address.type.published.is_object for f in self.fields)
        numbers: list[int] = []
        bits: list[int] = []
        one_by_one: list[int] = []
        for pos, f in enumerate(self.fields):
            name = f.address.type.name
            if name == "BOOL":
                bits.append(pos)
            elif name in _BIG_ENDIAN:
                numbers.append(pos)
            else:
                one_by_one.append(pos)
        #: (position, first byte, end, is an S5TIME) of each field decoded on its own
        self._one_by_one = tuple((p, self.fields[p].offset,
                                  self.fields[p].offset + self.fields[p].address.size,
                                  self.fields[p].address.type.name == "S5TIME")
                                 for p in one_by_one)
        wide = [p for p in numbers if self.fields[p].address.type.name in _EXACT]
        narrow = [p for p in numbers if self.fields[p].address.type.name not in _EXACT]
        self._layers = self._make_layers(narrow, False) + self._make_layers(wide, True)
        self._bits = None
        self._bit_positions = tuple(bits)
        if bits:  # (positions, [(byte offset, bit)]): a few Python shifts beat NumPy's calls
            self._bits = (np.array(bits, dtype=np.intp),
                          tuple((self.fields[p].offset, self.fields[p].address.bit or 0)
                                for p in bits))
        #: the first layer of numbers when it is an array's worth and there are bits: the
        #: bits join its one array and assignment (positions: the layer's, then the bits')
        self._merged: tuple[_Layer, npt.NDArray[np.intp]] | None = None
        first = self._layers[0] if self._layers else None
        if first is not None and self._bits is not None and first.few is None \
                and not first.exact:
            self._merged = (first, np.concatenate([first.positions, self._bits[0]]))

    def _make_layers(self, numbers: list[int], exact: bool) -> tuple[_Layer, ...]:
        """Numbers by offset into layers of non-overlapping fields (one layer unless tags
        overlap: two views of the same bytes)."""
        layers: list[list[int]] = []
        ends: list[int] = []
        for pos in sorted(numbers, key=lambda p: self.fields[p].offset):
            f = self.fields[pos]
            for i, end in enumerate(ends):
                if f.offset >= end:
                    layers[i].append(pos)
                    ends[i] = f.offset + f.address.size
                    break
            else:
                layers.append([pos])
                ends.append(f.offset + f.address.size)
        out = []
        for members in layers:
            fmt, at = ">", 0
            for pos in members:
                f = self.fields[pos]
                if f.offset > at:
                    fmt += f"{f.offset - at}x"
                fmt += _STRUCT[f.address.type.name][1:]
                at = f.offset + f.address.size
            out.append(_Layer(struct.Struct(fmt), np.array(members, dtype=np.intp), exact,
                              tuple(members) if len(members) <= _FEW else None))
        return tuple(out)

    def __len__(self) -> int:
        return len(self.fields)

    def decode(self, buffer: npt.NDArray[np.uint8] | bytes | bytearray,
               out: np.ndarray) -> dict[int, str]:
        """Values of all fields into ``out`` (float64, or object when :attr:`has_objects`),
        in field order; returns {field position: reason} for the fields that did not
        decode (their ``out`` entry is NaN or None)."""
        data = buffer if isinstance(buffer, bytes | bytearray) else bytes(buffer)
        if len(data) != self.size:
            raise ValueError(f"buffer of {len(data)} bytes for a plan of {self.size}")
        if out.shape != (len(self.fields),):
            raise ValueError(f"out has shape {out.shape}, expected ({len(self.fields)},)")
        merged = self._merged
        if merged is not None:  # the first layer's numbers and the bits: one array
            layer, positions = merged
            pairs = self._bits[1] if self._bits is not None else ()
            out[positions] = np.array([*layer.unpack.unpack_from(data),
                                       *[(data[o] >> b) & 1 for o, b in pairs]],
                                      dtype=np.float64)
        for layer in self._layers[1:] if merged is not None else self._layers:
            values = layer.unpack.unpack_from(data)
            if layer.few is not None:
                if layer.exact:  # Python ints, exact over the whole 64 bits
                    for pos, value in zip(layer.few, values, strict=True):
                        out[pos] = value
                else:  # Python floats, never ints
                    for pos, value in zip(layer.few, values, strict=True):
                        out[pos] = float(value)
                continue
            if layer.exact:  # Python ints, exact over the whole 64 bits (an object array)
                ints = np.empty(len(values), dtype=object)
                ints[:] = values
                out[layer.positions] = ints
            else:  # floats (into an object array too: Python floats, never ints)
                out[layer.positions] = np.array(values, dtype=np.float64)
        if self._bits is not None and merged is None:
            positions, pairs = self._bits
            if len(pairs) <= _FEW:
                for pos, (o, b) in zip(self._bit_positions, pairs, strict=True):
                    out[pos] = float((data[o] >> b) & 1)
            else:
                out[positions] = [float((data[o] >> b) & 1) for o, b in pairs]
        bad: dict[int, str] = {}
        for pos, start, end, s5time in self._one_by_one:
            if s5time:  # a timer: its word's seconds from the table, when it is valid
                seconds = _S5_SECONDS.get((data[start] << 8 | data[start + 1]) & 0x3FFF)
                if seconds is not None:
                    out[pos] = seconds
                    continue
            f = self.fields[pos]
            try:
                out[pos] = decode_value(bytes(data[start:end]), f.address, f.encoding)
            except S7DecodeError as exc:
                out[pos] = None if out.dtype == object else math.nan
                bad[pos] = str(exc)
        return bad


def decode_value(data: bytes, address: S7Address, encoding: str = "latin-1") -> float | int | str:
    """One value from its bytes (the plan does numbers in bulk; this does every type)."""
    name = address.type.name
    if len(data) != address.size:
        raise S7DecodeError(f"{len(data)} bytes for a {name} of {address.size}")
    if name == "BOOL":
        return float((data[0] >> (address.bit or 0)) & 1)
    if name in _STRUCT:
        value = struct.unpack(_STRUCT[name], data)[0]
        return value if name in _EXACT else float(value)
    if name == "STRING":
        maximum, current = data[0], data[1]
        limit = min(maximum, address.length)
        if current > limit:
            raise S7DecodeError(f"STRING says {current} characters but holds at most {limit} "
                              f"(maximum length byte {maximum}, tag declared "
                              f"STRING[{address.length}])")
        return _text(data[2:2 + current], encoding, "STRING")
    if name == "WSTRING":
        maximum, current = struct.unpack(">HH", data[:4])
        limit = min(maximum, address.length)
        if current > limit:
            raise S7DecodeError(f"WSTRING says {current} characters but holds at most {limit} "
                              f"(maximum length {maximum}, tag declared "
                              f"WSTRING[{address.length}])")
        return _text(data[4:4 + 2 * current], "utf-16-be", "WSTRING")
    if name == "CHAR":
        return _text(data, encoding, "CHAR")
    if name == "DATE_AND_TIME":
        return decode_date_and_time(data)
    if name == "S5TIME":
        word = (data[0] << 8 | data[1]) & 0x3FFF  # bits 14-15 carry nothing
        seconds = _S5_SECONDS.get(word)
        if seconds is None:
            _bcd_digits(word & 0x0FFF, 3, "S5TIME")  # says which nibble is no digit
        assert seconds is not None  # every word of three BCD digits is in the table
        return seconds
    raise S7DecodeError(f"the S7 codec cannot decode a {name}")  # pragma: no cover


def _text(data: bytes, encoding: str, what: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise S7DecodeError(f"{what} bytes are not valid {encoding}: {exc.reason} at byte "
                          f"{exc.start}") from None


def _bcd_digits(value: int, digits: int, what: str) -> int:
    out = 0
    for shift in range(4 * (digits - 1), -1, -4):
        nibble = (value >> shift) & 0xF
        if nibble > 9:
            raise S7DecodeError(f"{what} has the nibble 0x{nibble:X}, not a BCD digit")
        out = out * 10 + nibble
    return out


def decode_date_and_time(data: bytes) -> str:
    """DATE_AND_TIME (8 bytes BCD: year, month, day, hour, minute, second, milliseconds in
    three digits, weekday) as ISO 8601 text with milliseconds; years 90-99 are 1990s."""
    if len(data) != 8:
        raise S7DecodeError(f"DATE_AND_TIME takes 8 bytes, not {len(data)}")
    year, month, day, hour, minute, second = (
        _bcd_digits(b, 2, "DATE_AND_TIME") for b in data[:6])
    millis = _bcd_digits((data[6] << 4) | (data[7] >> 4), 3, "DATE_AND_TIME")
    year += 1900 if year >= 90 else 2000
    try:
        moment = dt.datetime(year, month, day, hour, minute, second, millis * 1000)
    except ValueError as exc:
        raise S7DecodeError(f"DATE_AND_TIME is not a date: {exc}") from None
    return moment.isoformat(timespec="milliseconds")


def _bcd(number: int) -> int:
    return (number // 10) << 4 | number % 10


def encode_date_and_time(value: str | dt.datetime) -> bytes:
    """ISO 8601 text (or a datetime, taken as the PLC's local time) as DATE_AND_TIME."""
    if isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 date and time "
                             "(e.g. 2026-03-01T08:15:30.250)") from None
    else:
        moment = value
    if moment.tzinfo is not None:
        raise ValueError(f"{value!r}: DATE_AND_TIME is the PLC's local time; give it without "
                         "a time zone")
    if not 1990 <= moment.year <= 2089:
        raise ValueError(f"{value!r}: DATE_AND_TIME holds the years 1990 to 2089")
    if moment.microsecond % 1000:
        raise ValueError(f"{value!r}: DATE_AND_TIME holds whole milliseconds")
    millis = moment.microsecond // 1000
    weekday = moment.isoweekday() % 7 + 1  # 1 = Sunday
    head = bytes(_bcd(n) for n in (moment.year % 100, moment.month, moment.day,
                                   moment.hour, moment.minute, moment.second))
    return head + bytes([_bcd(millis // 10), (millis % 10) << 4 | weekday])


def encode(value: float | int | bool | str, address: S7Address,
           encoding: str = "latin-1") -> bytes:
    """The bytes to write for ``value`` at ``address``; a BOOL gives one byte, 0 or 1 (it is
    written as a bit). A STRING gives its current length and characters (the maximum
    length byte is the PLC's and is left alone), a WSTRING likewise with 2-byte lengths.

    Integers must fit the type and be whole (a float within 1e-9 relative of an integer
    counts as one: unscaling gives ``15000.000000000002``); never rounded nor wrapped.
    """
    name = address.type.name
    if name == "BOOL":
        if isinstance(value, bool | np.bool_) or value in (0, 1):
            return b"\x01" if value else b"\x00"
        raise ValueError(f"{value!r} is not a boolean (true/false or 0/1)")
    if name in ("S5TIME", "COUNTER"):
        raise ValueError("timers and counters are read-only")
    if name in ("STRING", "WSTRING", "CHAR"):
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not text")
        return _encode_text(value, address, encoding)
    if name == "DATE_AND_TIME":
        if not isinstance(value, str | dt.datetime):
            raise ValueError(f"{value!r} is not an ISO 8601 date and time")
        return encode_date_and_time(value)
    if isinstance(value, str):
        raise ValueError(f"{value!r} is text, not a number for a {name}")
    fmt = _STRUCT[name]
    number: float | int
    if address.type.integer:
        number = _whole(value, name)
        size = address.type.size * 8
        low, high = ((-(1 << (size - 1)), (1 << (size - 1)) - 1) if address.type.signed
                     else (0, (1 << size) - 1))
        if not low <= number <= high:
            raise ValueError(f"{value!r} is outside the {name} range {low}..{high}")
    else:
        number = float(value)
    try:
        return struct.pack(fmt, number)
    except (struct.error, OverflowError) as exc:
        raise ValueError(f"{value!r} does not fit in a {name}") from exc


def _whole(value: float | int | bool, name: str) -> int:
    if isinstance(value, bool | int | np.integer):
        return int(value)
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a valid {name}")
    whole = round(number)
    if not math.isclose(number, whole, rel_tol=1e-9, abs_tol=1e-6):
        raise ValueError(f"{value!r} is not an integer; a {name} cannot hold it")
    return whole


def _encode_text(text: str, address: S7Address, encoding: str) -> bytes:
    name = address.type.name
    if name == "WSTRING":
        try:
            data = text.encode("utf-16-be")
        except UnicodeEncodeError as exc:
            raise ValueError(f"{text!r} cannot be written as UTF-16: {exc.reason}") from None
        chars = len(data) // 2
        if chars > address.length:
            raise ValueError(f"{text!r} has {chars} UTF-16 units; the tag holds "
                             f"{address.length}")
        return struct.pack(">H", chars) + data
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError as exc:
        raise ValueError(f"{text!r} cannot be written in {encoding}: {exc.reason}") from None
    if name == "CHAR":
        if len(data) != 1:
            raise ValueError(f"{text!r} is not one {encoding} character")
        return data
    if len(data) > address.length:
        raise ValueError(f"{text!r} takes {len(data)} bytes in {encoding}; the tag holds "
                         f"{address.length}")
    return bytes([len(data)]) + data
