"""DL/T 645 frames and values, pure: bytes in, bytes out, no I/O.

A frame is ``[FE..FE] 68 A0..A5 68 C L DATA CS 16``: an optional wake-up preamble of
``FE`` bytes, the meter address as 6 BCD bytes low byte first, the control code, the
length of the data, the data with ``0x33`` added to every byte, the checksum (the sum
of every byte from the first ``68`` to the end of the data, modulo 256) and ``16``.

Read data carries the data identifier first (DL/T 645-2007: DI0 DI1 DI2 DI3, four
bytes; DL/T 645-1997: DI0 DI1, two bytes), then the value as BCD, low byte first. A
value's format (``XXXXXX.XX``) says how many digits and decimals it has; signed
values (currents, powers, power factors in 2007) carry the sign in the highest bit of
the highest byte. An exception frame (control code with bit 6 set) carries one error
byte whose bits say what the meter refused.

:class:`FrameReader` finds frames in a byte stream (a serial line or a TCP socket to a
serial device server): it skips preambles and garbage, drops frames with a wrong
checksum or end byte, and keeps a half frame until the rest arrives.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal

from gateway.errors import Dlt645FrameError

Version = Literal[2007, 1997]

START = 0x68
END = 0x16
PREAMBLE_BYTE = 0xFE
#: the broadcast (wildcard) address: every meter answers it
BROADCAST = "AAAAAAAAAAAA"
#: the longest data a frame can carry (its length is one byte)
MAX_DATA = 255
#: header (68 A0..A5 68 C L) and trailer (CS 16) around the data
OVERHEAD = 12


class Control(IntEnum):
    """Control codes of the requests this gateway sends (the answer adds 0x80)."""

    READ_2007 = 0x11
    READ_ADDRESS_2007 = 0x13
    WRITE_2007 = 0x14
    READ_1997 = 0x01
    WRITE_1997 = 0x04


#: bit 7 of the control code: the frame goes from the meter to the master
REPLY = 0x80
#: bit 6: an exception answer (the data is one error byte)
ERROR = 0x40
#: bit 5: more data follows in a further frame
MORE = 0x20

READ = {2007: Control.READ_2007, 1997: Control.READ_1997}
WRITE = {2007: Control.WRITE_2007, 1997: Control.WRITE_1997}
DI_BYTES = {2007: 4, 1997: 2}

#: error byte bits (DL/T 645-2007 section 7.3; DL/T 645-1997 uses bits 0-2 alike)
ERROR_BITS_2007 = {
    0: "other error",
    1: "no data requested (the meter does not have this data identifier)",
    2: "password wrong or not authorised",
    3: "the communication rate cannot be changed",
    4: "too many annual time zones",
    5: "too many daily time periods",
    6: "too many tariffs",
}
ERROR_BITS_1997 = {
    0: "illegal data",
    1: "wrong data identifier (the meter does not have it)",
    2: "password wrong",
    4: "too many annual time zones",
    5: "too many daily time periods",
    6: "too many tariffs",
}
#: the error bit saying that the meter does not have the data identifier asked for
NO_DATA_BIT = 1


# -- addresses and data identifiers ------------------------------------------------------

_ADDRESS = re.compile(r"^[0-9A]{12}$")


def address_bytes(address: str) -> bytes:
    """``"000012345678"`` -> ``78 56 34 12 00 00`` (low byte first); ``A`` digits are the
    wildcard (``AAAAAAAAAAAA`` is the broadcast address)."""
    if not _ADDRESS.match(address):
        raise Dlt645FrameError(f"meter address {address!r} is not 12 decimal digits")
    return bytes.fromhex(address)[::-1]


def address_text(raw: bytes) -> str:
    """The 6 address bytes of a frame as the 12 digits printed on the meter."""
    if len(raw) != 6:
        raise Dlt645FrameError(f"a meter address has 6 bytes, not {len(raw)}")
    return raw[::-1].hex().upper()


_DI = {2007: re.compile(r"^[0-9A-F]{8}$"), 1997: re.compile(r"^[0-9A-F]{4}$")}


def di_bytes(di: str, version: Version) -> bytes:
    """``"00010000"`` (DI3 DI2 DI1 DI0, as the standard prints it) -> DI0 first on the wire."""
    if not _DI[version].match(di):
        raise Dlt645FrameError(f"data identifier {di!r} is not {DI_BYTES[version] * 2} hex digits "
                         f"(DL/T 645-{version})")
    return bytes.fromhex(di)[::-1]


def di_text(raw: bytes) -> str:
    """DI0 first (the wire) -> ``"DI3DI2DI1DI0"`` as the standard prints it."""
    return raw[::-1].hex().upper()


# -- frames ------------------------------------------------------------------------------

_PLUS_33 = bytes((b + 0x33) & 0xFF for b in range(256))
_MINUS_33 = bytes((b - 0x33) & 0xFF for b in range(256))


def offset(data: bytes) -> bytes:
    """Add 0x33 to every data byte (the sender's side)."""
    return bytes(data).translate(_PLUS_33)


def unoffset(data: bytes) -> bytes:
    """Subtract 0x33 from every data byte (the receiver's side)."""
    return bytes(data).translate(_MINUS_33)


def checksum(body: bytes | bytearray) -> int:
    return sum(body) & 0xFF


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: the address as printed on the meter, the control code, the data
    (0x33 already taken off)."""

    address: str
    control: int
    data: bytes = b""

    @property
    def is_reply(self) -> bool:
        return bool(self.control & REPLY)

    @property
    def is_error(self) -> bool:
        return bool(self.control & REPLY and self.control & ERROR)

    @property
    def function(self) -> int:
        """The request's code (the low 5 bits): 0x11 read, 0x13 read address, ..."""
        return self.control & 0x1F

    def encode(self, preamble: int = 0) -> bytes:
        return encode_frame(self.address, self.control, self.data, preamble)


def encode_frame(address: str, control: int, data: bytes = b"", preamble: int = 0) -> bytes:
    """The bytes of a frame, with ``preamble`` wake-up bytes (FE) before it."""
    if len(data) > MAX_DATA:
        raise Dlt645FrameError(f"{len(data)} bytes of data do not fit a frame (at most {MAX_DATA})")
    if not 0 <= control <= 0xFF:
        raise Dlt645FrameError(f"control code {control} is not a byte")
    body = bytes([START, *address_bytes(address), START, control, len(data)]) + offset(data)
    return bytes([PREAMBLE_BYTE]) * preamble + body + bytes([checksum(body), END])


def decode_frame(raw: bytes) -> Frame:
    """One whole frame (preamble allowed before it, nothing after); raise
    :class:`Dlt645FrameError` saying what is wrong."""
    reader = FrameReader()
    frames = list(reader.feed(raw))
    if reader.rejected:
        raise Dlt645FrameError(reader.last_rejection)
    if len(frames) != 1 or reader.pending:
        raise Dlt645FrameError("not exactly one whole frame" if frames else "no whole frame")
    return frames[0]


def read_request(address: str, di: str, version: Version, preamble: int = 0) -> bytes:
    """A read of one data identifier."""
    return encode_frame(address, READ[version], di_bytes(di, version), preamble)


def read_address_request(preamble: int = 0) -> bytes:
    """DL/T 645-2007 "read communication address" to the broadcast address: a lone meter
    answers with its address."""
    return encode_frame(BROADCAST, Control.READ_ADDRESS_2007, b"", preamble)


def write_request(address: str, di: str, version: Version, value: bytes, password: bytes,
                  operator: bytes = b"\x00\x00\x00\x00", preamble: int = 0) -> bytes:
    """A write of one data identifier: DI, password (level and 3 bytes), operator code
    (2007 only) and the value's bytes."""
    if len(password) != 4:
        raise Dlt645FrameError("a password is 4 bytes: its level PA and P0 P1 P2")
    extra = operator if version == 2007 else b""
    data = di_bytes(di, version) + password + extra + value
    return encode_frame(address, WRITE[version], data, preamble)


@dataclass(slots=True)
class ReadAnswer:
    """What a read came back with: the value bytes, or the meter's error byte."""

    di: str
    data: bytes = b""
    error: int | None = None
    more: bool = False


def parse_read_answer(frame: Frame, di: str, version: Version) -> ReadAnswer:
    """The answer to a read of ``di``; raise :class:`Dlt645FrameError` when the frame is not
    one (another function, another data identifier, too short)."""
    if not frame.is_reply or frame.function != READ[version]:
        raise Dlt645FrameError(f"answer has control code {frame.control:02X}, not an answer to a "
                         f"read ({READ[version] | REPLY:02X})")
    if frame.is_error:
        if len(frame.data) != 1:
            raise Dlt645FrameError(f"exception answer with {len(frame.data)} data bytes, not 1")
        return ReadAnswer(di, error=frame.data[0])
    size = DI_BYTES[version]
    if len(frame.data) < size:
        raise Dlt645FrameError(f"answer has {len(frame.data)} data bytes, fewer than its "
                         f"data identifier's {size}")
    got = di_text(frame.data[:size])
    if got != di:
        raise Dlt645FrameError(f"answer is for data identifier {got}, not {di}")
    return ReadAnswer(di, frame.data[size:], more=bool(frame.control & MORE))


def describe_error(error: int, version: Version) -> str:
    """The bits of a meter's error byte in words."""
    words = ERROR_BITS_2007 if version == 2007 else ERROR_BITS_1997
    said = [words.get(bit, f"reserved bit {bit}") for bit in range(8) if error >> bit & 1]
    return f"error byte {error:02X}: " + ("; ".join(said) if said else "no bit set")


# -- the byte stream ---------------------------------------------------------------------

@dataclass(slots=True)
class FrameReader:
    """Frames out of a byte stream, whatever comes around them.

    ``feed(data)`` yields every whole, valid frame. Bytes before a frame's start that
    are no frame (preambles, noise) are counted in :attr:`discarded`; a candidate frame
    whose checksum or end byte is wrong is dropped and counted in :attr:`rejected`
    (its reason in :attr:`last_rejection`), and the search resumes one byte after its
    start. A half frame waits in :attr:`pending` for the rest.
    """

    buffer: bytearray = field(default_factory=bytearray)
    discarded: int = 0
    rejected: int = 0
    last_rejection: str = ""

    @property
    def pending(self) -> int:
        """Bytes held back: the start of a frame whose rest has not come yet."""
        return len(self.buffer)

    def reset(self) -> None:
        """Forget a half frame (counted as discarded): the next answer starts afresh."""
        self.discarded += sum(1 for b in self.buffer if b != PREAMBLE_BYTE)
        self.buffer.clear()

    def feed(self, data: bytes) -> Iterator[Frame]:
        buf = self.buffer
        buf += data
        while buf:
            start = buf.find(START)
            if start < 0:
                self._drop(len(buf))
                return
            if start:
                self._drop(start)
            status, end = self._check(0)
            if status == "frame":
                frame = Frame(address_text(bytes(buf[1:7])), buf[8],
                              unoffset(bytes(buf[10:end - 2])))
                del buf[:end]
                yield frame
            elif status == "header":
                self._drop(1)
            elif status == "short":
                # a half frame, or a stray 68 whose length byte asks for more than will
                # come: a whole valid frame after it wins
                later = next((i for i in range(1, len(buf))
                              if buf[i] == START and self._check(i)[0] == "frame"), None)
                if later is None:
                    return
                self._drop(later)
            else:
                self._reject(status)

    def _check(self, i: int) -> tuple[str, int]:
        """What starts at ``buf[i]`` (a 68): ``frame`` (ending at the returned index),
        ``short``, ``header`` (no second 68), or why it is rejected."""
        buf = self.buffer
        if len(buf) < i + 8:
            return "short", 0
        if buf[i + 7] != START:
            return "header", 0
        if len(buf) < i + 10:
            return "short", 0
        end = i + 12 + buf[i + 9]
        if len(buf) < end:
            return "short", 0
        expected = checksum(buf[i:end - 2])
        if buf[end - 2] != expected:
            return f"checksum {buf[end - 2]:02X}, expected {expected:02X}", 0
        if buf[end - 1] != END:
            return f"end byte {buf[end - 1]:02X}, not 16", 0
        return "frame", end

    def _drop(self, n: int) -> None:
        self.discarded += sum(1 for b in self.buffer[:n] if b != PREAMBLE_BYTE)
        del self.buffer[:n]

    def _reject(self, reason: str) -> None:
        self.rejected += 1
        self.last_rejection = f"bad frame: {reason}"
        self._drop(1)


# -- values ------------------------------------------------------------------------------

#: text formats: the letters of each field, in the order the standard prints them
_TEXT_FIELDS = re.compile(r"^(YY|MM|DD|WW|hh|mm|ss|NN)+$")


@dataclass(frozen=True, slots=True)
class Format:
    """A value's format as the standard prints it.

    Numbers: ``XXXXXX.XX`` (8 BCD digits, 2 decimals; 4 bytes); ``signed`` numbers carry
    their sign in the top bit. Text: dates, times and digit strings (``YYMMDDhhmm``,
    ``hhmmss``, ``NNNNNNNNNNNN``), decoded as ``2024-05-17 08:30``, ``08:30:00``, the
    digits.
    """

    text: str
    digits: int
    decimals: int
    signed: bool = False
    is_number: bool = True

    @classmethod
    def parse(cls, text: str, signed: bool = False) -> Format:
        if re.fullmatch(r"X+(\.X+)?", text):
            whole, _, frac = text.partition(".")
            return cls(text, len(whole) + len(frac), len(frac), signed)
        if _TEXT_FIELDS.fullmatch(text):
            if signed:
                raise ValueError(f"format {text!r} is text: it cannot be signed")
            return cls(text, len(text), 0, False, is_number=False)
        raise ValueError(f"unknown format {text!r}: numbers are written like XXXXXX.XX, "
                         "dates and times like YYMMDDhhmm, hhmmss, digit strings like NNNNNN")

    @property
    def size(self) -> int:
        """Bytes on the wire (an odd number of digits leaves the top nibble 0: ``XXX``)."""
        return (self.digits + 1) // 2

    @property
    def largest(self) -> int:
        """The largest magnitude, in units of the last digit (signed: one bit less)."""
        top: int = 10 ** self.digits - 1  # int ** int is Any to mypy (a negative power)
        if self.signed and self.digits % 2 == 0:  # the sign bit takes the top digit's 8
            return int(f"7{'9' * (self.digits - 1)}")
        return top

    def __str__(self) -> str:
        return f"{'signed ' if self.signed else ''}{self.text}"


def _digits(raw: bytes, fmt: Format) -> tuple[str, bool]:
    """The BCD digits of ``raw`` (low byte first) and the sign bit; raise when not BCD."""
    if len(raw) != fmt.size:
        raise Dlt645FrameError(f"{len(raw)} bytes for format {fmt.text} ({fmt.size} bytes)")
    high = raw[-1]
    negative = bool(fmt.signed and high & 0x80)
    if negative:
        raw = raw[:-1] + bytes([high & 0x7F])
    text = raw[::-1].hex()
    if not text.isdigit():
        raise Dlt645FrameError(f"{raw[::-1].hex().upper()} is not BCD (format {fmt.text})")
    if len(text) > fmt.digits:
        if text[0] != "0":
            raise Dlt645FrameError(f"{text} has more digits than format {fmt.text}")
        text = text[1:]
    return text, negative


def decode_number(raw: bytes, fmt: Format) -> float:
    """A BCD number, correctly rounded from its decimal digits (``int / 10**d``)."""
    digits, negative = _digits(raw, fmt)
    value = int(digits) / 10 ** fmt.decimals if fmt.decimals else float(int(digits))
    return -value if negative else value


def decode_integer(raw: bytes, fmt: Format) -> int:
    """A BCD number of a format without decimals, exactly."""
    digits, negative = _digits(raw, fmt)
    return -int(digits) if negative else int(digits)


_TEXT_SHAPES = {
    "YYMMDDhhmm": "20{0}{1}-{2}{3}-{4}{5} {6}{7}:{8}{9}",
    "YYMMDDhhmmss": "20{0}{1}-{2}{3}-{4}{5} {6}{7}:{8}{9}:{10}{11}",
    "YYMMDDWW": "20{0}{1}-{2}{3}-{4}{5}",
    "MMDDhhmm": "{0}{1}-{2}{3} {4}{5}:{6}{7}",
    "hhmmss": "{0}{1}:{2}{3}:{4}{5}",
    "hhmm": "{0}{1}:{2}{3}",
}


def decode_text(raw: bytes, fmt: Format) -> str:
    """A BCD date, time or digit string as text."""
    digits, _ = _digits(raw, fmt)
    shape = _TEXT_SHAPES.get(fmt.text)
    return shape.format(*digits) if shape else digits


def decode_value(raw: bytes, fmt: Format) -> float | int | str:
    if not fmt.is_number:
        return decode_text(raw, fmt)
    return decode_number(raw, fmt)


def encode_number(value: float | int, fmt: Format) -> bytes:
    """``value`` in ``fmt``: rounded to the format's decimals (half away from zero),
    refused when it does not fit or is negative for an unsigned format."""
    if not fmt.is_number:
        raise Dlt645FrameError(f"format {fmt.text} is text, not a number")
    if isinstance(value, float) and value != value:
        raise Dlt645FrameError("NaN has no BCD form")
    from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

    try:
        scaled = (Decimal(repr(value)) if isinstance(value, float) else Decimal(value)) \
            .scaleb(fmt.decimals).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    except InvalidOperation as exc:
        raise Dlt645FrameError(f"{value!r} is not a number in format {fmt.text}") from exc
    units = int(scaled)
    if units < 0 and not fmt.signed:
        raise Dlt645FrameError(f"{value!r} is negative; format {fmt.text} is unsigned")
    if abs(units) > fmt.largest:
        raise Dlt645FrameError(f"{value!r} does not fit format {fmt}")
    raw = bytearray(bytes.fromhex(f"{abs(units):0{fmt.size * 2}d}")[::-1])
    if units < 0:
        raw[-1] |= 0x80
    return bytes(raw)


def encode_text(value: str, fmt: Format) -> bytes:
    """A digit string (the format's digits, separators dropped) in BCD, low byte first."""
    digits = "".join(c for c in value if c.isdigit())
    if fmt.text.startswith("YY") and len(digits) == fmt.digits + 2 and digits.startswith("20"):
        digits = digits[2:]  # 2024-05-17 -> 240517
    if len(digits) != fmt.digits:
        raise Dlt645FrameError(
            f"{value!r} does not have the {fmt.digits} digits of format {fmt.text}")
    return bytes.fromhex(digits.zfill(fmt.size * 2))[::-1]
