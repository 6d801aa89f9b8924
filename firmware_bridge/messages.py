"""Message payloads of the link protocol: fixed little-endian layouts (see PROTOCOL.md).

:func:`encode_message` gives the (type, payload) of a message, :func:`decode_message`
the message of a frame. Strings are UTF-8 with a one-byte length in front.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

import numpy as np

from firmware_bridge.frames import MAX_PAYLOAD, Frame, MessageType, encode_frame
from gateway.errors import MessageError


class ReadingStatus(enum.IntEnum):
    """Per-reading status from the node; maps to the tag's quality."""

    OK = 0
    UNCERTAIN = 1  # e.g. outside the sensor's calibrated range
    FAULT = 2  # the sensor failed; the value is meaningless


class ConfigKey(enum.IntEnum):
    """Settings the gateway may change with SET_CONFIG (values are u32)."""

    SAMPLE_INTERVAL_MS = 1
    SAMPLES_PER_FRAME = 2
    HEARTBEAT_INTERVAL_MS = 3
    CHANNEL_MASK = 4


class NackReason(enum.IntEnum):
    UNKNOWN_KEY = 1
    OUT_OF_RANGE = 2
    BUSY = 3
    MALFORMED = 4
    UNSUPPORTED = 5


#: readings flag: ``base`` is Unix time in ms (the node has a real-time clock), not ticks
FLAG_UNIX_MS = 0x01
READINGS_HEAD = struct.Struct("<BQB")
READING = struct.Struct("<BBHf")
#: one reading as NumPy reads it straight from the payload
READING_DTYPE = np.dtype([("channel", "u1"), ("status", "u1"), ("offset", "<u2"), ("value", "<f4")])
MAX_READINGS = (MAX_PAYLOAD - READINGS_HEAD.size) // READING.size  # 126
_HELLO_HEAD = struct.Struct("<BBBBI")
_HEARTBEAT = struct.Struct("<QHH")
_ACK = struct.Struct("<HB")
_NACK = struct.Struct("<HBBB")
_ERROR_HEAD = struct.Struct("<HB")
_CONFIG_ENTRY = struct.Struct("<BI")


@dataclass(frozen=True, slots=True)
class Sensor:
    """One sensor channel a node announces in its hello."""

    channel: int
    name: str
    unit: str


@dataclass(frozen=True, slots=True)
class Hello:
    """Node -> gateway after boot and on HELLO_REQUEST: who it is and what it measures."""

    firmware: tuple[int, int, int]
    tick_hz: int
    hardware: str
    sensors: tuple[Sensor, ...]
    flags: int = 0


@dataclass(frozen=True, slots=True)
class Reading:
    channel: int
    status: ReadingStatus
    offset: int
    value: float


@dataclass(frozen=True, slots=True)
class Readings:
    """A batch of readings; reading i was taken at ``base + offset_i`` (ticks, or Unix ms)."""

    base: int
    readings: tuple[Reading, ...]
    flags: int = 0


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Node -> gateway when it has nothing else to say: alive, its tick, its own counters."""

    tick: int
    status: int = 0
    rx_bad: int = 0


@dataclass(frozen=True, slots=True)
class Ack:
    """Receiver accepted the frame with this sequence and type."""

    sequence: int
    type: MessageType


@dataclass(frozen=True, slots=True)
class Nack:
    """Receiver refused the frame with this sequence and type; ``detail``: the config key."""

    sequence: int
    type: MessageType
    reason: NackReason
    detail: int = 0


@dataclass(frozen=True, slots=True)
class Error:
    """Node -> gateway: something went wrong on the node (``channel`` 0xFF: not a sensor)."""

    code: int
    channel: int
    text: str


@dataclass(frozen=True, slots=True)
class HelloRequest:
    """Gateway -> node: send your hello now."""


@dataclass(frozen=True, slots=True)
class SetConfig:
    """Gateway -> node: apply these settings; answered by ACK or NACK."""

    entries: tuple[tuple[int, int], ...]


Message = Hello | Readings | Heartbeat | Ack | Nack | Error | HelloRequest | SetConfig

_TYPES: dict[type, MessageType] = {
    Hello: MessageType.HELLO,
    Readings: MessageType.READINGS,
    Heartbeat: MessageType.HEARTBEAT,
    Ack: MessageType.ACK,
    Nack: MessageType.NACK,
    Error: MessageType.ERROR,
    HelloRequest: MessageType.HELLO_REQUEST,
    SetConfig: MessageType.SET_CONFIG,
}


def _str8(text: str) -> bytes:
    raw = text.encode()
    if len(raw) > 255:
        raise ValueError(f"string of {len(raw)} bytes exceeds 255: {text[:20]!r}...")
    return bytes([len(raw)]) + raw


class _Reader:
    """Reads fields off a payload, raising :class:`MessageError` when it runs short."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, st: struct.Struct) -> tuple[int | float, ...]:
        if self.pos + st.size > len(self.data):
            raise MessageError(f"payload ends at {len(self.data)} bytes, field needs more")
        out = st.unpack_from(self.data, self.pos)
        self.pos += st.size
        return out

    def str8(self) -> str:
        (n,) = self.take(_U8)
        end = self.pos + int(n)
        if end > len(self.data):
            raise MessageError("string runs past the end of the payload")
        try:
            text = self.data[self.pos : end].decode()
        except UnicodeDecodeError as exc:
            raise MessageError(f"string is not UTF-8: {exc.reason}") from None
        self.pos = end
        return text

    def done(self) -> None:
        if self.pos != len(self.data):
            raise MessageError(f"{len(self.data) - self.pos} bytes left over after the message")


