"""Modbus RTU frames on a byte stream that also carries other packets.

A serial device server or a 4G DTU passes Modbus RTU frames through a TCP
connection, and puts packets of its own into the same stream: a DTU its
registration packet (first on each connection, and with some DTUs again later)
and its heartbeat, a device server its keep-alive. They arrive wherever the
DTU's timer fires: between two answers, or in the middle of one (the DTU packs
the serial bytes of one answer into two TCP segments and its heartbeat goes
between them). Pure functions, no I/O, no pymodbus:

- :func:`crc16` and :func:`rtu_frame`: the CRC and a request's frame;
- :class:`Expect`: the answer one request can get (unit, function, byte count);
- :class:`Packets`: the other packets, given as literal bytes or patterns;
- :func:`find_answer`: one step through what arrived so far: the answer, a packet to
  drop, bytes to skip as garbage, or "wait for more";
- :func:`identify`: which registration packet a new connection opened with.

Finding an answer. The CRC is the verdict: the bytes as they came are tried
first, so a heartbeat's bytes that happen to be in an answer's data never cut
it; only when they do not make a frame with a good CRC are the packets taken
out of what follows the answer's first byte, and that is tried. A packet at the
head of the stream is dropped whole. A byte that starts no answer (and no
packet) is skipped as garbage, one at a time, so an answer after garbage is
still found. Answers to reads are recognised by their byte count too (the
request says how many registers come), so garbage that starts with the unit
and function does not make the reader wait for a length it made up.

A literal packet (hex, ascii) is recognised wherever it arrives, also cut over
two segments. A packet given as a pattern is recognised where it arrives whole in
one segment (a regular expression cannot say that a few bytes are the start of a
match); cut over two segments inside an answer, it makes that answer garbled (a
retry gets the next). Heartbeats are fixed bytes on the DTUs met so far; patterns
are for registration packets, which a DTU sends in one piece.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "Expect",
    "Found",
    "Identified",
    "Packets",
    "crc16",
    "find_answer",
    "identify",
    "rtu_frame",
]


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()
#: longest data the vectorised CRC takes (an RTU frame is at most 256 bytes)
_CRC_SPAN = 256
#: shorter data goes through the byte loop (a NumPy call costs more than a few steps)
_CRC_LOOP_BELOW = 64


def _crc_planes() -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint16]]:
    """The CRC is linear over GF(2): the CRC of ``n`` bytes is the XOR of what the initial
    0xFFFF leaves after ``n`` steps and of what each byte leaves after the steps of the
    bytes behind it. ``zeros[k, b]``: byte ``b`` followed by ``k`` zero bytes, from 0;
    ``init[n]``: 0xFFFF after ``n`` zero bytes."""
    table = np.array(_CRC_TABLE, dtype=np.uint16)
    zeros = np.empty((_CRC_SPAN, 256), dtype=np.uint16)
    zeros[0] = table  # one step from register 0 with byte b
    for k in range(1, _CRC_SPAN):
        prev = zeros[k - 1]
        zeros[k] = (prev >> 8) ^ table[prev & 0xFF]
    init = np.empty(_CRC_SPAN + 1, dtype=np.uint16)
    crc = 0xFFFF
    for n in range(_CRC_SPAN + 1):
        init[n] = crc
        crc = (crc >> 8) ^ _CRC_TABLE[crc & 0xFF]
    return zeros, init


_ZEROS, _INIT = _crc_planes()
_BEHIND = np.arange(_CRC_SPAN - 1, -1, -1)


def crc16(data: bytes | bytearray | memoryview) -> int:
    """The Modbus CRC-16 of ``data`` (sent low byte first). Long data in one NumPy
    gather and XOR reduction (an answer of 125 registers: about a fifth of the byte loop's time)."""
    n = len(data)
    if _CRC_LOOP_BELOW <= n <= _CRC_SPAN:
        byte = np.frombuffer(data, dtype=np.uint8)
        return int(_INIT[n] ^ np.bitwise_xor.reduce(_ZEROS[_BEHIND[_CRC_SPAN - n:], byte]))
    crc = 0xFFFF
    table = _CRC_TABLE
    for byte_ in data:
        crc = (crc >> 8) ^ table[(crc ^ byte_) & 0xFF]
    return crc


def rtu_frame(unit: int, pdu: bytes) -> bytes:
    """``unit`` + ``pdu`` (function code and data) + CRC: one RTU frame."""
    body = bytes((unit,)) + pdu
    return body + crc16(body).to_bytes(2, "little")


def _crc_ok(frame: bytes | bytearray) -> bool:
    return len(frame) >= 4 and crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")


#: functions whose answer is ``unit fc byte_count data... crc``
_COUNTED = frozenset({1, 2, 3, 4})
#: functions whose answer is 8 bytes: ``unit fc address(2) value-or-count(2) crc``
_FIXED_8 = frozenset({5, 6, 15, 16})


@dataclass(frozen=True, slots=True)
class Expect:
    """The answer a request can get: from ``unit``, to ``function`` (or its exception,
    ``function | 0x80``), with ``byte_count`` data bytes for a read (None: any)."""

    unit: int
    function: int
    byte_count: int | None = None

    def length(self, head: bytes | bytearray) -> int | None:
        """Bytes of the answer that starts with ``head`` (unit and function already
        matched); 0 when ``head`` cannot start one; None until enough of it is there."""
        function = head[1]
        if function == self.function | 0x80:
            return 5
        if self.function in _FIXED_8:
            return 8
        if self.function in _COUNTED:
            if len(head) < 3:
                return None
            return 5 + head[2]
        return 0


class Packets:
    """The packets besides Modbus in one stream: literal bytes and patterns (bytes
    regular expressions). Empty: the stream carries Modbus alone."""

    __slots__ = ("_longest", "literals", "patterns")

    def __init__(self, literals: Sequence[bytes] = (),
                 patterns: Sequence[re.Pattern[bytes]] = ()) -> None:
        # longest first: of two packets where one starts the other, the longer one is meant
        self.literals = tuple(sorted({lit for lit in literals if lit}, key=len, reverse=True))
        self.patterns = tuple(patterns)
        self._longest = len(self.literals[0]) if self.literals else 0

    def __bool__(self) -> bool:
        return bool(self.literals or self.patterns)

    def at(self, data: bytes | bytearray, i: int) -> int:
        """Length of a whole packet starting at ``data[i]`` (0: none)."""
        for literal in self.literals:
            if data.startswith(literal, i):
                return len(literal)
        for pattern in self.patterns:
            match = pattern.match(data, i)
            if match is not None and match.end() > i:
                return match.end() - i
        return 0

    def arriving(self, data: bytes | bytearray) -> bool:
        """``data`` is the start of a literal packet whose rest has not come yet."""
        return any(len(data) < len(lit) and lit.startswith(data) for lit in self.literals)

    def tail(self, data: bytes | bytearray) -> int:
        """Bytes at the end of ``data`` that may be the start of a literal packet."""
        for i in range(max(0, len(data) - self._longest + 1), len(data)):
            if self.arriving(data[i:]):
                return len(data) - i
        return 0

    def strip(self, data: bytes | bytearray, start: int) -> tuple[bytes, list[int]]:
        """``data`` with the whole packets from ``start`` on taken out, and for each byte
        kept its index in ``data``."""
        kept = bytearray(data[:start])
        where = list(range(start))
        i, end = start, len(data)
        while i < end:
            n = self.at(data, i)
            if n:
                i += n
                continue
            kept.append(data[i])
            where.append(i)
            i += 1
        return bytes(kept), where


@dataclass(frozen=True, slots=True)
class Found:
    """One step of :func:`find_answer`: ``answer`` (``frame``, from the first ``used`` bytes,
    ``packets`` bytes of them other packets), ``packet`` (drop the first ``used`` bytes:
    a whole packet), ``garbage`` (skip the first ``used`` bytes; ``bad_crc``: they start
    an answer whose CRC is wrong) or ``wait`` (more bytes are needed)."""

    kind: Literal["answer", "packet", "garbage", "wait"]
    used: int = 0
    frame: bytes = b""
    packets: int = 0
    bad_crc: bool = False


_WAIT = Found("wait")


def _try(data: bytes | bytearray, expect: Expect) -> tuple[str, int]:
    """("frame", n), ("wait", 0), ("bad", n) (an answer's head, wrong CRC) or ("none", 0)."""
    if len(data) < 2:
        return ("wait", 0) if not data or data[0] == expect.unit else ("none", 0)
    if data[0] != expect.unit or data[1] not in (expect.function, expect.function | 0x80):
        return "none", 0
    n = expect.length(data)
    if n is None:
        return "wait", 0
    if n == 0:
        return "none", 0
    counted = expect.byte_count is not None and data[1] == expect.function \
        and expect.function in _COUNTED
    if counted and data[2] != expect.byte_count:
        # another count than asked: an answer only if it is whole and checks out (it is
        # then refused as the wrong size), never a length to wait for
        if len(data) >= n and _crc_ok(data[:n]):
            return "frame", n
        return "none", 0
    if len(data) < n:
        return "wait", 0
    return ("frame", n) if _crc_ok(data[:n]) else ("bad", n)


def find_answer(data: bytes | bytearray, expect: Expect, packets: Packets) -> Found:
    """One step through ``data`` (what arrived, oldest first) towards the answer
    ``expect`` describes (module docstring). Call again after acting on the result."""
    raw, n = _try(data, expect)
    if raw == "frame":
        return Found("answer", n, bytes(data[:n]))
    if raw == "wait":
        return _WAIT
    head = packets.at(data, 0) if packets else 0
    if head:
        return Found("packet", head)
    if packets:
        kept, where = packets.strip(data, 1)
        if len(kept) != len(data):
            cleaned, m = _try(kept, expect)
            if cleaned == "frame":
                used = where[m - 1] + 1
                return Found("answer", used, kept[:m], used - m)
            if cleaned == "wait":
                return _WAIT
        tail = packets.tail(kept)
        if tail and _try(kept[:len(kept) - tail], expect)[0] == "wait":
            return _WAIT  # a packet is arriving after the answer's first bytes
    return Found("garbage", 1, bad_crc=raw == "bad")


@dataclass(frozen=True, slots=True)
class Identified:
    """What :func:`identify` made of a connection's first bytes: ``match`` (the index of
    the packet in the list given, after ``used`` bytes), ``wait`` or ``unknown``."""

    kind: Literal["match", "wait", "unknown"]
    index: int = -1
    used: int = 0


def identify(data: bytes | bytearray, registrations: Sequence[bytes | re.Pattern[bytes]],
             limit: int, final: bool = False) -> Identified:
    """Which of ``registrations`` (literal bytes, or patterns searched in the bytes) the
    connection's first bytes ``data`` are. Of several that match, the longest match wins;
    a literal that could still match when more bytes come makes it wait, as does a pattern
    while fewer than ``limit`` bytes came. When none can match: ``unknown``. ``final``: no
    more bytes will be waited for: the best match now, or ``unknown``."""
    best: Identified | None = None
    pending = False
    for index, registration in enumerate(registrations):
        if isinstance(registration, bytes):
            if data.startswith(registration):
                if best is None or len(registration) > best.used:
                    best = Identified("match", index, len(registration))
            elif registration.startswith(data):
                pending = True
            continue
        found = registration.search(data)
        if found is not None and found.end() > 0:
            if best is None or found.end() > best.used:
                best = Identified("match", index, found.end())
        elif len(data) < limit:
            pending = True
    if best is not None:
        if final:
            return best
        longer = any(isinstance(r, bytes) and len(r) > best.used and r.startswith(data)
                     for r in registrations)
        return _WAIT_ID if longer else best
    return _WAIT_ID if pending and not final else Identified("unknown")


_WAIT_ID = Identified("wait")
