"""FINS frames, end codes and FINS/TCP messages: golden bytes and fuzzing (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.fins.frames import (
    MEMORY_AREA_READ,
    MULTIPLE_MEMORY_AREA_READ,
    EndCode,
    MultipleReadLayout,
    Route,
    command_frame,
    memory_area_read,
    memory_area_write,
    multiple_memory_area_read,
    node_address_request,
    parse_controller_data,
    parse_frame,
    parse_multiple_read,
    parse_node_address_response,
    parse_tcp_header,
    response_frame,
    tcp_message,
)
from gateway.errors import FinsFrameError

ROUTE = Route(dest_node=10, src_node=1)


def test_memory_area_read_of_d100_ten_words() -> None:
    """The example every FINS manual has: DM 100, 10 words, from node 1 to node 10."""
    frame = command_frame(ROUTE, 0x11, MEMORY_AREA_READ, memory_area_read(0x82, 100, 0, 10))
    assert frame.hex(" ") == "80 00 02 00 0a 00 00 01 00 11 01 01 82 00 64 00 00 0a"


def test_bit_read_and_write_carry_the_bit_number() -> None:
    assert memory_area_read(0x30, 100, 5, 3).hex(" ") == "30 00 64 05 00 03"
    assert memory_area_write(0x31, 10, 3, 1, b"\x01").hex(" ") == "31 00 0a 03 00 01 01"
    assert memory_area_write(0xB2, 7, 0, 2, bytes.fromhex("12345678")).hex(" ") == \
        "b2 00 07 00 00 02 12 34 56 78"
    with pytest.raises(ValueError):
        memory_area_write(0x82, 0, 0, 2, b"\x00\x01")  # 2 words need 4 bytes


def test_routes_to_other_networks_and_units() -> None:
    route = Route(dest_node=3, src_node=25, dest_network=2, dest_unit=0x10, src_network=1,
                  src_unit=0, gateway_count=7)
    assert route.header(0xFF).hex(" ") == "80 00 07 02 03 10 01 19 00 ff"
    with pytest.raises(ValueError, match="dest_node 256"):
        Route(dest_node=256, src_node=1)


def test_a_response_is_read_back_with_its_end_code_and_data() -> None:
    command = parse_frame(command_frame(ROUTE, 7, MEMORY_AREA_READ,
                                        memory_area_read(0x82, 0, 0, 2)))
    answer = response_frame(command, 0, bytes.fromhex("00010002"))
    assert answer.hex(" ") == "c0 00 02 00 01 00 00 0a 00 07 01 01 00 00 00 01 00 02"
    frame = parse_frame(answer)
    assert frame.is_response and frame.sid == 7 and frame.code == MEMORY_AREA_READ
    assert (frame.sa1, frame.da1, frame.end_code, frame.text) == (10, 1, 0, b"\x00\x01\x00\x02")
    assert frame.answers(ROUTE, 7, MEMORY_AREA_READ)
    assert not frame.answers(ROUTE, 8, MEMORY_AREA_READ)


@pytest.mark.parametrize(("raw", "ok", "words"), [
    (0x0000, True, "end code 00 00 (normal completion)"),
    (0x0040, True, "end code 00 00 (normal completion); the PLC has a non-fatal error"),
    (0x0080, True, "the PLC has a fatal error"),
    (0x1103, False, "end code 11 03 (address range error: the address is beyond this CPU's"),
    (0x9101, False, "end code 11 01 (area classification missing: this CPU has no such memory "
                    "area); a relay error on the way"),
    (0x2101, False, "end code 21 01 (read-only: the area cannot be written)"),
    (0x2206, False, "wrong PLC mode: in RUN mode"),
    (0x0401, False, "undefined command"),
    (0x1120, False, "end code 11 20 (parameter error (sub code not defined))"),
    (0x7777, False, "end code 77 37 (a code FINS does not define)"),
])
def test_end_codes_in_words(raw: int, ok: bool, words: str) -> None:
    end = EndCode(raw)
    assert end.ok is ok
    assert words in end.describe()


def test_multiple_read_mixes_words_and_bits() -> None:
    text = multiple_memory_area_read([(0x82, 100, 0), (0x30, 0, 5), (0xA1, 3, 0)])
    assert text.hex(" ") == "82 00 64 00 30 00 00 05 a1 00 03 00"
    answer = bytes.fromhex("82 12 34 30 01 a1 ff fe")
    assert parse_multiple_read(answer, [0x82, 0x30, 0xA1]) == [0x1234, 1, 0xFFFE]
    with pytest.raises(FinsFrameError, match="ends after 2 of its 3 items"):
        parse_multiple_read(answer[:5], [0x82, 0x30, 0xA1])
    with pytest.raises(FinsFrameError, match="area code 0x30, 0x82 was asked"):
        parse_multiple_read(answer[3:], [0x82])
    with pytest.raises(FinsFrameError, match="bytes too many"):
        parse_multiple_read(answer + b"\x00", [0x82, 0x30, 0xA1])


def test_controller_data() -> None:
    text = b"CJ2M-CPU33".ljust(20, b" ") + b"02.00".ljust(20, b"\0") + bytes(40)
    area = bytearray(12)
    area[3:5] = (32768).to_bytes(2, "big")
    area[6] = 4
    data = parse_controller_data(text + bytes(area))
    assert (data.model, data.version, data.dm_words, data.em_banks) == (
        "CJ2M-CPU33", "02.00", 32768, 4)
    assert data.describe() == "CJ2M-CPU33, version 02.00, 32768 DM words, 4 EM banks"
    assert parse_controller_data(text[:20]).describe() == "CJ2M-CPU33"
    with pytest.raises(FinsFrameError, match="no model name"):
        parse_controller_data(b"CJ2")


def test_fins_tcp_handshake_and_frames() -> None:
    assert node_address_request(0).hex(" ") == \
        "46 49 4e 53 00 00 00 0c 00 00 00 00 00 00 00 00 00 00 00 00"
    answer = tcp_message(1, bytes.fromhex("000000ef00000001"))
    header = parse_tcp_header(answer[:16])
    assert (header.length, header.command, header.error, header.payload_size) == (16, 1, 0, 8)
    assert parse_node_address_response(answer[16:]) == (239, 1)
    refused = parse_tcp_header(tcp_message(1, bytes(8), error=0x25)[:16])
    assert refused.describe_error() == "all node addresses the PLC assigns are in use"
    with pytest.raises(FinsFrameError, match="starts with 'FINS'"):
        parse_tcp_header(b"HTTP/1.1 200 OK\r\n"[:16])
    with pytest.raises(FinsFrameError, match="length of 7"):
        parse_tcp_header(b"FINS" + (7).to_bytes(4, "big") + bytes(8))
    with pytest.raises(FinsFrameError, match=r"not both within 1\.\.254"):
        parse_node_address_response(bytes(8))


@pytest.mark.parametrize(("data", "words"), [
    (b"", "shorter than its 12-byte header"),
    (bytes.fromhex("80 00 02 00 01 00 00 0a 00 07 01"), "shorter than its 12-byte header"),
    (bytes.fromhex("00 00 02 00 01 00 00 0a 00 07 01 01"), "ICF 0x00"),
    (bytes.fromhex("c0 00 02 00 01 00 00 0a 00 07 01 01 00"), "has no end code"),
    (bytes(2013), "longer than the 2012 bytes"),
])
def test_frames_that_are_not_fins(data: bytes, words: str) -> None:
    with pytest.raises(FinsFrameError, match=words) as caught:
        parse_frame(data)
    assert caught.value.counter == "garbled"


# -- fuzzing ---------------------------------------------------------------------------

nodes = st.integers(0, 255)


@given(nodes, nodes, nodes, nodes, nodes, nodes, st.integers(0, 7), st.integers(0, 255),
       st.sampled_from([MEMORY_AREA_READ, MULTIPLE_MEMORY_AREA_READ, 0x0501, 0x0102]),
       st.binary(max_size=200))
def test_command_frames_read_back_as_sent(dn: int, da: int, du: int, sn: int, sa: int, su: int,
                                          gct: int, sid: int, code: int, text: bytes) -> None:
    route = Route(da, sa, dn, du, sn, su, gct)
    frame = parse_frame(command_frame(route, sid, code, text))
    assert not frame.is_response
    assert (frame.dna, frame.da1, frame.da2, frame.sna, frame.sa1, frame.sa2) == (
        dn, da, du, sn, sa, su)
    assert (frame.gct, frame.sid, frame.code, frame.text) == (gct, sid, code, text)
    answer = parse_frame(response_frame(frame, 0x1103, b"xy"))
    assert answer.answers(route, sid, code) and answer.end_code == 0x1103


@given(st.binary(max_size=64))
def test_any_bytes_are_a_frame_or_a_frame_error(data: bytes) -> None:
    try:
        parse_frame(data)
    except FinsFrameError as exc:
        assert exc.counter == "garbled"


@given(st.binary(max_size=64), st.lists(st.sampled_from([0x82, 0x30, 0xB0, 0xA5, 0x02, 0x07]),
                                        max_size=20))
def test_any_multiple_read_answer_decodes_or_raises_a_decode_error(
    data: bytes, codes: list[int]
) -> None:
    try:
        values = parse_multiple_read(data, codes)
    except FinsFrameError as exc:
        assert exc.counter == "decode"
    else:
        assert len(values) == len(codes) and all(0 <= v <= 0xFFFF for v in values)


@given(st.binary(min_size=16, max_size=16))
def test_any_tcp_header_parses_or_is_garbled(data: bytes) -> None:
    try:
        header = parse_tcp_header(data)
    except FinsFrameError as exc:
        assert exc.counter == "garbled"
    else:
        assert header.payload_size >= 0


@given(st.binary(max_size=120))
def test_any_controller_data_parses_or_raises(data: bytes) -> None:
    try:
        parse_controller_data(data).describe()
    except FinsFrameError as exc:
        assert exc.counter == "decode"


@given(st.integers(0, 0xFFFF))
def test_every_end_code_has_words(raw: int) -> None:
    end = EndCode(raw)
    assert end.describe().startswith("end code ")
    assert end.ok is ((raw & 0x7F3F) == 0)


@given(st.lists(st.tuples(st.sampled_from([0x82, 0x30, 0xB0, 0x02, 0x31]), st.integers(0, 0xFFFF)),
                min_size=1, max_size=40),
       st.sampled_from(["mixed", "bits", "words"]))
def test_a_multiple_read_answer_gives_each_item_its_value(
    items: list[tuple[int, int]], kind: str
) -> None:
    """Every item's value, by slices (all bits, all words) or by gathers (mixed); a wrong
    area code anywhere is a decode error."""
    bit_codes = {0x30, 0x02, 0x31}
    if kind == "bits":
        items = [(0x30, v & 1) for _, v in items]
    elif kind == "words":
        items = [(0x82, v) for _, v in items]
    items = [(c, v & 1) if c in bit_codes else (c, v) for c, v in items]
    answer = b"".join(bytes((c, v)) if c in bit_codes else bytes((c,)) + v.to_bytes(2, "big")
                      for c, v in items)
    codes = [c for c, _ in items]
    assert parse_multiple_read(answer, codes) == [v for _, v in items]
    wrong = bytearray(answer)
    wrong[0] ^= 0x01
    with pytest.raises(FinsFrameError, match="area code"):
        parse_multiple_read(bytes(wrong), codes)


@given(st.lists(st.tuples(st.sampled_from([0x30, 0x02, 0x31, 0x82]), st.integers(0, 255)),
                min_size=1, max_size=20),
       st.sampled_from(["whole", "wrong code", "short", "long"]))
def test_a_multiple_read_of_bits_by_byte_slices_agrees_with_its_values(
    items: list[tuple[int, int]], shape: str
) -> None:
    """``bits`` (the driver's fast path) takes exactly the answers ``values`` takes when
    every item is a bit, each value as its ``!= 0``; anything else is None."""
    codes = [c for c, _ in items]
    layout = MultipleReadLayout(codes)
    text = b"".join(bytes((c, v)) if c != 0x82 else bytes((c, v, v)) for c, v in items)
    if shape == "wrong code":
        text = bytes((text[0] ^ 0x01,)) + text[1:]
    elif shape == "short":
        text = text[:-1]
    elif shape == "long":
        text += b"\x00"
    bits = layout.bits(bytes(14) + text)
    try:
        values = layout.values(text)
    except FinsFrameError:
        assert bits is None
    else:
        if 0x82 in codes:
            assert bits is None
        else:
            assert bits == bytes(int(v != 0) for v in values)
