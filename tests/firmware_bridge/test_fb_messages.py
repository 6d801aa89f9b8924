"""Message layouts: round trips, fixed sizes, malformed payloads."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.frames import FrameDecoder, MessageType
from firmware_bridge.messages import (
    MAX_READINGS,
    Ack,
    Error,
    Heartbeat,
    Hello,
    HelloRequest,
    Message,
    Nack,
    NackReason,
    Reading,
    Readings,
    ReadingStatus,
    Sensor,
    SetConfig,
    decode_message,
    encode_message,
    encode_payload,
    readings_array,
)
from gateway.errors import MessageError

u8, u16, u32 = st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)
text = st.text(max_size=40)
f32 = st.floats(width=32, allow_nan=False)

messages = st.one_of(
    st.builds(Hello, st.tuples(u8, u8, u8), st.integers(1, 0xFFFFFFFF), text,
              st.lists(st.builds(Sensor, u8, text, text), max_size=8).map(tuple), u8),
    st.builds(Readings, st.integers(0, 2**64 - 1),
              st.lists(st.builds(Reading, u8, st.sampled_from(ReadingStatus), u16, f32),
                       max_size=MAX_READINGS).map(tuple), u8),
    st.builds(Heartbeat, st.integers(0, 2**64 - 1), u16, u16),
    st.builds(Ack, u16, st.sampled_from(MessageType)),
    st.builds(Nack, u16, st.sampled_from(MessageType), st.sampled_from(NackReason), u8),
    st.builds(Error, u16, u8, text),
    st.just(HelloRequest()),
    st.builds(SetConfig, st.lists(st.tuples(u8, u32), max_size=20).map(tuple)),
)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(messages, u16, u16)
def test_round_trip(message: Message, node_id: int, seq: int) -> None:
    (frame,) = FrameDecoder().feed(encode_message(message, node_id, seq))
    assert (frame.node_id, frame.sequence) == (node_id, seq)
    assert decode_message(frame) == message
    if isinstance(message, Readings):
        flags, base, rows = readings_array(frame.payload)
        assert (flags, base) == (message.flags, message.base)
        assert rows["channel"].tolist() == [r.channel for r in message.readings]
        assert np.array_equal(rows["value"], np.array([r.value for r in message.readings],
                                                        np.float32))


def test_fixed_sizes() -> None:
    assert len(encode_payload(Heartbeat(1, 2, 3))[1]) == 12
    assert len(encode_payload(Ack(1, MessageType.SET_CONFIG))[1]) == 3
    assert len(encode_payload(Nack(1, MessageType.SET_CONFIG, NackReason.BUSY))[1]) == 5
    one = Readings(0, (Reading(0, ReadingStatus.OK, 0, 1.0),))
    assert len(encode_payload(one)[1]) == 10 + 8


def test_too_many_readings_rejected() -> None:
    many = Readings(0, tuple(Reading(0, ReadingStatus.OK, 0, 1.0)
                             for _ in range(MAX_READINGS + 1)))
    with pytest.raises(ValueError):
        encode_payload(many)


@pytest.mark.parametrize(
    ("mtype", "payload"),
    [
        (MessageType.HEARTBEAT, b"\x00" * 11),
        (MessageType.HEARTBEAT, b"\x00" * 13),
        (MessageType.READINGS, b"\x00" * 9 + b"\x02" + b"\x00" * 8),
        (MessageType.HELLO, b"\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00"),  # tick_hz 0
        (MessageType.ERROR, b"\x01\x00\xff\x02\xff\xfe"),  # not UTF-8
        (MessageType.NACK, b"\x01\x00\x11\x63\x00"),  # unknown reason
    ],
)
def test_malformed_payloads(mtype: MessageType, payload: bytes) -> None:
    from firmware_bridge.frames import encode_frame

    (frame,) = FrameDecoder().feed(encode_frame(mtype, 1, 0, payload))
    with pytest.raises(MessageError):
        decode_message(frame)
