"""MC protocol (SLMP) binary frames, 3E and 4E: requests built, answers checked. Pure.

A 3E request (all numbers little endian)::

    50 00 | network | station | module I/O (2) | multidrop | length (2) | timer (2)
          | command (2) | subcommand (2) | data

``length`` counts from the monitoring timer to the end; the timer is in 250 ms
units (how long the CPU waits for a station it routes the request to). A 4E
frame is a 3E frame with a serial number: ``54 00 | serial (2) | 00 00 | ...``,
answered with the same serial, which ties each answer to its request.

An answer::

    D0 00 | network | station | module I/O (2) | multidrop | length (2) | end code (2) | data

(4E: ``D4 00 | serial (2) | 00 00 | ...``). With an end code other than 0 the data
is the error information (the route and the command and subcommand that failed),
not the devices asked for.

Device specifications: 3 bytes of device number and 1 byte of device code (Q, L,
iQ-F: subcommands 0000 and 0001), or 4 and 2 bytes (iQ-R: 0002 and 0003).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

from gateway.errors import McFrameError

__all__ = [
    "MAX_ANSWER_DATA",
    "Command",
    "DeviceRef",
    "FrameKind",
    "Response",
    "Route",
    "answer_length",
    "batch_read",
    "batch_write",
    "header_size",
    "pack_bits",
    "parse_response",
    "random_read",
    "read_type_name",
    "unpack_bits",
]

FrameKind = Literal["3e", "4e"]

_REQUEST = {"3e": b"\x50\x00", "4e": b"\x54\x00"}
_ANSWER = {"3e": b"\xd0\x00", "4e": b"\xd4\x00"}
#: bytes of an answer before its data length field ends: subheader, (serial, 00 00,) route, length
_HEADER = {"3e": 9, "4e": 13}
#: the longest answer data (end code included) any request of this driver gets: 960 words
#: and the end code fit with room; anything announcing more is not an answer
MAX_ANSWER_DATA = 4096


class Command(IntEnum):
    """The SLMP commands this driver sends."""

    READ_TYPE_NAME = 0x0101
    BATCH_READ = 0x0401
    RANDOM_READ = 0x0403
    BATCH_WRITE = 0x1401


@dataclass(frozen=True, slots=True)
class Route:
    """Where a request goes: network number, station (PC) number, the request destination
    module I/O number and its station number (multidrop). The defaults are the CPU the
    gateway is connected to."""

    network: int = 0
    station: int = 0xFF
    module_io: int = 0x03FF
    multidrop: int = 0

    def __post_init__(self) -> None:
        for name in ("network", "station", "multidrop"):
            if not 0 <= getattr(self, name) <= 0xFF:
                raise ValueError(f"{name} must be 0..255, not {getattr(self, name)}")
        if not 0 <= self.module_io <= 0xFFFF:
            raise ValueError(f"module_io must be 0..0xFFFF, not {self.module_io}")

    def pack(self) -> bytes:
        return bytes((self.network, self.station, self.module_io & 0xFF, self.module_io >> 8,
                      self.multidrop))

    @classmethod
    def unpack(cls, data: bytes) -> Route:
        return cls(data[0], data[1], data[2] | (data[3] << 8), data[4])

    def describe(self) -> str:
        return (f"network {self.network}, station {self.station}, module I/O "
                f"{self.module_io:04X}H, multidrop {self.multidrop}")


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """A device on the wire: its code and number (the head of a range)."""

    code: int
    number: int


def _device_spec(ref: DeviceRef, long: bool) -> bytes:
    if long:
        if not 0 <= ref.number <= 0xFFFFFFFF:
            raise ValueError(f"device number {ref.number} does not fit in 4 bytes")
        return ref.number.to_bytes(4, "little") + ref.code.to_bytes(2, "little")
    if not 0 <= ref.number <= 0xFFFFFF:
        raise ValueError(f"device number {ref.number} does not fit in 3 bytes")
    return ref.number.to_bytes(3, "little") + bytes((ref.code,))


def _device_subcommand(bits: bool, long: bool) -> int:
    return (0x0002 if long else 0x0000) | (0x0001 if bits else 0x0000)


def request(route: Route, timer: int, command: int, subcommand: int, data: bytes = b"",
            serial: int | None = None) -> bytes:
    """A whole request frame: 3E, or 4E when ``serial`` is given."""
    if not 0 <= timer <= 0xFFFF:
        raise ValueError(f"monitoring timer must be 0..65535 (x 250 ms), not {timer}")
    length = 6 + len(data)
    if length > 0xFFFF:
        raise ValueError(f"request data of {len(data)} bytes is too long for one frame")
    body = (route.pack() + length.to_bytes(2, "little") + timer.to_bytes(2, "little")
            + command.to_bytes(2, "little") + subcommand.to_bytes(2, "little") + data)
    if serial is None:
        return _REQUEST["3e"] + body
    if not 0 <= serial <= 0xFFFF:
        raise ValueError(f"serial number must be 0..65535, not {serial}")
    return _REQUEST["4e"] + serial.to_bytes(2, "little") + b"\x00\x00" + body


def batch_read(route: Route, timer: int, ref: DeviceRef, points: int, *, bits: bool = False,
               long: bool = False, serial: int | None = None) -> bytes:
    """Batch read (0401): ``points`` words from ``ref`` (a bit device in word units: 16 of its
    bits per word), or with ``bits`` that many bits, two per byte."""
    if not 1 <= points <= 0xFFFF:
        raise ValueError(f"points must be 1..65535, not {points}")
    data = _device_spec(ref, long) + points.to_bytes(2, "little")
    return request(route, timer, Command.BATCH_READ, _device_subcommand(bits, long), data, serial)


def batch_write(route: Route, timer: int, ref: DeviceRef, values: Sequence[int], *,
                bits: bool = False, long: bool = False, serial: int | None = None) -> bytes:
    """Batch write (1401): ``values`` are words (0..65535), or with ``bits`` 0/1 per bit."""
    if not values:
        raise ValueError("nothing to write")
    if bits:
        payload = pack_bits(values)
    else:
        if any(not 0 <= v <= 0xFFFF for v in values):
            raise ValueError("a word to write is outside 0..65535")
        payload = b"".join(v.to_bytes(2, "little") for v in values)
    data = _device_spec(ref, long) + len(values).to_bytes(2, "little") + payload
    return request(route, timer, Command.BATCH_WRITE, _device_subcommand(bits, long), data,
                   serial)


def random_read(route: Route, timer: int, words: Sequence[DeviceRef],
                dwords: Sequence[DeviceRef], *, long: bool = False,
                serial: int | None = None) -> bytes:
    """Random read (0403): one word from each of ``words`` and two (a double word) from each
    of ``dwords``; the answer has the words first, then the double words."""
    if not words and not dwords:
        raise ValueError("a random read needs at least one device")
    if len(words) > 0xFF or len(dwords) > 0xFF:
        raise ValueError("a random read takes at most 255 word and 255 double-word points")
    data = bytes((len(words), len(dwords))) + b"".join(
        _device_spec(ref, long) for ref in (*words, *dwords))
    return request(route, timer, Command.RANDOM_READ, 0x0002 if long else 0x0000, data, serial)


def read_type_name(route: Route, timer: int, serial: int | None = None) -> bytes:
    """Read CPU model (0101): answered with 16 characters of model name and a model code."""
    return request(route, timer, Command.READ_TYPE_NAME, 0x0000, b"", serial)


def pack_bits(values: Sequence[int]) -> bytes:
    """Bits in bit units: two per byte, the first in the high nibble (``1 0 1`` -> 10 10)."""
    out = bytearray((len(values) + 1) // 2)
    for i, value in enumerate(values):
        if value not in (0, 1):
            raise ValueError(f"a bit is 0 or 1, not {value!r}")
        if value:
            out[i // 2] |= 0x10 if i % 2 == 0 else 0x01
    return bytes(out)


def unpack_bits(data: bytes, count: int) -> list[int]:
    """``count`` bits of a bit-unit answer (:func:`pack_bits` reversed); a nibble other than
    0 or 1 is :class:`McFrameError`."""
    if len(data) != (count + 1) // 2:
        raise McFrameError("decode", f"{len(data)} bytes of bits for {count} points")
    out = []
    for i in range(count):
        nibble = (data[i // 2] >> 4) if i % 2 == 0 else (data[i // 2] & 0x0F)
        if nibble > 1:
            raise McFrameError("decode", f"bit {i} is {nibble:X}H, neither 0 nor 1")
        out.append(nibble)
    return out


# -- answers ----------------------------------------------------------------------------


def header_size(kind: FrameKind) -> int:
    """Bytes to read before the answer's length is known."""
    return _HEADER[kind]


