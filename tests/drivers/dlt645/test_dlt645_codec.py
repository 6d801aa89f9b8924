"""The DL/T 645 codec: frames, the stream reader, BCD values; fuzzed with hypothesis and
checked against an independent implementation (PyPI ``dlt645``) where it has the same job.
"""

from __future__ import annotations

import contextlib
import math

import pytest
from dlt645.protocol.protocol import DLT645Protocol
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from drivers.dlt645.codec import (
    BROADCAST,
    Dlt645FrameError,
    Format,
    Frame,
    FrameReader,
    address_bytes,
    address_text,
    decode_frame,
    decode_integer,
    decode_number,
    decode_text,
    decode_value,
    describe_error,
    encode_frame,
    encode_number,
    encode_text,
    parse_read_answer,
    read_address_request,
    read_request,
    write_request,
)

addresses = st.text("0123456789", min_size=12, max_size=12)
datas = st.binary(max_size=255)
controls = st.integers(0, 255)


def test_read_address_broadcast_is_the_textbook_frame() -> None:
    # the frame every DL/T 645-2007 manual prints for "read the address of the lone meter"
    assert read_address_request(4).hex(" ").upper() == \
        "FE FE FE FE 68 AA AA AA AA AA AA 68 13 00 DF 16"


def test_read_request_layout() -> None:
    raw = read_request("000012345678", "00010000", 2007, preamble=0)
    # 68, address low byte first, 68, C=11, L=4, DI0..DI3 + 33, CS, 16
    assert raw.hex(" ") == "68 78 56 34 12 00 00 68 11 04 33 33 34 33 " \
        f"{sum(raw[:-2]) & 0xFF:02x} 16"
    raw97 = read_request("000012345678", "9010", 1997)
    assert raw97[8:12] == bytes([0x01, 0x02, 0x43, 0xC3])  # C=01, L=2, 10+33, 90+33


def test_write_request_layout() -> None:
    raw = write_request("000000000001", "04000103", 2007, bytes([0x15]),
                        bytes([0x02, 0x56, 0x34, 0x12]), bytes([1, 2, 3, 4]))
    frame = decode_frame(raw)
    assert frame.control == 0x14
    assert frame.data == bytes([0x03, 0x01, 0x00, 0x04, 0x02, 0x56, 0x34, 0x12, 1, 2, 3, 4, 0x15])
    raw97 = write_request("000000000001", "C111", 1997, bytes([0x15]), bytes(4))
    assert decode_frame(raw97).data == bytes([0x11, 0xC1, 0, 0, 0, 0, 0x15])  # no operator


def test_addresses() -> None:
    assert address_bytes("000012345678") == bytes.fromhex("785634120000")
    assert address_text(bytes.fromhex("785634120000")) == "000012345678"
    assert address_bytes(BROADCAST) == b"\xAA" * 6
    for bad in ("12345", "00001234567X", "0000123456789"):
        with pytest.raises(Dlt645FrameError, match="12 decimal digits"):
            address_bytes(bad)


@given(addresses, controls, datas, st.integers(0, 4))
def test_frame_round_trip(address: str, control: int, data: bytes, preamble: int) -> None:
    raw = encode_frame(address, control, data, preamble)
    assert decode_frame(raw) == Frame(address, control, data)


@given(addresses, controls, datas, st.integers(0, 4))
def test_frames_agree_with_the_dlt645_package(address: str, control: int, data: bytes,
                                             preamble: int) -> None:
    """A second opinion: PyPI dlt645 builds the same bytes and reads ours back alike."""
    ours = encode_frame(address, control, data, preamble)
    theirs = bytes(DLT645Protocol.build_frame(address_bytes(address), control, data, preamble))
    assert ours == theirs
    rest, frame = DLT645Protocol.deserialize_with_remaining(ours)
    assert frame is not None and rest == b""
    assert (address_text(bytes(frame.addr)), frame.ctrl_code, bytes(frame.data)) == \
        (address, control, data)


