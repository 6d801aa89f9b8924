"""CRC-16/CCITT-FALSE check value and COBS round trips and edge cases."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge import cobs
from firmware_bridge.crc import CHECK, crc16, crc16_bitwise


def test_crc_check_value() -> None:
    assert CHECK == 0x29B1
    assert crc16(b"123456789") == 0x29B1
    assert crc16_bitwise(b"123456789") == 0x29B1


@given(st.binary(max_size=300))
def test_crc_table_and_bitwise_agree(data: bytes) -> None:
    assert crc16(data) == crc16_bitwise(data)


def test_crc_runs_on() -> None:
    assert crc16(b"56789", crc16(b"1234")) == 0x29B1


# the examples of Cheshire and Baker's paper / the Wikipedia article
KNOWN = [
    (b"", b"\x01"),
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x00\x11\x00", b"\x01\x02\x11\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255))),
    (bytes(range(0, 255)), b"\x01\xff" + bytes(range(1, 255))),
    (bytes(range(1, 256)), b"\xff" + bytes(range(1, 255)) + b"\x02\xff"),
    (bytes(range(2, 256)) + b"\x00", b"\xff" + bytes(range(2, 256)) + b"\x01\x01"),
    (bytes(range(3, 256)) + b"\x00\x01", b"\xfe" + bytes(range(3, 256)) + b"\x02\x01"),
]


@pytest.mark.parametrize(("raw", "encoded"), KNOWN, ids=range(len(KNOWN)))
def test_cobs_known_vectors(raw: bytes, encoded: bytes) -> None:
    assert cobs.encode(raw) == encoded
    assert cobs.decode(encoded) == raw


@pytest.mark.parametrize("n", [253, 254, 255, 256, 507, 508, 509, 510, 1024])
@pytest.mark.parametrize("fill", [0x11, 0x00])
def test_cobs_long_runs(n: int, fill: int) -> None:
    raw = bytes([fill]) * n
    encoded = cobs.encode(raw)
    assert 0 not in encoded
    assert cobs.decode(encoded) == raw
    assert len(encoded) <= n + n // 254 + 1


@given(st.binary(max_size=2000))
def test_cobs_round_trip(data: bytes) -> None:
    encoded = cobs.encode(data)
    assert 0 not in encoded
    assert cobs.decode(encoded) == data


@pytest.mark.parametrize("bad", [b"\x00", b"\x05\x11", b"\x02\x00", b"\x03\x11\x00"])
def test_cobs_rejects_invalid(bad: bytes) -> None:
    with pytest.raises(cobs.CobsError):
        cobs.decode(bad)