def answer_length(header: bytes, kind: FrameKind) -> int:
    """Bytes that follow ``header`` (its first :func:`header_size` bytes): the data length.
    :class:`McFrameError` (``garbled``) when the header is not an answer's."""
    if header[:2] != _ANSWER[kind]:
        raise McFrameError("garbled", f"not an answer: starts {header[:2].hex(' ').upper()}, "
                         f"not {_ANSWER[kind].hex(' ').upper()} ({kind.upper()} frame)")
    if kind == "4e" and header[4:6] != b"\x00\x00":
        raise McFrameError("garbled", f"4E answer with {header[4:6].hex(' ').upper()} where "
                         "00 00 belongs")
    length = int.from_bytes(header[-2:], "little")
    if not 2 <= length <= MAX_ANSWER_DATA:
        raise McFrameError("garbled", f"an answer announcing {length} bytes of data")
    return length


def answer_serial(header: bytes) -> int:
    """The serial number of a 4E answer header."""
    return int.from_bytes(header[2:4], "little")


@dataclass(frozen=True, slots=True)
class Response:
    """A checked answer: ``end_code`` 0 with ``data``, or an end code with its error info
    (``failed``: the command and subcommand the device names, when it sent them)."""

    route: Route
    end_code: int
    data: bytes
    serial: int | None = None
    failed: tuple[int, int] | None = None


def parse_response(frame: bytes, kind: FrameKind, route: Route,
                   serial: int | None = None) -> Response:
    """Check a whole answer frame against the request it answers (its route and, 4E, serial).
    :class:`McFrameError` for anything that is not that answer."""
    size = _HEADER[kind]
    if len(frame) < size:
        raise McFrameError("garbled", f"{len(frame)} bytes, shorter than an answer header")
    length = answer_length(frame[:size], kind)
    if len(frame) != size + length:
        raise McFrameError("garbled", f"an answer of {len(frame)} bytes announcing "
                         f"{size + length}")
    got_serial = answer_serial(frame) if kind == "4e" else None
    if serial is not None and got_serial != serial:
        raise McFrameError("decode", f"answer to request {got_serial}, not to {serial}")
    got_route = Route.unpack(frame[size - 7:size - 2])
    if got_route != route:
        raise McFrameError("decode", f"answer from {got_route.describe()}, asked "
                         f"{route.describe()}")
    end_code = int.from_bytes(frame[size:size + 2], "little")
    data = frame[size + 2:]
    if end_code == 0:
        return Response(got_route, 0, data, got_serial)
    failed = None
    if len(data) >= 9:
        failed = (int.from_bytes(data[5:7], "little"), int.from_bytes(data[7:9], "little"))
    return Response(got_route, end_code, data, got_serial, failed)