@given(st.binary(max_size=400), st.binary(max_size=400), addresses, datas)
@settings(max_examples=300)
def test_reader_finds_a_frame_in_any_garbage(before: bytes, after: bytes, address: str,
                                             data: bytes) -> None:
    """Whatever surrounds it, a whole frame is found (garbage never raises or hides it)."""
    frame = Frame(address, 0x91, data)
    reader = FrameReader()
    found = list(reader.feed(before + frame.encode(2) + after))
    assert frame in found


@given(st.lists(st.binary(max_size=64), max_size=20))
@settings(max_examples=300)
def test_reader_never_raises_and_bounds_what_it_keeps(chunks: list[bytes]) -> None:
    reader = FrameReader()
    for chunk in chunks:
        for frame in reader.feed(chunk):
            assert len(frame.data) <= 255
        assert reader.pending <= 12 + 255 + 64  # at most one candidate frame and a chunk


def test_reader_counts_garbage_skips_preambles_and_waits_for_the_rest() -> None:
    frame = Frame("000000000001", 0x91, bytes([0x00, 0x00, 0x01, 0x00, 0x78, 0x56, 0x34, 0x12]))
    raw = frame.encode(preamble=4)
    reader = FrameReader()
    assert list(reader.feed(b"\x01\x02" + raw[:9])) == []
    assert reader.pending == 5 and reader.discarded == 2  # FE preambles are not garbage
    assert list(reader.feed(raw[9:])) == [frame]
    assert (reader.pending, reader.rejected) == (0, 0)


def test_reader_rejects_bad_checksums_and_end_bytes() -> None:
    good = Frame("000000000001", 0x91, b"\x00\x00\x01\x00\x01\x00\x00\x00").encode()
    bad_sum = good[:-2] + bytes([(good[-2] + 1) & 0xFF]) + good[-1:]
    bad_end = good[:-1] + b"\x17"
    reader = FrameReader()
    assert list(reader.feed(bad_sum + bad_end + good)) == [decode_frame(good)]
    assert reader.rejected == 2
    assert "end byte 17" in reader.last_rejection
    with pytest.raises(Dlt645FrameError, match="checksum"):
        decode_frame(bad_sum)


def test_a_stray_68_does_not_hold_back_a_frame_behind_it() -> None:
    """Noise '68 .. 68 .. FF' asks for 255 bytes that never come; the answer behind it wins."""
    noise = bytes([0x68, 1, 2, 3, 4, 5, 6, 0x68, 0x91, 0xFF, 9])
    good = Frame("000000000001", 0x91, b"\x33").encode()
    assert list(FrameReader().feed(noise + good)) == [decode_frame(good)]


def test_half_frames_are_dropped_by_reset() -> None:
    reader = FrameReader()
    raw = Frame("000000000001", 0x91, b"\x01\x02").encode()
    assert list(reader.feed(raw[:7])) == []
    reader.reset()
    assert reader.pending == 0 and reader.discarded == 7


# -- values ------------------------------------------------------------------------------

@pytest.mark.parametrize(("fmt", "signed", "raw", "value"), [
    ("XXXXXX.XX", False, "78563412", 123456.78),
    ("XXX.X", False, "0523", 230.5),
    ("XXX.XXX", True, "563412", 123.456),
    ("XXX.XXX", True, "563492", -123.456),   # sign in the top bit
    ("XX.XXXX", True, "9959F9", -79.5999),
    ("X.XXX", True, "5009", 0.950),
    ("X.XXX", True, "5089", -0.950),
    ("XX.XX", False, "0150", 50.01),
    ("XXX", False, "3002", 230.0),           # 1997 voltage: 3 digits in 2 bytes
    ("XX", False, "02", 2.0),
])
def test_numbers(fmt: str, signed: bool, raw: str, value: float) -> None:
    form = Format.parse(fmt, signed)
    assert decode_number(bytes.fromhex(raw), form) == value
    assert encode_number(value, form) == bytes.fromhex(raw)


