"""The Omron address syntax: areas, EM banks in hex, bits, and readable refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.fins.address import AREA_BY_CODE, AREAS, EM_BANKS, parse_address


@pytest.mark.parametrize(("text", "area", "word", "bit", "code"), [
    ("D100", "D", 100, None, 0x82),
    ("dm100", "D", 100, None, 0x82),
    ("D100.00", "D", 100, 0, 0x02),
    ("CIO100", "CIO", 100, None, 0xB0),
    ("CIO100.05", "CIO", 100, 5, 0x30),
    ("cio0.15", "CIO", 0, 15, 0x30),
    ("W10", "W", 10, None, 0xB1),
    ("W10.3", "W", 10, 3, 0x31),
    ("H20", "H", 20, None, 0xB2),
    ("H1535.15", "H", 1535, 15, 0x32),
    ("A500", "A", 500, None, 0xB3),
    ("A448.01", "A", 448, 1, 0x33),
    ("E0_100", "E0_", 100, None, 0xA0),
    ("e0_100.7", "E0_", 100, 7, 0x20),
    ("EF_0", "EF_", 0, None, 0xAF),
    ("E10_32767", "E10_", 32767, None, 0x60),
    ("E18_5.2", "E18_", 5, 2, 0xE8),
])
def test_addresses_parse_to_their_area_word_bit_and_fins_code(
    text: str, area: str, word: int, bit: int | None, code: int
) -> None:
    address = parse_address(text)
    assert (address.area.name, address.word, address.bit, address.code) == (area, word, bit, code)


def test_an_address_prints_as_it_parses() -> None:
    assert str(parse_address("cio100.5")) == "CIO100.05"
    assert str(parse_address("DM7")) == "D7"
    assert str(parse_address("E12_3")) == "E12_3"


@pytest.mark.parametrize(("text", "words"), [
    ("D", "is not an Omron address"),
    ("D-1", "is not an Omron address"),
    ("X100", "is not an Omron address"),
    ("100.05", "is not an Omron address"),
    ("D100.16", "bit 16 does not exist"),
    ("CIO6144", "beyond the CIO area (CIO0 .. CIO6143)"),
    ("W512", "beyond the work (W) area"),
    ("D32768", "beyond the DM area"),
    ("E19_0", "EM bank 19 (hex) does not exist"),
    ("E1F_0", "EM bank 1F (hex) does not exist"),
])
def test_bad_addresses_say_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        parse_address(text)


def test_em_banks_are_hexadecimal_with_the_codes_of_the_fins_reference() -> None:
    codes = [(parse_address(f"E{b:X}_0").code, parse_address(f"E{b:X}_0.0").code)
             for b in range(EM_BANKS)]
    assert codes[:16] == [(0xA0 + b, 0x20 + b) for b in range(16)]
    assert codes[16:] == [(0x60 + b, 0xE0 + b) for b in range(9)]


def test_every_area_code_is_unique() -> None:
    codes = [c for a in AREAS.values() for c in (a.word_code, a.bit_code)]
    assert len(codes) == len(set(codes)) == len(AREA_BY_CODE)


@given(st.text(max_size=20))
def test_any_text_parses_or_raises_a_value_error(text: str) -> None:
    try:
        parse_address(text)
    except ValueError as exc:
        assert str(exc)
