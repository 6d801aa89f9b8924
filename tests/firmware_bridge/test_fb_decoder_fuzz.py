"""Property-based fuzzing of the streaming decoder and the message decoder.

Random bytes, truncated frames and bit-flipped frames: no exception escapes,
every bad frame is counted, and the next good frame decodes.
"""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.frames import (
    MAX_PAYLOAD,
    Frame,
    FrameDecoder,
    MessageType,
    encode_frame,
)
from firmware_bridge.messages import (
    Heartbeat,
    Reading,
    Readings,
    ReadingStatus,
    decode_message,
    encode_message,
    readings_array,
)
from gateway.errors import MessageError

FUZZ = settings(derandomize=True, max_examples=300, deadline=None)


def good_frames(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        readings = tuple(
            Reading(c, ReadingStatus.OK, i, float(i + c)) for c in range(3)
        )
        out.append(encode_message(Readings(1000 * i, readings), 7, i))
    out.append(encode_message(Heartbeat(12345, 0, 0), 7, n))
    return out


GOOD = good_frames(4)


def feed_chunked(decoder: FrameDecoder, data: bytes, cuts: list[int]) -> list[Frame]:
    """Feed ``data`` in pieces cut at ``cuts``: the decoder keeps state across calls."""
    frames: list[Frame] = []
    start = 0
    for cut in sorted({c % (len(data) + 1) for c in cuts} | {len(data)}):
        frames += decoder.feed(data[start:cut])
        start = cut
    return frames


def segments(data: bytes) -> int:
    """Non-empty 0x00-terminated segments in ``data``: the frames a decoder must account for."""
    return sum(1 for seg in data.split(b"\x00")[:-1] if seg)


def expect_next_good_frame(decoder: FrameDecoder) -> None:
    frames = decoder.feed(GOOD[0])
    assert len(frames) == 1
    assert frames[0].sequence == 0 and frames[0].node_id == 7
    assert frames[0].type is MessageType.READINGS


@FUZZ
@given(st.binary(max_size=3000), st.lists(st.integers(0, 4000), max_size=8))
def test_random_bytes_are_counted_not_raised(data: bytes, cuts: list[int]) -> None:
    decoder = FrameDecoder(smp=False)
    frames = feed_chunked(decoder, data, cuts)
    assert len(frames) + decoder.bad_total == segments(data)
    expect_next_good_frame(decoder)


@FUZZ
@given(st.binary(max_size=3000), st.lists(st.integers(0, 4000), max_size=8))
def test_random_bytes_with_smp_recognition(data: bytes, cuts: list[int]) -> None:
    smp: list[bytes] = []
    decoder = FrameDecoder(on_smp=smp.append)
    feed_chunked(decoder, data, cuts)
    assert all(f[:2] in (b"\x06\x09", b"\x04\x14") and f.endswith(b"\n") for f in smp)
    expect_next_good_frame(decoder)


@FUZZ
@given(
    st.sampled_from(range(len(GOOD))),
    st.integers(1, 200),
    st.integers(0, 10_000),
    st.lists(st.integers(0, 4000), max_size=6),
)
def test_truncated_frame(victim: int, cut: int, where: int, cuts: list[int]) -> None:
    """A frame loses bytes (its tail, or from the middle) but the delimiter still comes."""
    frames_in = list(GOOD)
    body = frames_in[victim][1:-1]
    cut = min(cut, len(body))
    start = where % (len(body) - cut + 1)
    broken = body[:start] + body[start + cut :]
    frames_in[victim] = b"\x00" + broken + b"\x00"
    data = b"".join(frames_in)
    decoder = FrameDecoder()
    frames = feed_chunked(decoder, data, cuts)
    assert [f.sequence for f in frames] == [i for i in range(len(GOOD)) if i != victim]
    assert decoder.bad_total == (1 if broken else 0)
    expect_next_good_frame(decoder)


@FUZZ
@given(
    st.sampled_from(range(len(GOOD))),
    st.integers(0, 10_000),
    st.integers(0, 7),
    st.lists(st.integers(0, 4000), max_size=6),
)
def test_bit_flipped_frame(victim: int, where: int, bit: int, cuts: list[int]) -> None:
    frames_in = list(GOOD)
    wire = bytearray(frames_in[victim])
    i = 1 + where % (len(wire) - 2)  # inside the frame, not a delimiter
    wire[i] ^= 1 << bit
    frames_in[victim] = bytes(wire)
    data = b"".join(frames_in)
    decoder = FrameDecoder()
    frames = feed_chunked(decoder, data, cuts)
    assert [f.sequence for f in frames] == [i for i in range(len(GOOD)) if i != victim]
    # a flip to 0x00 splits the frame in two: each part is counted
    assert decoder.bad_total == segments(bytes(wire))
    assert decoder.bad_total >= 1
    expect_next_good_frame(decoder)


@FUZZ
@given(st.lists(st.binary(min_size=1, max_size=120), max_size=5), st.integers(0, 4))
def test_smp_frames_are_set_aside_between_telemetry(bodies: list[bytes], first: int) -> None:
    smp: list[bytes] = []
    decoder = FrameDecoder(on_smp=smp.append)
    expected = []
    data = bytearray()
    for i, body in enumerate(bodies):
        clean = bytes(b for b in body if b not in (0x00, 0x0A)) or b"A"
        frame = (b"\x06\x09" if i == 0 or first % 2 else b"\x04\x14") + clean + b"\n"
        expected.append(frame)
        data += GOOD[i % len(GOOD)] + frame
    data += GOOD[0]
    frames = decoder.feed(bytes(data))
    assert smp == expected
    assert len(frames) == len(bodies) + 1
    assert decoder.bad_total == 0


@FUZZ
@given(st.sampled_from(list(MessageType)), st.binary(max_size=MAX_PAYLOAD))
def test_message_decoder_raises_only_message_error(mtype: MessageType, payload: bytes) -> None:
    """A frame with a good CRC but a nonsense payload: MessageError, nothing else."""
    decoder = FrameDecoder()
    (frame,) = decoder.feed(encode_frame(mtype, 7, 1, payload))
    with contextlib.suppress(MessageError):
        decode_message(frame)
    if mtype is MessageType.READINGS:
        with contextlib.suppress(MessageError):
            readings_array(frame.payload)


def test_oversize_frame_is_counted_once() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00" + b"\x11" * 5000 + b"\x00") == []
    assert decoder.bad_total == 1
    expect_next_good_frame(decoder)
