"""The register codec: golden cases as data, every type x byte order, encoder limits."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from modbus_golden import CASE_NAMES, load_case, same_value

from drivers.modbus.codec import (
    BYTE_ORDERS,
    WORDS,
    AnswerDecoder,
    DecodePlan,
    Field,
    decode_value,
    encode,
    encode_string,
)
from drivers.modbus.config import REGISTER_TYPES, ModbusTagConfig
from drivers.modbus.planner import TagSpan, plan_requests
from gateway.errors import RegisterDecodeError
from gateway.types import DataType

INT_TYPES = {
    DataType.INT16: (">h", -(2**15), 2**15 - 1),
    DataType.UINT16: (">H", 0, 2**16 - 1),
    DataType.INT32: (">i", -(2**31), 2**31 - 1),
    DataType.UINT32: (">I", 0, 2**32 - 1),
    DataType.INT64: (">q", -(2**63), 2**63 - 1),
    DataType.UINT64: (">Q", 0, 2**64 - 1),
}


def reference_registers(fmt: str, value: float, order: str) -> list[int]:
    """Registers of ``value`` built with struct, independently of the codec."""
    data = struct.pack(fmt, value)
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if order in ("BADC", "DCBA"):
        words = [int.from_bytes(w.to_bytes(2, "little"), "big") for w in words]
    if order in ("CDAB", "DCBA"):
        words = words[::-1]
    return words


# -- golden cases ---------------------------------------------------------------------


@pytest.mark.parametrize("name", CASE_NAMES)
def test_golden_case_decodes(name: str) -> None:
    case = load_case(name)
    device = case.device
    tags = device.tags
    requests = plan_requests(
        [TagSpan(i, t.table, t.address, t.register_count, t.name) for i, t in enumerate(tags)],
        max_registers=device.max_request_registers,
        max_bits=device.max_request_bits,
        max_gap=device.max_gap,
    )
    decoded: dict[str, float | int | str] = {}
    for request in requests:
        memory = case.tables[request.table]
        plan = DecodePlan([_field(tags[m.index], m.offset) for m in request.members], request.count)
        values = plan.decode(memory[request.address : request.address + request.count])
        for member, value in zip(request.members, values, strict=True):
            decoded[tags[member.index].name] = (
                value if isinstance(value, str | int) else float(value)
            )
    assert decoded.keys() == case.expected.keys()
    wrong = {
        tag: (decoded[tag], want.decoded)
        for tag, want in case.expected.items()
        if not same_value(decoded[tag], want.decoded)
    }
    assert not wrong, f"decoded vs expected: {wrong}"


def _field(tag: ModbusTagConfig, offset: int) -> Field:
    length = tag.register_count if tag.type is DataType.STRING else None
    return Field(offset, tag.type, tag.byte_order, tag.bit, length)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_golden_case_encodes(name: str) -> None:
    case = load_case(name)
    for tag in case.device.tags:
        want = case.expected[tag.name]
        if isinstance(want.exact, float) and math.isnan(want.exact):
            continue  # many NaN patterns, one encoding: see test_nan_encodes_to_a_nan_pattern
        if tag.bit is not None:
            continue  # a bit inside a register is read-only
        if isinstance(want.exact, str):  # padding may differ: the text must come back
            registers = encode_string(want.exact, tag.register_count, tag.byte_order)
            assert decode_value(registers, DataType.STRING, tag.byte_order) == want.exact
            continue
        memory = case.tables[tag.table]
        registers = memory[tag.address : tag.address + tag.register_count]
        assert encode(want.exact, tag.type, tag.byte_order) == registers, tag.name


def test_golden_cases_cover_every_type_and_byte_order() -> None:
    seen = set()
    for name in CASE_NAMES:
        case = load_case(name)
        for tag in case.device.tags:
            want = case.expected[tag.name].decoded
            if isinstance(want, str) or tag.type is DataType.BOOL:
                seen.add((tag.type, tag.byte_order, "bit" if tag.bit is not None else "other"))
                continue
            seen.add((tag.type, tag.byte_order, "negative" if want < 0 else "other"))
    for type_ in REGISTER_TYPES:
        for order in BYTE_ORDERS:
            assert (type_, order, "other") in seen, (type_, order)
            if type_.value.startswith(("int", "float")):
                assert (type_, order, "negative") in seen, (type_, order)
    for order in ("ABCD", "BADC"):
        assert (DataType.STRING, order, "other") in seen
        assert (DataType.BOOL, order, "bit") in seen


# -- all types x byte orders against struct ----------------------------------------------


@pytest.mark.parametrize("order", BYTE_ORDERS)
@pytest.mark.parametrize("type_", list(INT_TYPES))
@given(data=st.data())
def test_integers_match_struct(type_: DataType, order: str, data: st.DataObject) -> None:
    fmt, low, high = INT_TYPES[type_]
    value = data.draw(st.integers(low, high))
    registers = reference_registers(fmt, value, order)
    assert encode(value, type_, order) == registers  # type: ignore[arg-type]
    decoded = decode_value(registers, type_, order)  # type: ignore[arg-type]
    if type_.is_wide_integer:  # exact: a Python int, never a rounded float
        assert type(decoded) is int and decoded == value
    else:
        assert decoded == float(value)


@pytest.mark.parametrize("order", BYTE_ORDERS)
@pytest.mark.parametrize(
    ("type_", "fmt", "width"), [(DataType.FLOAT32, ">f", 32), (DataType.FLOAT64, ">d", 64)]
)
@given(data=st.data())
def test_floats_match_struct(
    type_: DataType, fmt: str, width: int, order: str, data: st.DataObject
) -> None:
    value = data.draw(st.floats(width=width, allow_nan=False))  # type: ignore[arg-type]
    registers = reference_registers(fmt, value, order)
    assert encode(value, type_, order) == registers  # type: ignore[arg-type]
    decoded = decode_value(registers, type_, order)  # type: ignore[arg-type]
    assert same_value(decoded, value)


@pytest.mark.parametrize("order", BYTE_ORDERS)
def test_64_bit_integers_decode_exactly_over_their_whole_range(order: str) -> None:
    """float64 would give 2**53 for 2**53 + 1 and 2**64 for the all-ones marker."""
    for type_, value in [(DataType.UINT64, 2**53 + 1), (DataType.UINT64, 2**64 - 1),
                         (DataType.UINT64, 2**63), (DataType.INT64, 2**53 + 1),
                         (DataType.INT64, -(2**63)), (DataType.INT64, 2**63 - 1),
                         (DataType.INT64, -1)]:  # fmt: skip
        registers = encode(value, type_, order)  # type: ignore[arg-type]
        decoded = decode_value(registers, type_, order)  # type: ignore[arg-type]
        assert type(decoded) is int and decoded == value, (type_, value, order)
    assert decode_value([0xFFFF] * 4, DataType.UINT64) == 2**64 - 1
    assert decode_value([0xFFFF] * 4, DataType.INT64) == -1


def test_a_plan_with_64_bit_integers_decodes_into_python_ints_beside_floats() -> None:
    plan = DecodePlan([Field(0, DataType.UINT64), Field(4, DataType.FLOAT32),
                       Field(6, DataType.INT64, "DCBA")], 10)  # fmt: skip
    registers = [0xFFFF] * 4 + encode(1.5, DataType.FLOAT32) + encode(
        -(2**63) + 1, DataType.INT64, "DCBA")
    out = plan.decode(registers)
    assert out.dtype == object
    assert out.tolist() == [2**64 - 1, 1.5, -(2**63) + 1]
    assert [type(v) for v in out.tolist()] == [int, float, int]


def test_nan_encodes_to_a_nan_pattern_and_infinities_exactly() -> None:
    for order in BYTE_ORDERS:
        registers = encode(math.nan, DataType.FLOAT32, order)
        assert math.isnan(decode_value(registers, DataType.FLOAT32, order))
        assert math.isnan(
            decode_value(encode(math.nan, DataType.FLOAT64, order), DataType.FLOAT64, order)
        )
    assert encode(math.inf, DataType.FLOAT32) == [0x7F80, 0x0000]
    assert encode(-math.inf, DataType.FLOAT64, "DCBA") == [0x0000, 0x0000, 0x0000, 0xF0FF]


# -- decode plan ----------------------------------------------------------------------


def test_plan_mixes_types_orders_and_overlaps_in_one_response() -> None:
    registers = [0xFFFE, *encode(1.5, DataType.FLOAT32, "CDAB"), 0x0102, 0x0000, 0x0001]
    plan = DecodePlan(
        [
            Field(0, DataType.INT16),
            Field(1, DataType.FLOAT32, "CDAB"),
            Field(3, DataType.UINT16, "BADC"),
            Field(0, DataType.UINT16),
            Field(4, DataType.UINT32),
            Field(3, DataType.INT16),
        ],
        count=6,
    )
    assert plan.decode(registers).tolist() == [-2.0, 1.5, 0x0201, 0xFFFE, 1.0, 0x0102]


def test_plan_writes_into_a_slice_of_a_larger_array() -> None:
    plan = DecodePlan([Field(1, DataType.INT16), Field(0, DataType.UINT16)], count=2)
    batch = np.full(5, -7.0)
    plan.decode(np.array([3, 0xFFFF], dtype=np.uint16), out=batch[2:4])
    assert batch.tolist() == [-7.0, -7.0, -1.0, 3.0, -7.0]


def test_bool_fields_are_one_for_any_non_zero_bit() -> None:
    plan = DecodePlan([Field(i, DataType.BOOL) for i in range(4)], count=4)
    assert plan.decode([0, 1, 0, 1]).tolist() == [0.0, 1.0, 0.0, 1.0]
    assert plan.decode(np.array([True, False, False, True])).tolist() == [1.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize("length", [0, 3, 5])
def test_plan_rejects_a_response_of_the_wrong_length(length: int) -> None:
    plan = DecodePlan([Field(0, DataType.UINT32)], count=4)
    with pytest.raises(RegisterDecodeError,
                       match=f"expected 4 values in the response, got {length}"):
        plan.decode([0] * length)


def test_plan_rejects_a_field_past_the_response() -> None:
    with pytest.raises(ValueError, match="runs past"):
        DecodePlan([Field(3, DataType.FLOAT32)], count=4)


def test_words_per_type_agree_with_the_config() -> None:
    for type_, count in REGISTER_TYPES.items():
        assert WORDS[type_] == count


# -- encoder limits -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "type_", "message"),
    [
        (40000, DataType.INT16, "outside the int16 range"),
        (-1, DataType.UINT16, "outside the uint16 range"),
        (2**64, DataType.UINT64, "outside the uint64 range"),
        (1.5, DataType.INT32, "not an integer"),
        (math.nan, DataType.INT16, "not a valid int16"),
        (1e39, DataType.FLOAT32, "does not fit in a float32"),
        (2, DataType.BOOL, "not a boolean"),
    ],
)
def test_encode_refuses_values_it_cannot_write_exactly(
    value: float, type_: DataType, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        encode(value, type_)


def test_encode_accepts_floats_that_are_integers_up_to_rounding_noise() -> None:
    assert encode(1500 / 0.1, DataType.INT16) == [15000]  # 15000.000000000002
    assert encode(np.int64(-3), DataType.INT32) == [0xFFFF, 0xFFFD]
    assert encode(True, DataType.UINT16) == [1]
    assert encode(1.0, DataType.BOOL) == [1]


_ANSWER_TYPES = [DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32,
                 DataType.FLOAT32, DataType.INT64, DataType.UINT64, DataType.FLOAT64,
                 DataType.BOOL, DataType.STRING]


@settings(deadline=None)  # timing is no verdict on a shared machine
@given(layout=st.lists(st.tuples(st.sampled_from(_ANSWER_TYPES), st.integers(0, 60),
                                 st.sampled_from(["ABCD", "CDAB", "BADC", "DCBA"]),
                                 st.integers(0, 15)),
                       min_size=1, max_size=60),
       data=st.data())
def test_the_answer_decoder_gives_what_the_plan_gives_in_every_byte_order(
        layout: list[tuple[DataType, int, str, int]], data: st.DataObject) -> None:
    """AnswerDecoder (views and byte gathers for numbers whose bytes stand as they are,
    the plan for the rest) decodes any layout in any byte order, scattered fields of one
    type past its few views included, as DecodePlan does: NaN patterns, exact 64-bit ints."""
    fields = []
    for type_, offset, order, bit in layout:
        if type_ is DataType.BOOL:
            fields.append(Field(offset, type_, "ABCD", bit=bit))
        elif type_ is DataType.STRING:
            fields.append(Field(offset, type_, "BADC" if order == "BADC" else "ABCD", length=3))
        else:
            fields.append(Field(offset, type_, order))  # type: ignore[arg-type]
    count = max(f.offset + f.words for f in fields)
    registers = np.array(data.draw(st.lists(st.integers(0, 0xFFFF), min_size=count,
                                            max_size=count)), dtype=np.uint16)
    objects = any(f.type.is_object for f in fields)
    fast = AnswerDecoder(fields, count).decode(
        registers.astype("<u2"), np.empty(len(fields), dtype=object if objects else np.float64))
    shared = DecodePlan(fields, count).decode(registers)
    for got, want in zip(fast.tolist(), shared.tolist(), strict=True):
        if isinstance(want, float) and math.isnan(want):
            assert isinstance(got, float) and math.isnan(got)
        else:
            assert got == want and type(got) is type(want)


def test_scattered_numbers_are_one_byte_gather() -> None:
    """Float32 tags (low word first) scattered between uint16 tags: one gather per type."""
    fields = []
    offset = 0
    for i in range(300):
        kind = DataType.FLOAT32 if i % 2 == 0 or i % 7 == 0 else DataType.UINT16
        fields.append(Field(offset, kind, "CDAB"))
        offset += 2 if kind is DataType.FLOAT32 else 1
    decoder = AnswerDecoder(fields, offset)
    assert len(decoder._gathers) == 2 and decoder._rest is None and not decoder._runs
    registers = np.arange(offset, dtype=np.uint16)
    fast = decoder.decode(registers.astype("<u2"), np.empty(len(fields)))
    assert np.array_equal(fast, DecodePlan(fields, offset).decode(registers), equal_nan=True)


def test_the_answer_decoder_puts_each_value_at_its_position() -> None:
    """``positions``: the values of several answers' fields decoded at once go to their
    batch positions (views, gathers and the plan's rest alike)."""
    fields = [Field(2 * i, DataType.FLOAT32, "CDAB") for i in range(6)]
    fields += [Field(12 + i, DataType.UINT16, "ABCD") for i in range(5)]
    fields += [Field(17, DataType.INT16, "BADC"), Field(18, DataType.BOOL, bit=3)]
    registers = np.arange(1, 20, dtype=np.uint16) * 0x0101
    want = DecodePlan(fields, 19).decode(registers)
    positions = list(range(len(fields)))[::-1]
    got = AnswerDecoder(fields, 19, positions).decode(registers.astype("<u2"),
                                                      np.empty(len(fields)))
    assert np.array_equal(got[::-1], want, equal_nan=True)
    with pytest.raises(ValueError, match="positions"):
        AnswerDecoder(fields, 19, positions[1:])


@pytest.mark.parametrize("order", BYTE_ORDERS)
def test_numbers_back_to_back_decode_as_numbers_apart(order: str) -> None:
    """A block of float32 tags one after the other (read without gathering, one slice, when
    the words of each value stand in order) gives what the same tags one register apart
    (gathered) give, in every byte order."""
    values = [1.5, -2.25, float("inf"), 2.0**127, 0.0, -7.0]  # exact in float32
    registers: list[int] = []
    for v in values:
        registers += encode(v, DataType.FLOAT32, order)  # type: ignore[arg-type]
    spaced = [w for i in range(0, len(registers), 2) for w in (*registers[i:i + 2], 0)]
    back_to_back = DecodePlan([Field(2 * i, DataType.FLOAT32, order)  # type: ignore[arg-type]
                               for i in range(len(values))], len(registers))
    apart = DecodePlan([Field(3 * i, DataType.FLOAT32, order)  # type: ignore[arg-type]
                        for i in range(len(values))], len(spaced))
    word_swapped = order in ("CDAB", "DCBA")  # gathered: the words of each value reversed
    assert (back_to_back._groups[0].dense is None) == word_swapped
    assert apart._groups[0].dense is None
    assert back_to_back.decode(registers).tolist() == values
    assert apart.decode(spaced).tolist() == values
