"""The S7 address syntax (drivers/s7/address.py): what each address means, and the words
for the ones that mean nothing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.s7.address import Area, parse_address
from gateway.types import DataType


@pytest.mark.parametrize(("text", "area", "db", "start", "bit", "s7type", "size", "published"), [
    ("DB1.DBD4:REAL", Area.DB, 1, 4, None, "REAL", 4, DataType.FLOAT32),
    ("DB1.DBX0.1", Area.DB, 1, 0, 1, "BOOL", 1, DataType.BOOL),
    ("db7.dbw10:int", Area.DB, 7, 10, None, "INT", 2, DataType.INT16),
    ("%DB2.DBB3", Area.DB, 2, 3, None, "BYTE", 1, DataType.UINT16),
    ("DB1.DB8:LREAL", Area.DB, 1, 8, None, "LREAL", 8, DataType.FLOAT64),
    ("DB1.DB8:LINT", Area.DB, 1, 8, None, "LINT", 8, DataType.INT64),
    ("DB1.DB8:ULINT", Area.DB, 1, 8, None, "ULINT", 8, DataType.UINT64),
    ("DB2.DB0:STRING[20]", Area.DB, 2, 0, None, "STRING", 22, DataType.STRING),
    ("DB2.DB0:STRING", Area.DB, 2, 0, None, "STRING", 256, DataType.STRING),
    ("DB2.DB0:WSTRING(8)", Area.DB, 2, 0, None, "WSTRING", 20, DataType.STRING),
    ("DB2.DB30:DT", Area.DB, 2, 30, None, "DATE_AND_TIME", 8, DataType.STRING),
    ("MW10:INT", Area.M, 0, 10, None, "INT", 2, DataType.INT16),
    ("MD20:REAL", Area.M, 0, 20, None, "REAL", 4, DataType.FLOAT32),
    ("M3.7", Area.M, 0, 3, 7, "BOOL", 1, DataType.BOOL),
    ("MX3.7", Area.M, 0, 3, 7, "BOOL", 1, DataType.BOOL),
    ("I0.1", Area.I, 0, 0, 1, "BOOL", 1, DataType.BOOL),
    ("E0.1", Area.I, 0, 0, 1, "BOOL", 1, DataType.BOOL),
    ("IW4", Area.I, 0, 4, None, "WORD", 2, DataType.UINT16),
    ("QB0", Area.Q, 0, 0, None, "BYTE", 1, DataType.UINT16),
    ("A1.0", Area.Q, 0, 1, 0, "BOOL", 1, DataType.BOOL),
    ("VW100:INT", Area.DB, 1, 100, None, "INT", 2, DataType.INT16),
    ("VD104:REAL", Area.DB, 1, 104, None, "REAL", 4, DataType.FLOAT32),
    ("V10.2", Area.DB, 1, 10, 2, "BOOL", 1, DataType.BOOL),
    ("T5", Area.T, 0, 5, None, "S5TIME", 2, DataType.FLOAT64),
    ("T5:WORD", Area.T, 0, 5, None, "WORD", 2, DataType.UINT16),
    ("C3", Area.C, 0, 3, None, "COUNTER", 2, DataType.UINT16),
    ("Z3", Area.C, 0, 3, None, "COUNTER", 2, DataType.UINT16),
])
def test_addresses_mean_what_the_siemens_tools_mean(
    text: str, area: Area, db: int, start: int, bit: int | None, s7type: str, size: int,
    published: DataType,
) -> None:
    a = parse_address(text)
    assert (a.area, a.db, a.start, a.bit, a.type.name, a.size) == (area, db, start, bit, s7type,
                                                                    size)
    assert a.type.published is published
    assert parse_address(a.text()) == a  # the canonical text means the same


@pytest.mark.parametrize(("text", "words"), [
    ("DB1.DBW4:REAL", "a REAL takes 4 bytes but the size letter W names 2"),
    ("DB1.DBB4:STRING[3]", "write a STRING without a size letter (DB1.DB4:STRING[3])"),
    ("DB1.DBX4", "a bit address needs its bit number (DB1.DBX4.0)"),
    ("MW2.1", "a bit address has the size letter X or none (MX2.1)"),
    ("M1.1:INT", "an address with .bit is a BOOL, not INT"),
    ("M3", "say the size (X, B, W, D) or the type"),
    ("DB1.DBX1.8", "bit 8: a byte has bits 0 to 7"),
    ("DB70000.DBW0", "DB numbers run from 1 to 65535"),
    ("MW10:FLOAT", "unknown type 'FLOAT'"),
    ("MW10:INT[3]", "only STRING and WSTRING take a length"),
    ("T5.1", "a timer or counter is named by its number alone"),
    ("T5:REAL", "a timer reads as S5TIME or as its raw WORD"),
    ("MW0:S5TIME", "S5TIME is the type of timers (T) and counters (C)"),
    ("DB1.DB0:WSTRING[20000]", "a WSTRING holds 1 to 16382 characters"),
    ("DB1.DB2097150:LREAL", "byte offsets run to 2097151"),
    ("holding:40001", "is not an S7 address"),
])
def test_a_wrong_address_is_refused_in_words(text: str, words: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_address(text)
    assert words in str(info.value)


@given(st.text(max_size=30))
def test_any_text_is_an_address_or_a_value_error(text: str) -> None:
    try:
        address = parse_address(text)
    except ValueError:
        return
    assert parse_address(address.text()) == address
