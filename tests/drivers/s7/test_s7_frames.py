"""Read-var and write-var PDUs byte by byte, against frames written out from the S7comm
layout (header, parameter, items), and random answers."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.s7.address import Area
from drivers.s7.frames import (
    ItemFailed,
    ReadAnswerShape,
    ReadItem,
    S7FrameError,
    S7JobRefused,
    parse_read_items,
    parse_read_response,
    parse_write_response,
    read_request,
    write_request,
)


def test_a_read_of_two_items_as_the_protocol_lays_it_out() -> None:
    items = [ReadItem(Area.DB, 1, 4, 4), ReadItem(Area.M, 0, 10, 2)]
    expected = bytes.fromhex(
        "32 01 0000 0007 001a 0000"          # job, reference 7, parameter 26 bytes, no data
        "04 02"                              # read var, 2 items
        "12 0a 10 02 0004 0001 84 000020"    # DB1, 4 bytes from byte 4 (bit address 32)
        "12 0a 10 02 0002 0000 83 000050"    # M, 2 bytes from byte 10 (bit address 80)
    )
    assert read_request(7, items) == expected


def test_timers_counters_and_bits_use_their_own_transport_sizes() -> None:
    assert ReadItem(Area.T, 0, 5, 2).spec() == bytes.fromhex("12 0a 10 1d 0002 0000 1d 000005")
    assert ReadItem(Area.C, 0, 3, 1).spec() == bytes.fromhex("12 0a 10 1c 0001 0000 1c 000003")
    bit = write_request(9, ReadItem(Area.Q, 0, 2, 1, bit=5), b"\x01")
    assert bit == bytes.fromhex("32 01 0000 0009 000e 0005 05 01 12 0a 10 01 0001 0000 82"
                                "000015 00 03 0001 01")


def test_a_write_carries_its_length_in_bits() -> None:
    pdu = write_request(3, ReadItem(Area.DB, 2, 0, 4), struct.pack(">f", 210.5))
    assert pdu == bytes.fromhex("32 01 0000 0003 000e 0008 05 01 12 0a 10 02 0004 0002 84"
                                "000000 00 04 0020 43528000")


def _answer(ref: int, items: bytes, count: int, error: int = 0) -> bytes:
    param = bytes([0x04, count])
    return struct.pack(">BBHHHHH", 0x32, 3, 0, ref, 2, len(items), error) + param + items


def test_an_answer_with_a_fill_byte_and_a_failed_item() -> None:
    items = [ReadItem(Area.DB, 1, 0, 3), ReadItem(Area.DB, 9, 0, 2), ReadItem(Area.M, 0, 0, 1)]
    data = (bytes.fromhex("ff 04 0018 0a0b0c 00")   # 3 bytes (24 bits) and a fill byte
            + bytes.fromhex("0a 00 0000")            # DB9: object does not exist
            + bytes.fromhex("ff 04 0008 7f"))        # last item: no fill byte
    results = parse_read_response(_answer(5, data, 3), 5, items)
    assert results == [b"\x0a\x0b\x0c", ItemFailed(0x0A), b"\x7f"]
    assert results[1].reason == "object does not exist"  # type: ignore[union-attr]


def test_a_refused_job_and_answers_that_do_not_fit() -> None:
    item = [ReadItem(Area.DB, 1, 0, 2)]
    refused = struct.pack(">BBHHHHH", 0x32, 3, 0, 5, 0, 0, 0x8104)
    with pytest.raises(S7JobRefused, match="PUT/GET") as info:
        parse_read_response(refused, 5, item)
    assert info.value.code == 0x8104
    good = _answer(5, bytes.fromhex("ff 04 0010 1234"), 1)
    assert parse_read_response(good, 5, item) == [b"\x12\x34"]
    with pytest.raises(S7FrameError, match="answer to request 5, expected 6"):
        parse_read_response(good, 6, item)
    with pytest.raises(S7FrameError, match="came with 1 bytes"):
        parse_read_response(_answer(5, bytes.fromhex("ff 04 0008 12"), 1), 5, item)
    with pytest.raises(S7FrameError, match="carries 2 items for 1"):
        parse_read_response(_answer(5, bytes.fromhex("ff 04 0010 1234"), 2), 5, item)
    with pytest.raises(S7FrameError, match="announces"):
        parse_read_response(good[:-1], 5, item)


def test_write_answers() -> None:
    answer = struct.pack(">BBHHHHH", 0x32, 3, 0, 4, 2, 1, 0) + b"\x05\x01" + b"\xff"
    assert parse_write_response(answer, 4) == [0xFF]
    refused = struct.pack(">BBHHHHH", 0x32, 3, 0, 4, 0, 0, 0x8104)
    with pytest.raises(S7JobRefused):
        parse_write_response(refused, 4)


@given(st.binary(max_size=64), st.integers(1, 4))
def test_any_answer_is_values_or_a_reason(raw: bytes, count: int) -> None:
    items = [ReadItem(Area.DB, 1, 2 * i, 2) for i in range(count)]
    try:
        results = parse_read_response(raw, 1, items)
    except (S7FrameError, S7JobRefused) as exc:
        assert str(exc)
        return
    assert len(results) == count
    for result in results:
        assert isinstance(result, ItemFailed) or len(result) == 2


@given(st.lists(st.tuples(st.binary(min_size=1, max_size=9), st.booleans()), min_size=1,
                max_size=6))
def test_answers_built_per_the_layout_parse_back(parts: list[tuple[bytes, bool]]) -> None:
    items, data = [], b""
    expected: list[bytes | ItemFailed] = []
    for i, (value, ok) in enumerate(parts):
        items.append(ReadItem(Area.DB, 1, 0, len(value)))
        if ok:
            data += bytes([0xFF, 0x04]) + struct.pack(">H", 8 * len(value)) + value
            if len(value) % 2 and i < len(parts) - 1:
                data += b"\0"
            expected.append(value)
        else:
            data += bytes([0x05, 0, 0, 0])
            expected.append(ItemFailed(0x05))
    assert parse_read_response(_answer(2, data, len(parts)), 2, items) == expected


def _whole_answer(ref: int, values: list[bytes]) -> bytes:
    data = b""
    for i, value in enumerate(values):
        data += bytes([0xFF, 0x04]) + struct.pack(">H", 8 * len(value)) + value
        if len(value) % 2 and i < len(values) - 1:
            data += b"\0"
    return _answer(ref, data, len(values))


@given(st.lists(st.binary(min_size=1, max_size=9), min_size=1, max_size=6), st.data())
def test_an_answer_of_the_learned_shape_is_what_the_full_parse_reads(
        values: list[bytes], data: st.DataObject) -> None:
    """ReadAnswerShape: an answer whose every byte but the data, fill bytes and reference
    is the learned one's matches, and its spans hold what parse_read_items reads; any
    other byte changed (return code, transport, length, header, a byte cut or added) or
    another reference does not match."""
    sizes = [len(v) for v in values]
    items = [ReadItem(Area.DB, 1, 0, n) for n in sizes]
    shape = ReadAnswerShape.of(_whole_answer(7, values), sizes)
    fresh = [data.draw(st.binary(min_size=n, max_size=n)) for n in sizes]
    answer = bytearray(_whole_answer(9, fresh))
    fills = [end for i, (_, end) in enumerate(shape.spans)
             if i < len(sizes) - 1 and sizes[i] % 2]
    for fill in fills:
        answer[fill] = data.draw(st.integers(0, 255))  # a fill byte is never read
    answer_bytes = bytes(answer)
    assert shape.matches(answer_bytes, 9)
    assert [answer_bytes[a:b] for a, b in shape.spans] == parse_read_items(
        answer_bytes, 9, sizes, items) == fresh
    assert not shape.matches(answer_bytes, 10)
    assert not shape.matches(answer_bytes[:-1], 9)
    assert not shape.matches(answer_bytes + b"\0", 9)
    data_bytes = {p for a, b in shape.spans for p in range(a, b)} | set(fills) | {4, 5}
    checked = [p for p in range(len(answer_bytes)) if p not in data_bytes]
    where = data.draw(st.sampled_from(checked))
    changed = bytearray(answer_bytes)
    changed[where] ^= data.draw(st.integers(1, 255))
    assert not shape.matches(bytes(changed), 9)


def test_a_refused_item_is_not_the_learned_shape() -> None:
    sizes = [2, 2]
    shape = ReadAnswerShape.of(_whole_answer(1, [b"\x01\x02", b"\x03\x04"]), sizes)
    refused = _answer(2, bytes.fromhex("0a 00 0000") + bytes.fromhex("ff 04 0010 0304"), 2)
    assert not shape.matches(refused, 2)
    assert shape.matches(_whole_answer(2, [b"\x05\x06", b"\x07\x08"]), 2)
