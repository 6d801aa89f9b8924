"""Frames of the link protocol: header, CRC, COBS, and a streaming decoder.

A frame before COBS (all integers little-endian)::

    offset size field
    0      1    version       protocol version, 1
    1      1    type          message type (:class:`MessageType`)
    2      2    node_id       the node's id (frames to a node: its id, 0xFFFF = all)
    4      2    sequence      per sender, +1 for every frame it sends, wraps at 0xFFFF
    6      n    payload       the message (``firmware_bridge/messages.py``), n <= 1024
    6+n    2    crc           CRC-16/CCITT-FALSE over bytes 0 .. 5+n

On the wire a frame is ``0x00, COBS(frame), 0x00``: the leading delimiter lets a
receiver drop line noise before the frame; empty frames (``0x00 0x00``) are ignored.

MCUmgr SMP frames (firmware update) share the link: a frame that starts with
0x06 0x09 (first fragment) or 0x04 0x14 (continuation) runs to the next 0x0A and
is set aside for the SMP client. A COBS frame cannot start like that, because its
second byte is the version (1); versions 9 and 20 are reserved for that reason.
"""

from __future__ import annotations

import enum
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from firmware_bridge import cobs
from firmware_bridge.crc import crc16
from gateway.errors import CobsError, NodeFrameError

VERSION = 1
HEADER = struct.Struct("<BBHH")
HEADER_SIZE = HEADER.size  # 6
CRC_SIZE = 2
MAX_PAYLOAD = 1024
#: longest COBS-encoded frame (header + payload + crc, plus the COBS overhead)
_MAX_RAW = HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE
MAX_ENCODED = _MAX_RAW + _MAX_RAW // 254 + 1
BROADCAST = 0xFFFF
DELIMITER = 0x00
SMP_START = b"\x06\x09"
SMP_CONTINUATION = b"\x04\x14"
SMP_END = 0x0A
#: longest SMP console frame accepted (the MCUmgr default is 127 bytes per fragment)
MAX_SMP = 4096


class MessageType(enum.IntEnum):
    """Message types. Node -> gateway below 0x10, gateway -> node 0x10..0x1F."""

    HELLO = 0x01
    READINGS = 0x02
    HEARTBEAT = 0x03
    ACK = 0x04
    NACK = 0x05
    ERROR = 0x06
    HELLO_REQUEST = 0x10
    SET_CONFIG = 0x11


class BadFrame(enum.StrEnum):
    """Why a frame was dropped: the counter names (``frame_<reason>`` in driver errors)."""

    COBS = "cobs"
    SHORT = "short"
    CRC = "crc"
    VERSION = "version"
    TYPE = "type"
    OVERSIZE = "oversize"
    SMP_BROKEN = "smp_broken"


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame: header fields and the raw payload."""

    type: MessageType
    node_id: int
    sequence: int
    payload: bytes
    version: int = VERSION


def pack_frame(type_: MessageType, node_id: int, sequence: int, payload: bytes = b"") -> bytes:
    """Header + payload + CRC, before COBS."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    body = HEADER.pack(VERSION, int(type_), node_id & 0xFFFF, sequence & 0xFFFF) + payload
    return body + crc16(body).to_bytes(2, "little")


def encode_frame(type_: MessageType, node_id: int, sequence: int, payload: bytes = b"") -> bytes:
    """The wire bytes of one frame: ``0x00, COBS(header + payload + crc), 0x00``."""
    return b"\x00" + cobs.encode(pack_frame(type_, node_id, sequence, payload)) + b"\x00"


def unpack_frame(raw: bytes) -> Frame:
    """Check and split a COBS-decoded frame. Raise :class:`NodeFrameError`."""
    if len(raw) < HEADER_SIZE + CRC_SIZE:
        raise NodeFrameError(BadFrame.SHORT, f"{len(raw)} bytes, fewer than header and CRC")
    body, crc = raw[:-CRC_SIZE], int.from_bytes(raw[-CRC_SIZE:], "little")
    if crc16(body) != crc:
        raise NodeFrameError(BadFrame.CRC, f"CRC {crc:#06x}, computed {crc16(body):#06x}")
    version, type_, node_id, sequence = HEADER.unpack_from(body)
    if version != VERSION:
        raise NodeFrameError(BadFrame.VERSION, f"protocol version {version}, expected {VERSION}")
    try:
        mtype = MessageType(type_)
    except ValueError:
        raise NodeFrameError(BadFrame.TYPE, f"unknown message type {type_:#04x}") from None
    return Frame(mtype, node_id, sequence, body[HEADER_SIZE:], version)