_U8 = struct.Struct("<B")


def encode_payload(message: Message) -> tuple[MessageType, bytes]:
    """Message type and payload bytes of ``message``."""
    mtype = _TYPES[type(message)]
    match message:
        case Hello():
            out = bytearray(_HELLO_HEAD.pack(*message.firmware, message.flags, message.tick_hz))
            out += _str8(message.hardware)
            out.append(len(message.sensors))
            for s in message.sensors:
                out.append(s.channel)
                out += _str8(s.name) + _str8(s.unit)
            payload = bytes(out)
        case Readings():
            if len(message.readings) > MAX_READINGS:
                raise ValueError(f"{len(message.readings)} readings exceed {MAX_READINGS}")
            payload = READINGS_HEAD.pack(message.flags, message.base, len(message.readings))
            payload += b"".join(
                READING.pack(r.channel, int(r.status), r.offset, r.value) for r in message.readings
            )
        case Heartbeat():
            payload = _HEARTBEAT.pack(message.tick, message.status, message.rx_bad)
        case Ack():
            payload = _ACK.pack(message.sequence, int(message.type))
        case Nack():
            payload = _NACK.pack(
                message.sequence, int(message.type), int(message.reason), message.detail
            )
        case Error():
            payload = _ERROR_HEAD.pack(message.code, message.channel) + _str8(message.text)
        case HelloRequest():
            payload = b""
        case SetConfig():
            payload = bytes([len(message.entries)]) + b"".join(
                _CONFIG_ENTRY.pack(k, v) for k, v in message.entries
            )
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"{mtype.name} payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return mtype, payload


def encode_message(message: Message, node_id: int, sequence: int) -> bytes:
    """Wire bytes of ``message`` in one frame (delimiters included)."""
    mtype, payload = encode_payload(message)
    return encode_frame(mtype, node_id, sequence, payload)


def decode_message(frame: Frame) -> Message:
    """The message in ``frame``. Raise :class:`MessageError` when the payload is malformed."""
    r = _Reader(frame.payload)
    message: Message
    try:
        match frame.type:
            case MessageType.HELLO:
                major, minor, patch, flags, tick_hz = r.take(_HELLO_HEAD)
                hardware = r.str8()
                (count,) = r.take(_U8)
                sensors = []
                for _ in range(int(count)):
                    (channel,) = r.take(_U8)
                    sensors.append(Sensor(int(channel), r.str8(), r.str8()))
                if tick_hz == 0:
                    raise MessageError("tick_hz is 0")
                message = Hello(
                    (int(major), int(minor), int(patch)), int(tick_hz), hardware,
                    tuple(sensors), int(flags),
                )
            case MessageType.READINGS:
                flags, base, count = r.take(READINGS_HEAD)
                readings = [r.take(READING) for _ in range(int(count))]
                message = Readings(
                    int(base),
                    tuple(
                        Reading(int(c), _status(int(s)), int(o), float(v))
                        for c, s, o, v in readings
                    ),
                    int(flags),
                )
            case MessageType.HEARTBEAT:
                tick, status, rx_bad = r.take(_HEARTBEAT)
                message = Heartbeat(int(tick), int(status), int(rx_bad))
            case MessageType.ACK:
                seq, mtype = r.take(_ACK)
                message = Ack(int(seq), MessageType(int(mtype)))
            case MessageType.NACK:
                seq, mtype, reason, detail = r.take(_NACK)
                message = Nack(int(seq), MessageType(int(mtype)), NackReason(int(reason)),
                               int(detail))
            case MessageType.ERROR:
                code, channel = r.take(_ERROR_HEAD)
                message = Error(int(code), int(channel), r.str8())
            case MessageType.HELLO_REQUEST:
                message = HelloRequest()
            case MessageType.SET_CONFIG:
                (count,) = r.take(_U8)
                entries = tuple(
                    (int(k), int(v)) for k, v in (r.take(_CONFIG_ENTRY) for _ in range(int(count)))
                )
                message = SetConfig(entries)
    except ValueError as exc:  # an enum value out of range
        if isinstance(exc, MessageError):
            raise
        raise MessageError(str(exc)) from None
    r.done()
    return message


def _status(value: int) -> ReadingStatus:
    """Any status other than OK and UNCERTAIN is a fault."""
    return ReadingStatus(value) if value <= ReadingStatus.FAULT else ReadingStatus.FAULT


def readings_array(payload: bytes) -> tuple[int, int, np.ndarray]:
    """Fast path for READINGS: ``(flags, base, readings)`` with a :data:`READING_DTYPE` array.

    Statuses are not checked here: the caller maps unknown statuses to BAD.
    """
    if len(payload) < READINGS_HEAD.size:
        raise MessageError("READINGS payload shorter than its head")
    flags, base, count = READINGS_HEAD.unpack_from(payload)
    if len(payload) != READINGS_HEAD.size + count * READING.size:
        raise MessageError(
            f"READINGS of {count} readings needs {READINGS_HEAD.size + count * READING.size} "
            f"bytes, got {len(payload)}"
        )
    return flags, base, np.frombuffer(payload, READING_DTYPE, count, READINGS_HEAD.size)
