"""Golden cases decoded without a network: plan, answer from the memory image, decode.

Each case's memory image (cases/*/memory.json) answers the planned requests laid out as
the wire has them (a random read: word points first, then double words), and every tag
must decode to its expected value. Writes encode back to the memory's words.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mc_golden import CASE_NAMES, REQUEST_CASES, GoldenCase, Memory, load_case, same_value

from drivers.mc.codec import AnswerDecoder, DecodePlan, field_of, tag_words, words_of
from drivers.mc.config import McDeviceConfig, McTagConfig
from drivers.mc.devices import DEVICES
from drivers.mc.planner import BatchRead, RandomRead, ReadRequest, Segment, TagSpan, plan_reads
from drivers.modbus.codec import Field
from gateway.errors import RegisterDecodeError
from gateway.types import DataType


def spans_of(device: McDeviceConfig) -> list[TagSpan]:
    out = []
    for i, tag in enumerate(device.tags):
        where = tag.location(device.plc_series)
        start = where.number // 16 if where.device.bit else where.number
        out.append(TagSpan(i, where.device.name, start, tag.words, tag.name))
    return out


def plan(device: McDeviceConfig) -> list[ReadRequest]:
    return plan_reads(spans_of(device), max_batch_words=device.max_batch_words,
                      max_random_points=device.random_points,
                      random_reads=device.random_reads, max_gap=device.max_gap)


def segment_words(memory: Memory, seg: Segment) -> list[int]:
    """The words of ``seg`` as the CPU holds them (unset memory is 0)."""
    cells = memory.get(seg.device, {})
    if DEVICES[seg.device].bit:
        return [sum(cells.get(seg.head + 16 * w + b, 0) << b for b in range(16))
                for w in range(seg.words)]
    return [cells.get(seg.start + w, 0) for w in range(seg.words)]


def answer_data(memory: Memory, request: ReadRequest) -> bytes:
    """The data of the answer to ``request``, in wire order."""
    if isinstance(request, BatchRead):
        words = segment_words(memory, request.segment)
    else:
        word_points, dword_points, _ = request.layout
        words = []
        for name, start in word_points:
            words += segment_words(memory, Segment(name, start, 1))
        for name, start in dword_points:
            words += segment_words(memory, Segment(name, start, 2))
    return b"".join(w.to_bytes(2, "little") for w in words)


def decode_case(case: GoldenCase) -> dict[str, object]:
    device = case.device
    decoded: dict[str, object] = {}
    for request in plan(device):
        tags = [device.tags[m.index] for m in request.members]
        fields = [field_of(t, t.location(device.plc_series), m.offset)
                  for t, m in zip(tags, request.members, strict=True)]
        words = words_of(answer_data(case.memory, request))
        if isinstance(request, RandomRead):
            words = words[request.layout[2]]
        values = DecodePlan(fields, request.words).decode(words)
        decoded.update({t.name: v for t, v in zip(tags, values.tolist(), strict=True)})
    return decoded


@pytest.mark.parametrize("name", CASE_NAMES)
def test_golden_case_decodes(name: str) -> None:
    case = load_case(name)
    decoded = decode_case(case)
    wrong = {tag: (decoded[tag], want) for tag, want in case.expected.items()
             if not same_value(decoded[tag], want)}
    assert not wrong, f"{name}: decoded vs expected: {wrong}"


@pytest.mark.parametrize("name", REQUEST_CASES)
def test_golden_case_plans_its_requests(name: str) -> None:
    case = load_case(name)
    assert [r.describe() for r in plan(case.device)] == case.requests


@pytest.mark.parametrize("name", CASE_NAMES)
def test_golden_case_encodes_back_to_its_memory(name: str) -> None:
    """Every expected number or text written back gives the memory's words (bools are bits,
    written alone; NaN is never written)."""
    case = load_case(name)
    series = case.device.plc_series
    for tag in case.device.tags:
        want = case.expected[tag.name]
        where = tag.location(series)
        if tag.type is DataType.BOOL or where.device.bit:
            continue
        if isinstance(want, float) and math.isnan(want):
            continue
        cells = case.memory[where.device.name]
        stored = [cells.get(where.number + i, 0) for i in range(tag.words)]
        assert tag_words(tag, want) == stored, tag.name


def test_writes_are_never_rounded_or_wrapped() -> None:
    tag = McTagConfig(name="t", type=DataType.INT16, address="D0")
    with pytest.raises(ValueError, match="outside the int16 range"):
        tag_words(tag, 32768)
    with pytest.raises(ValueError, match="not an integer"):
        tag_words(tag, 1.5)
    with pytest.raises(ValueError, match="expects a number"):
        tag_words(tag, "12")
    text = McTagConfig(name="s", type=DataType.STRING, address="D0", length=2)
    with pytest.raises(ValueError, match="takes 5 bytes; the tag holds 4"):
        tag_words(text, "ABCDE")
    assert tag_words(text, "AB") == [0x4241, 0]


def test_an_odd_answer_length_is_a_decode_error() -> None:
    with pytest.raises(RegisterDecodeError, match="no whole words"):
        words_of(b"\x01\x02\x03")


_TYPES = [DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32, DataType.FLOAT32,
          DataType.INT64, DataType.UINT64, DataType.FLOAT64, DataType.BOOL]


@settings(deadline=None)  # timing is no verdict on a shared machine
@given(data=st.binary(min_size=0, max_size=64),
       types=st.lists(st.sampled_from(_TYPES), min_size=1, max_size=6),
       order=st.sampled_from(["low_first", "high_first"]))
def test_any_answer_decodes_or_is_refused(data: bytes, types: list[DataType], order: str) -> None:
    """Fuzz: whatever bytes come, decoding gives values or RegisterDecodeError, never
    another error."""
    tags, offset, fields = [], 0, []
    for i, type_ in enumerate(types):
        extra = {"word_order": order} if type_ not in (DataType.BOOL, DataType.INT16,
                                                       DataType.UINT16) else {}
        address = f"D{offset}.{i % 16:X}" if type_ is DataType.BOOL else f"D{offset}"
        tag = McTagConfig(name=f"t{i}", type=type_, address=address, **extra)  # type: ignore[arg-type]
        tags.append(tag)
        fields.append(field_of(tag, tag.location("q"), offset))
        offset += tag.words
    try:
        words = words_of(data)
        values = DecodePlan(fields, offset).decode(words)
    except RegisterDecodeError:
        return
    assert len(values) == len(types)
    assert len(data) == 2 * offset


@settings(deadline=None)  # timing is no verdict on a shared machine
@given(st.integers(-(2**31), 2**31 - 1))
def test_int32_low_first_is_melsec_order(value: int) -> None:
    """D0 holds the low word, D1 the high word (checked with int.to_bytes, not the codec)."""
    tag = McTagConfig(name="t", type=DataType.INT32, address="D0")
    raw = value.to_bytes(4, "little", signed=True)
    assert tag_words(tag, value) == [int.from_bytes(raw[:2], "little"),
                                     int.from_bytes(raw[2:], "little")]
    decoded = DecodePlan([field_of(tag, tag.location("q"), 0)], 2).decode(words_of(raw))
    assert decoded[0] == value


def test_float32_low_first_known_pattern() -> None:
    """123.456 is 42F6E979H: D0 = E979H, D1 = 42F6H (Telegraf's CDAB test vector)."""
    tag = McTagConfig(name="t", type=DataType.FLOAT32, address="D0")
    assert tag_words(tag, 123.456) == [0xE979, 0x42F6]
    decoded = DecodePlan([field_of(tag, tag.location("q"), 0)], 2).decode(
        np.array([0xE979, 0x42F6], dtype=np.uint16))
    assert decoded[0] == np.float32(123.456)


_FIELD_TYPES = [DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32,
                DataType.FLOAT32, DataType.INT64, DataType.UINT64, DataType.FLOAT64,
                DataType.BOOL, DataType.STRING]
_WIDTH = {DataType.BOOL: 1, DataType.STRING: 3, DataType.INT16: 1, DataType.UINT16: 1,
          DataType.INT32: 2, DataType.UINT32: 2, DataType.FLOAT32: 2, DataType.INT64: 4,
          DataType.UINT64: 4, DataType.FLOAT64: 4}


@settings(deadline=None)  # timing is no verdict on a shared machine
@given(layout=st.lists(st.tuples(st.sampled_from(_FIELD_TYPES), st.integers(0, 40),
                                 st.sampled_from(["CDAB", "ABCD"]), st.integers(0, 15)),
                       min_size=1, max_size=30),
       banks=st.lists(st.tuples(st.sampled_from(_FIELD_TYPES[:8]), st.integers(0, 20),
                                st.integers(2, 8), st.integers(0, 3)), max_size=3),
       data=st.data())
def test_the_fast_decoder_gives_what_the_shared_plan_gives(
        layout: list[tuple[DataType, int, str, int]],
        banks: list[tuple[DataType, int, int, int]], data: st.DataObject) -> None:
    """AnswerDecoder's strided views (numbers in MELSEC's order) and the shared DecodePlan
    decode any layout of any words to the same values: NaN patterns, exact 64-bit ints,
    overlapping and interleaved fields included."""
    fields = []
    for type_, offset, order, bit in layout:
        if type_ is DataType.BOOL:
            fields.append(Field(offset, type_, "ABCD", bit=bit))
        elif type_ is DataType.STRING:
            fields.append(Field(offset, type_, "BADC", length=_WIDTH[type_]))
        else:
            fields.append(Field(offset, type_, order))  # type: ignore[arg-type]
    for type_, start, n, spacing in banks:  # evenly spaced tags, as PLC programs keep them
        fields += [Field(start + k * (_WIDTH[type_] + spacing), type_, "CDAB")
                   for k in range(n)]
    count = max(f.offset + f.words for f in fields)
    words = np.array(data.draw(st.lists(st.integers(0, 0xFFFF), min_size=count,
                                        max_size=count)), dtype="<u2")
    objects = any(f.type.is_object for f in fields)
    fast = AnswerDecoder(fields, count).decode(
        words, np.empty(len(fields), dtype=object if objects else np.float64))
    shared = DecodePlan(fields, count).decode(words)
    for got, want in zip(fast.tolist(), shared.tolist(), strict=True):
        if isinstance(want, float) and math.isnan(want):
            assert isinstance(got, float) and math.isnan(got)
        else:
            assert got == want and type(got) is type(want)


def test_evenly_spaced_numbers_take_the_fast_path() -> None:
    """A bank of float32 tags back to back is one strided view, not a gather."""
    fields = [Field(2 * i, DataType.FLOAT32, "CDAB") for i in range(480)]
    decoder = AnswerDecoder(fields, 960)
    assert len(decoder._runs) == 1 and decoder._rest is None
    words = np.frombuffer(np.arange(480, dtype="<f4").tobytes(), "<u2")
    assert decoder.decode(words, np.empty(480)).tolist() == list(range(480))
