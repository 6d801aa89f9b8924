"""Tag lists as CSV and XLSX: written and read back the same; bad rows refused with their
row number and column, every one at once; files that are not what they say refused."""

from __future__ import annotations

import io
import zipfile

import pytest

from drivers.modbus.config import ModbusTcpDeviceConfig
from gateway.errors import ConfigError
from gateway.tag_lists import read_csv, read_xlsx, tags_of, write_csv, write_xlsx

DEVICE = {"name": "meter", "protocol": "modbus_tcp", "host": "127.0.0.1"}
TAGS = [
    {"name": "voltage", "table": "input", "address": 0, "type": "float32", "unit": "V"},
    {"name": "power_limit", "address": 100, "type": "float32", "scale": 1000,
     "writable": True, "range": [0, 100000], "description": "limit, kW; \"peak\""},
    {"name": "relay", "table": "coil", "address": 3, "type": "bool",
     "description": "état du relais"},
]


def test_csv_and_xlsx_read_back_the_same_tags() -> None:
    for rows in (read_csv(write_csv(TAGS), "t.csv"),
                 read_xlsx(write_xlsx(TAGS, "meter"), "t.xlsx")):
        assert [n for n, _ in rows] == [2, 3, 4]
        assert tags_of(rows, DEVICE, ModbusTcpDeviceConfig, "t") == TAGS


def test_bad_rows_are_refused_each_with_its_row_and_column() -> None:
    data = (b"name,address,type,range\n"
            b"ok,0,float32,\n"
            b"bad_type,2,float99,\n"
            b"\n"
            b"bad_address,minus,uint16,\n"
            b",4,uint16,\n"
            b'bad_range,5,uint16,"[0, "\n')
    with pytest.raises(ConfigError) as caught:
        tags_of(read_csv(data, "meter.csv"), DEVICE, ModbusTcpDeviceConfig, "meter.csv")
    where = [(p.line, p.path_text) for p in caught.value.problems]
    assert where == [(7, "range")], where  # not JSON: found before the model's checks
    data = data.replace(b'"[0, "', b'"[0, 10]"')
    with pytest.raises(ConfigError) as caught:
        tags_of(read_csv(data, "meter.csv"), DEVICE, ModbusTcpDeviceConfig, "meter.csv")
    where = [(p.file, p.line, p.path_text) for p in caught.value.problems]
    assert where == [("meter.csv", 3, "type"), ("meter.csv", 5, "address"),
                     ("meter.csv", 6, "name")], where


@pytest.mark.parametrize(("data", "reader", "words"), [
    (b"address,type\n1,uint16\n", read_csv, "no 'name' column"),
    (b"name,name\na,b\n", read_csv, "there twice"),
    (b"name\n", read_csv, "no tag rows"),
    (b"", read_csv, "the file is empty"),
    (b"\xff\xfe\x00", read_csv, "not UTF-8"),
    (b"name,type\na,uint16,extra\n", read_csv, "beyond the named columns"),
    (b"PK\x03\x04 not really", read_xlsx, "not an XLSX file"),
])
def test_files_that_are_not_tag_lists_are_refused(data: bytes, reader, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        reader(data, "f")
    assert words in str(caught.value)


def test_an_xlsx_that_unpacks_too_large_is_refused_unread() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", b"\0" * 2_000_000)
    assert len(out.getvalue()) < 10_000
    with pytest.raises(ConfigError, match="unpacks to more than 1,000,000 bytes"):
        read_xlsx(out.getvalue(), "bomb.xlsx", max_unpacked=1_000_000)