def decode_frame(encoded: bytes) -> Frame:
    """Decode the COBS bytes of one frame (between delimiters). Raise :class:`NodeFrameError`."""
    if len(encoded) > MAX_ENCODED:
        raise NodeFrameError(BadFrame.OVERSIZE, f"{len(encoded)} bytes")
    try:
        raw = cobs.decode(encoded)
    except CobsError as exc:
        raise NodeFrameError(BadFrame.COBS, str(exc)) from None
    return unpack_frame(raw)


class FrameDecoder:
    """Streaming decoder: feed it bytes as they arrive, get the good frames back.

    It never raises on bad input. Every dropped frame is counted once in
    :attr:`bad` by :class:`BadFrame` reason; the decoder resynchronises at the next
    0x00. With ``on_smp`` set, SMP frames (0x06 0x09 / 0x04 0x14 ... 0x0A) are handed
    to it whole; without it they are only counted in :attr:`smp_frames`.
    """

    def __init__(self, on_smp: Callable[[bytes], None] | None = None, smp: bool = True) -> None:
        self.on_smp = on_smp
        self.smp = smp
        self.bad: Counter[BadFrame] = Counter()
        self.frames = 0
        self.smp_frames = 0
        self.bytes_in = 0
        self._buf = bytearray()
        self._in_smp = False
        self._overflow = False

    @property
    def bad_total(self) -> int:
        return sum(self.bad.values())

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Consume ``data``; return the frames completed by it, in order."""
        out: list[Frame] = []
        self.bytes_in += len(data)
        view = bytes(data)
        i, n = 0, len(view)
        buf = self._buf
        while i < n:
            if self._in_smp:
                end = _find_first(view, i, (SMP_END, DELIMITER))
                if end < 0:
                    self._take(view[i:], MAX_SMP)
                    return out
                self._take(view[i:end], MAX_SMP)
                self._end_smp(view[end] == SMP_END)
                i = end + 1
                continue
            if not buf and self.smp and not self._overflow:
                # the start of a frame: SMP by its marker? (may need one more byte)
                head = view[i : i + 2]
                if len(head) == 1 and head[0] in (SMP_START[0], SMP_CONTINUATION[0]):
                    buf.append(head[0])
                    return out
                if head in (SMP_START, SMP_CONTINUATION):
                    self._in_smp = True
                    continue
            elif (
                len(buf) == 1
                and self.smp
                and bytes((buf[0], view[i])) in (SMP_START, SMP_CONTINUATION)
            ):
                self._in_smp = True
                continue
            end = view.find(DELIMITER, i)
            if end < 0:
                self._take(view[i:], MAX_ENCODED)
                return out
            self._take(view[i:end], MAX_ENCODED)
            i = end + 1
            frame = self._end_frame()
            if frame is not None:
                out.append(frame)
        return out

    def _take(self, chunk: bytes, limit: int) -> None:
        if self._overflow:
            return
        self._buf += chunk
        if len(self._buf) > limit:  # too long for a frame: drop it, count it at its end
            self._overflow = True
            self._buf.clear()

    def _end_frame(self) -> Frame | None:
        buf, overflow = self._buf, self._overflow
        self._overflow = False
        if overflow:
            self.bad[BadFrame.OVERSIZE] += 1
            return None
        if not buf:
            return None  # an empty frame: two delimiters in a row
        encoded = bytes(buf)
        buf.clear()
        try:
            frame = decode_frame(encoded)
        except NodeFrameError as exc:
            self.bad[exc.reason] += 1
            return None
        self.frames += 1
        return frame

    def _end_smp(self, complete: bool) -> None:
        self._in_smp = False
        data, overflow = bytes(self._buf) + b"\n", self._overflow
        self._buf.clear()
        self._overflow = False
        if overflow:
            self.bad[BadFrame.OVERSIZE] += 1
        elif not complete:  # a 0x00 inside an SMP frame: noise, or a cut-off fragment
            self.bad[BadFrame.SMP_BROKEN] += 1
        else:
            self.smp_frames += 1
            if self.on_smp is not None:
                self.on_smp(data)


def _find_first(data: bytes, start: int, values: tuple[int, int]) -> int:
    """Index of the first of ``values`` in ``data[start:]``, or -1."""
    hits = [h for h in (data.find(v, start) for v in values) if h >= 0]
    return min(hits) if hits else -1