def test_numbers_refused() -> None:
    energy = Format.parse("XXXXXX.XX")
    with pytest.raises(Dlt645FrameError, match="not BCD"):
        decode_number(bytes.fromhex("7A563412"), energy)
    with pytest.raises(Dlt645FrameError, match="4 bytes"):
        decode_number(bytes.fromhex("785634"), energy)
    with pytest.raises(Dlt645FrameError, match="more digits"):
        decode_number(bytes.fromhex("3012"), Format.parse("XXX"))
    with pytest.raises(Dlt645FrameError, match="negative"):
        encode_number(-1, energy)
    with pytest.raises(Dlt645FrameError, match="does not fit"):
        encode_number(80.0, Format.parse("XX.XXXX", signed=True))
    with pytest.raises(Dlt645FrameError, match="NaN"):
        encode_number(math.nan, energy)
    with pytest.raises(ValueError, match="unknown format"):
        Format.parse("XX-XX")


def test_integers_are_exact() -> None:
    assert decode_integer(bytes.fromhex("99999999"), Format.parse("XXXXXXXX")) == 99999999


@pytest.mark.parametrize(("fmt", "raw", "text"), [
    ("YYMMDDhhmm", "3008170524", "2024-05-17 08:30"),
    ("YYMMDDWW", "05170524", "2024-05-17"),
    ("MMDDhhmm", "30081705", "05-17 08:30"),
    ("hhmmss", "453008", "08:30:45"),
    ("NNNNNNNNNNNN", "785634120000", "000012345678"),
])
def test_text(fmt: str, raw: str, text: str) -> None:
    form = Format.parse(fmt)
    assert decode_text(bytes.fromhex(raw), form) == text
    if fmt != "YYMMDDWW":  # the weekday is not in the text
        assert encode_text(text, form) == bytes.fromhex(raw)


@given(st.sampled_from(["XXXXXX.XX", "XX.XXXX", "XXX.XXX", "XXX.X", "X.XXX", "XX.XX", "XXX"]),
       st.booleans(), st.data())
def test_number_round_trip(fmt: str, signed: bool, data: st.DataObject) -> None:
    form = Format.parse(fmt, signed)
    units = data.draw(st.integers(-form.largest if signed else 0, form.largest))
    raw = encode_number(units / 10 ** form.decimals, form)
    assert len(raw) == form.size
    assert decode_number(raw, form) == units / 10 ** form.decimals


@given(st.binary(min_size=1, max_size=6), st.sampled_from(
    ["XXXXXX.XX", "XX.XXXX", "XXX", "YYMMDDhhmm", "hhmmss", "NNNNNNNNNNNN"]), st.booleans())
def test_any_bytes_decode_or_raise_codec_error(raw: bytes, fmt: str, signed: bool) -> None:
    form = Format.parse(fmt, signed and fmt[0] == "X")
    with contextlib.suppress(Dlt645FrameError):
        decode_value(raw, form)


def test_read_answers() -> None:
    di = "00010000"
    ok = Frame("000000000001", 0x91, bytes([0, 0, 1, 0, 0x78, 0x56, 0x34, 0x12]))
    assert parse_read_answer(ok, di, 2007).data == bytes.fromhex("78563412")
    error = Frame("000000000001", 0xD1, b"\x02")
    assert parse_read_answer(error, di, 2007).error == 2
    with pytest.raises(Dlt645FrameError, match="for data identifier 00020000"):
        parse_read_answer(Frame("000000000001", 0x91, bytes([0, 0, 2, 0])), di, 2007)
    with pytest.raises(Dlt645FrameError, match="not an answer to a read"):
        parse_read_answer(Frame("000000000001", 0x93, b""), di, 2007)
    with pytest.raises(Dlt645FrameError, match="fewer than"):
        parse_read_answer(Frame("000000000001", 0x81, b"\x10"), "9010", 1997)
    assert describe_error(0x06, 2007) == ("error byte 06: no data requested (the meter does not "
                                          "have this data identifier); password wrong or not "
                                          "authorised")


@given(addresses, st.binary(max_size=255), st.sampled_from([2007, 1997]))
def test_read_answer_of_any_frame_is_an_answer_or_codec_error(address: str, data: bytes,
                                                               version: int) -> None:
    assume(version in (2007, 1997))
    for control in (0x91, 0xB1, 0xD1, 0x81, 0xC1, 0x93):
        with contextlib.suppress(Dlt645FrameError):
            parse_read_answer(Frame(address, control, data), "00010000" if version == 2007
                              else "9010", version)  # type: ignore[arg-type]
