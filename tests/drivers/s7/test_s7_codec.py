"""The S7 value codec against Python's own struct and datetime, the golden memory images,
and random bytes.

The expected bytes here are made with ``struct`` (big endian, as the PLC keeps them) and
``datetime``, written in the test, never with the codec under test.
"""

from __future__ import annotations

import datetime as dt
import math
import struct

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from drivers.s7.address import parse_address
from drivers.s7.codec import (
    DecodePlan,
    Field,
    S7DecodeError,
    decode_date_and_time,
    decode_value,
    encode,
    encode_date_and_time,
)
from drivers.s7.planner import TagSpan, plan_reads
from tests.drivers.s7.s7_golden import VALUE_CASES, load_value_case, same_value

#: S7 type -> struct format of its big-endian bytes
STRUCT = {"BYTE": ">B", "USINT": ">B", "SINT": ">b", "WORD": ">H", "UINT": ">H", "INT": ">h",
          "DWORD": ">I", "UDINT": ">I", "DINT": ">i", "REAL": ">f", "LWORD": ">Q",
          "ULINT": ">Q", "LINT": ">q", "LREAL": ">d"}


def _bcd(n: int) -> int:
    return (n // 10) << 4 | n % 10


def _s7_dt(moment: dt.datetime) -> bytes:
    """DATE_AND_TIME made by hand from the S7 documentation's layout."""
    ms = moment.microsecond // 1000
    weekday = {6: 1, 0: 2, 1: 3, 2: 4, 3: 5, 4: 6, 5: 7}[moment.weekday()]  # Sunday = 1
    return bytes([_bcd(moment.year % 100), _bcd(moment.month), _bcd(moment.day),
                  _bcd(moment.hour), _bcd(moment.minute), _bcd(moment.second),
                  _bcd(ms // 10), (ms % 10) << 4 | weekday])


@pytest.mark.parametrize("case_name", VALUE_CASES)
def test_golden_memory_images_decode_to_the_expected_values(case_name: str) -> None:
    """Plan the case's tags for a 240-byte PDU, cut each block from the memory image as the
    PLC would answer it, decode the poll buffer, compare."""
    case = load_value_case(case_name)
    tags = case.device.tags
    spans = [TagSpan(i, t.s7.area, t.s7.db, t.s7.start, t.s7.units, t.name)
             for i, t in enumerate(tags)]
    plan = plan_reads(spans, pdu_size=240)
    fields, buffer, order = [], b"", []
    for block in plan.blocks:
        label = f"DB{block.db}" if block.area.name == "DB" else block.area.name
        scale = 2 if block.area.per_element else 1
        image = case.memory[label]
        data = image[block.start * scale:(block.start + block.units) * scale]
        for index, offset in block.members:
            fields.append(Field(len(buffer) + offset, tags[index].s7, tags[index].encoding))
            order.append(tags[index].name)
        buffer += data
    decoder = DecodePlan(fields, len(buffer))
    out = np.empty(len(fields), dtype=object)
    bad = decoder.decode(buffer, out)
    for pos, name in enumerate(order):
        expected = case.expected[name]
        if expected.bad is not None:
            assert pos in bad and expected.bad in bad[pos], (name, bad.get(pos))
            assert out[pos] is None
        else:
            assert pos not in bad, (name, bad.get(pos))
            assert same_value(out[pos], expected.value), (name, out[pos], expected.value)


@pytest.mark.parametrize("case_name", VALUE_CASES)
def test_golden_values_encode_to_their_memory_bytes(case_name: str) -> None:
    """Writing each good expected value gives the bytes in the image (strings: the
    current length and the characters; the maximum length byte is the PLC's)."""
    case = load_value_case(case_name)
    for tag in case.device.tags:
        expected = case.expected[tag.name]
        a = tag.s7
        if expected.bad is not None or a.area.per_element or a.type.name == "BOOL":
            continue
        if isinstance(expected.value, float) and math.isnan(expected.value):
            continue
        label = f"DB{a.db}" if a.area.name == "DB" else a.area.name
        image = case.memory[label]
        data = encode(expected.value, a, tag.encoding)  # type: ignore[arg-type]
        if a.type.name == "STRING":
            assert data == image[a.start + 1:a.start + 1 + len(data)], tag.name
        elif a.type.name == "WSTRING":
            assert data == image[a.start + 2:a.start + 2 + len(data)], tag.name
        else:
            assert data == image[a.start:a.start + a.size], tag.name


@given(st.sampled_from(sorted(STRUCT)), st.data())
def test_numbers_decode_as_struct_unpacks_them(name: str, data: st.DataObject) -> None:
    fmt = STRUCT[name]
    raw = data.draw(st.binary(min_size=struct.calcsize(fmt), max_size=struct.calcsize(fmt)))
    address = parse_address(f"DB1.DB0:{name}")
    (reference,) = struct.unpack(fmt, raw)
    value = decode_value(raw, address)
    if isinstance(reference, float) and math.isnan(reference):
        assert math.isnan(value)  # type: ignore[arg-type]
    else:
        assert value == reference
        assert type(value) is (int if name in ("LWORD", "ULINT", "LINT") else float)
    # the batched plan agrees with the one-by-one decoder
    out = np.empty(1, dtype=object)
    DecodePlan([Field(0, address)], len(raw)).decode(raw, out)
    assert same_or_nan(out[0], value)


def same_or_nan(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b and type(a) is type(b)


@given(st.sampled_from(sorted(STRUCT)), st.integers(-(2**64), 2**64))
def test_integers_encode_exactly_or_are_refused(name: str, number: int) -> None:
    fmt = STRUCT[name]
    if fmt[-1] in "fd":
        return
    address = parse_address(f"DB1.DB0:{name}")
    try:
        reference = struct.pack(fmt, number)
    except struct.error:
        with pytest.raises(ValueError, match="outside the"):
            encode(number, address)
        return
    assert encode(number, address) == reference
    assert encode(float(number), address) == reference if abs(number) < 2**53 else True


@pytest.mark.parametrize(("value", "words"), [
    (1.5, "is not an integer"), (math.nan, "is not a valid"), ("7", "is text"),
    (70000, "outside the INT range -32768..32767"),
])
def test_integer_writes_are_never_rounded_nor_wrapped(value: object, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        encode(value, parse_address("MW0:INT"))  # type: ignore[arg-type]


def test_real_writes_refuse_what_a_float32_cannot_hold() -> None:
    with pytest.raises(ValueError, match="does not fit in a REAL"):
        encode(1e39, parse_address("MD0:REAL"))
    assert encode(math.inf, parse_address("MD0:REAL")) == struct.pack(">f", math.inf)


@given(st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2089, 12, 31, 23,
                                                                             59, 59)),
       st.integers(0, 999))
def test_date_and_time_against_datetime(moment: dt.datetime, ms: int) -> None:
    moment = moment.replace(microsecond=ms * 1000)
    raw = _s7_dt(moment)
    assert decode_date_and_time(raw) == moment.isoformat(timespec="milliseconds")
    assert encode_date_and_time(moment.isoformat(timespec="milliseconds")) == raw


@pytest.mark.parametrize(("text", "words"), [
    ("1989-12-31T23:59:59", "holds the years 1990 to 2089"),
    ("2026-01-01T00:00:00.0001", "whole milliseconds"),
    ("2026-01-01T00:00:00+08:00", "without a time zone"),
    ("yesterday", "not an ISO 8601 date"),
])
def test_date_and_time_writes_refuse_what_it_cannot_hold(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        encode_date_and_time(text)


@given(st.text(max_size=20))
def test_strings_round_trip_in_their_encoding(text: str) -> None:
    for address_text, encoding in (("DB1.DB0:STRING[40]", "gbk"),
                                   ("DB1.DB0:STRING[40]", "latin-1"),
                                   ("DB1.DB0:WSTRING[40]", "latin-1")):
        address = parse_address(address_text)
        try:
            data = encode(text, address, encoding)
        except ValueError:
            continue  # not representable in that encoding or too long: refused, not mangled
        if address.type.name == "STRING":
            image = bytes([address.length]) + data.ljust(address.size - 1, b"\0")
        else:
            image = struct.pack(">H", address.length) + data.ljust(address.size - 2, b"\0")
        assert decode_value(image, address, encoding) == text


def test_wstring_header_and_characters_as_utf16() -> None:
    text = "模具A17"
    raw = struct.pack(">HH", 8, 5) + text.encode("utf-16-be") + b"\0\0" * 3
    assert decode_value(raw, parse_address("DB1.DB0:WSTRING[8]")) == text


@given(st.binary(min_size=2, max_size=2))
def test_s5time_against_its_documented_layout(raw: bytes) -> None:
    word = int.from_bytes(raw, "big")
    digits = [(word >> s) & 0xF for s in (8, 4, 0)]
    address = parse_address("T1")
    if max(digits) > 9:
        with pytest.raises(S7DecodeError, match="not a BCD digit"):
            decode_value(raw, address)
        return
    base = (0.01, 0.1, 1.0, 10.0)[(word >> 12) & 3]
    assert decode_value(raw, address) == (digits[0] * 100 + digits[1] * 10 + digits[2]) * base


ADDRESSES = ["DB1.DB0:STRING[6]", "DB1.DB0:WSTRING[3]", "DB1.DB0:DT", "T0", "DB1.DBB0:CHAR",
             "DB1.DB0:LINT", "DB1.DBX0.3", "DB1.DBD0:REAL"]


@given(st.sampled_from(ADDRESSES), st.binary(min_size=0, max_size=12),
       st.sampled_from(["latin-1", "gbk", "utf-8"]))
def test_any_bytes_decode_or_say_why(address_text: str, raw: bytes, encoding: str) -> None:
    """Garbage from a PLC is a S7DecodeError with a reason, never another exception."""
    address = parse_address(address_text)
    assume(len(raw) == address.size or raw == b"")
    try:
        decode_value(raw, address, encoding)
    except S7DecodeError as exc:
        assert str(exc)


@given(st.lists(st.sampled_from(ADDRESSES), min_size=1, max_size=6), st.data())
def test_a_poll_buffer_of_random_bytes_decodes_field_by_field(
    addresses: list[str], data: st.DataObject
) -> None:
    fields, offset = [], 0
    for text in addresses:
        a = parse_address(text)
        fields.append(Field(offset, a, "gbk"))
        offset += a.size
    raw = data.draw(st.binary(min_size=offset, max_size=offset))
    plan = DecodePlan(fields, offset)
    out = np.empty(len(fields), dtype=object)
    bad = plan.decode(raw, out)
    for pos, f in enumerate(fields):
        if pos in bad:
            assert out[pos] is None
            continue
        one = decode_value(raw[f.offset:f.offset + f.address.size], f.address, "gbk")
        assert same_or_nan(out[pos], one)


@given(st.lists(st.tuples(st.sampled_from(sorted(STRUCT)), st.integers(0, 12)), min_size=1,
                max_size=10), st.binary(min_size=20, max_size=20))
def test_overlapping_numbers_decode_as_one_by_one(
    fields_at: list[tuple[str, int]], raw: bytes
) -> None:
    """Two tags may view the same bytes (a WORD and its INT, a DWORD and a REAL inside);
    the plan unpacks them in layers and agrees with struct on each."""
    fields = [Field(offset, parse_address(f"DB1.DB{offset}:{name}")) for name, offset in fields_at]
    plan = DecodePlan(fields, len(raw))
    out = np.empty(len(fields), dtype=object)
    assert plan.decode(raw, out) == {}
    for pos, (name, offset) in enumerate(fields_at):
        fmt = STRUCT[name]
        (reference,) = struct.unpack_from(fmt, raw, offset)
        assert same_or_nan(out[pos], reference if fmt[-1] in "qQ" else float(reference))
