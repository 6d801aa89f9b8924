"""Framers: terminator, fixed length, start/end; garbage never raises, resyncs, stays bounded."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.serial_line.framing import (
    FixedLengthFramer,
    Framer,
    StartEndFramer,
    TerminatorFramer,
)

LINES = [b"ST,GS,+0012.345 kg", b"US,NT,-0000.120 kg", b"ST,GS,+0000.000 kg"]


def feed_in_chunks(framer: Framer, data: bytes, sizes: list[int]) -> list[bytes]:
    frames: list[bytes] = []
    pos = 0
    for size in sizes:
        frames += framer.feed(data[pos : pos + size])
        pos += size
        assert framer.buffered <= framer.max_buffered
    frames += framer.feed(data[pos:])
    assert framer.buffered <= framer.max_buffered
    return frames


def test_terminator_splits_across_chunks_and_skips_empty_lines() -> None:
    framer = TerminatorFramer(b"\r\n", max_frame=64)
    data = b"\r\n".join(LINES) + b"\r\n\r\n"
    assert feed_in_chunks(framer, data, [1, 18, 1, 3, 7]) == LINES
    assert framer.bytes_discarded == 0 and framer.buffered == 0


def test_terminator_overlong_garbage_is_dropped_up_to_the_next_terminator() -> None:
    framer = TerminatorFramer(b"\r\n", max_frame=32)
    garbage = bytes(range(14, 114))  # 100 bytes, no CR or LF
    frames = framer.feed(garbage + b"tail of a line\r\n" + LINES[0] + b"\r\n")
    assert frames == [LINES[0]]
    assert framer.overflows == 1
    assert framer.bytes_discarded == len(garbage) + len(b"tail of a line\r\n")
    # the same in byte-sized chunks: the buffer never exceeds the bound
    framer = TerminatorFramer(b"\r\n", max_frame=32)
    data = garbage + b"xx\r\n" + LINES[1] + b"\r\n"
    assert feed_in_chunks(framer, data, [1] * len(data)) == [LINES[1]]
    assert framer.overflows == 1


def test_terminator_frame_over_max_within_one_chunk_is_dropped() -> None:
    framer = TerminatorFramer(b"\n", max_frame=5)
    assert framer.feed(b"123456\nabc\n") == [b"abc"]
    assert framer.overflows == 1 and framer.bytes_discarded == 7


def test_fixed_length_without_and_with_start() -> None:
    framer = FixedLengthFramer(4)
    assert feed_in_chunks(framer, b"abcdefghij", [3, 3]) == [b"abcd", b"efgh"]
    assert framer.buffered == 2
    framer.reset()
    assert framer.bytes_discarded == 2 and framer.buffered == 0

    framer = FixedLengthFramer(5, start=b"\xaa")
    data = b"\x01\x02\xaa1234\x07\xaa5678\xaa9"
    assert framer.feed(data) == [b"1234", b"5678"]
    assert framer.bytes_discarded == 3 and framer.buffered == 2


def test_start_end_discards_outside_and_restarts_on_a_new_start() -> None:
    framer = StartEndFramer(b"\x02", b"\x03", max_frame=16)
    data = b"noise\x02first\x03between\x02cut\x02second\x03\x02third"
    assert framer.feed(data) == [b"first", b"second"]
    assert framer.partials == 1
    assert framer.feed(b"\x03") == [b"third"]
    assert framer.bytes_discarded == len(b"noise") + len(b"between") + len(b"\x02cut")


def test_start_end_overlong_frame_is_dropped_and_the_next_one_kept() -> None:
    framer = StartEndFramer(b"<<", b">>", max_frame=8)
    data = b"<<" + b"x" * 40 + b">>" + b"<<ok>>"
    assert feed_in_chunks(framer, data, [5] * 9) == [b"ok"]
    assert framer.overflows == 1


garbage = st.binary(max_size=300)
chunking = st.lists(st.integers(1, 40), max_size=30)


@settings(max_examples=300, deadline=None)
@given(garbage, chunking)
def test_terminator_fuzz_bounded_and_resyncs(junk: bytes, sizes: list[int]) -> None:
    framer = TerminatorFramer(b"\r\n", max_frame=40)
    good = b"".join(line + b"\r\n" for line in LINES)
    frames = feed_in_chunks(framer, junk + b"\r\n" + good, sizes)
    assert frames[-len(LINES) :] == LINES  # whatever came before, the lines after a boundary
    assert all(len(f) <= 40 for f in frames)


@settings(max_examples=300, deadline=None)
@given(garbage, chunking)
def test_start_end_fuzz_bounded_and_resyncs(junk: bytes, sizes: list[int]) -> None:
    framer = StartEndFramer(b"\x02", b"\x03", max_frame=24)
    good = b"".join(b"\x02" + line + b"\x03" for line in LINES)
    frames = feed_in_chunks(framer, junk + good, sizes)
    assert frames[-len(LINES) :] == LINES
    assert all(len(f) <= 24 for f in frames)


@settings(max_examples=300, deadline=None)
@given(garbage, chunking)
def test_fixed_length_with_start_fuzz_bounded_and_resyncs(junk: bytes, sizes: list[int]) -> None:
    framer = FixedLengthFramer(7, start=b"\xa5\x5a")
    records = [b"\x01\x02\x03\x04\x05", b"\x10\x20\x30\x40\x50", b"abcde"]
    clean = junk.replace(b"\xa5", b"")  # a start inside the garbage would swallow a record
    frames = feed_in_chunks(framer, clean + b"".join(b"\xa5\x5a" + r for r in records), sizes)
    assert frames[-3:] == records


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=20))
def test_any_input_never_raises_and_stays_bounded(chunks: list[bytes]) -> None:
    framers: list[Framer] = [
        TerminatorFramer(b"\n", 16), TerminatorFramer(b"\r\n", 16),
        FixedLengthFramer(6), FixedLengthFramer(6, b"\x02"),
        StartEndFramer(b"\x02", b"\x03", 16), StartEndFramer(b"[[", b"]]", 16),
    ]
    for framer in framers:
        for chunk in chunks:
            for frame in framer.feed(chunk):
                assert len(frame) <= 16
            assert framer.buffered <= framer.max_buffered
