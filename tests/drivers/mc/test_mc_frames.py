"""3E/4E frames: the manual's example, a second opinion from plc-comm-slmp's encoder and
decoder (an independent implementation, test-only), and fuzzing of the answer checks."""

from __future__ import annotations

import contextlib

import pytest
import slmp.core as slmp_core  # plc-comm-slmp, the test extra's second opinion
from hypothesis import given, settings
from hypothesis import strategies as st
from slmp.constants import PLCSeries

from drivers.mc import frames
from drivers.mc.frames import DeviceRef, Route
from gateway.errors import McFrameError

D = 0xA8


def test_the_manuals_batch_read_example() -> None:
    """SLMP reference manual: batch read of D100..D107 in word units, 3E, Q device spec."""
    frame = frames.batch_read(Route(), 0x0010, DeviceRef(D, 100), 8)
    assert frame.hex(" ").upper() == (
        "50 00 00 FF FF 03 00 0C 00 10 00 01 04 00 00 64 00 00 A8 08 00")


def test_4e_frames_carry_the_serial_number() -> None:
    frame = frames.batch_read(Route(), 4, DeviceRef(D, 0), 1, serial=0x1234)
    assert frame[:6] == bytes.fromhex("5400 3412 0000")
    assert frame[6:] == frames.batch_read(Route(), 4, DeviceRef(D, 0), 1)[2:]


routes = st.builds(Route, st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFF),
                   st.integers(0, 255))
codes = st.sampled_from([0x91, 0xA9, 0x9C, 0x9D, 0x90, 0x92, 0xA0, 0xA8, 0xB4, 0xAF, 0xB0])


def _target(route: Route) -> object:
    return slmp_core.SlmpTarget(network=route.network, station=route.station,
                                module_io=route.module_io, multidrop=route.multidrop)


def _spec(code: int, number: int, long: bool) -> bytes:
    """plc-comm-slmp's device specification of a device given by code."""
    name = next(n for n, d in slmp_core.DEVICE_CODES.items() if d.code == code)
    ref = slmp_core.DeviceRef(name, number, "melsec:iq-r" if long else "melsec:qnu")
    series = PLCSeries.IQR if long else PLCSeries.QL
    return slmp_core.encode_device_spec(ref, series=series)


@settings(deadline=None)  # timing is no verdict on a shared machine
@given(route=routes, timer=st.integers(0, 0xFFFF), code=codes,
       number=st.integers(0, 0xFFFFFF), points=st.integers(1, 960), long=st.booleans(),
       bits=st.booleans(), serial=st.none() | st.integers(0, 0xFFFF))
def test_batch_read_matches_plc_comm_slmp(route: Route, timer: int, code: int, number: int,
                                          points: int, long: bool, bits: bool,
                                          serial: int | None) -> None:
    ours = frames.batch_read(route, timer, DeviceRef(code, number), points, bits=bits,
                             long=long, serial=serial)
    sub = (0x0002 if long else 0) | (1 if bits else 0)
    data = _spec(code, number, long) + points.to_bytes(2, "little")
    kind = slmp_core.FrameType.FRAME_3E if serial is None else slmp_core.FrameType.FRAME_4E
    theirs = slmp_core.encode_request(frame_type=kind, serial=serial or 0, target=_target(route),
                                      monitoring_timer=timer, command=0x0401, subcommand=sub,
                                      data=data)
    assert ours == theirs


@settings(deadline=None)  # timing is no verdict on a shared machine
@given(route=routes, words=st.lists(st.tuples(codes, st.integers(0, 0xFFFF)), max_size=20),
       dwords=st.lists(st.tuples(codes, st.integers(0, 0xFFFF)), max_size=20),
       long=st.booleans())
def test_random_read_matches_plc_comm_slmp(route: Route, words: list[tuple[int, int]],
                                           dwords: list[tuple[int, int]], long: bool) -> None:
    if not words and not dwords:
        return
    ours = frames.random_read(route, 0x10, [DeviceRef(*w) for w in words],
                              [DeviceRef(*d) for d in dwords], long=long)
    data = bytes((len(words), len(dwords))) + b"".join(
        _spec(c, n, long) for c, n in (*words, *dwords))
    theirs = slmp_core.encode_3e_request(target=_target(route), monitoring_timer=0x10,
                                         command=0x0403, subcommand=0x0002 if long else 0,
                                         data=data)
    assert ours == theirs


@settings(deadline=None)  # timing is no verdict on a shared machine
@given(values=st.lists(st.integers(0, 1), min_size=1, max_size=40))
def test_bit_packing_matches_plc_comm_slmp(values: list[int]) -> None:
    packed = frames.pack_bits(values)
    assert packed == slmp_core.pack_bit_values([bool(v) for v in values])
    assert frames.unpack_bits(packed, len(values)) == values
    assert [int(b) for b in slmp_core.unpack_bit_values(packed, len(values))] == values


@settings(deadline=None)  # timing is no verdict on a shared machine
@given(route=routes, end_code=st.integers(0, 0xFFFF), data=st.binary(max_size=40))
def test_answers_decode_as_plc_comm_slmp_decodes_them(route: Route, end_code: int,
                                                      data: bytes) -> None:
    frame = (b"\xd0\x00" + route.pack() + (len(data) + 2).to_bytes(2, "little")
             + end_code.to_bytes(2, "little") + data)
    ours = frames.parse_response(frame, "3e", route)
    theirs = slmp_core.decode_3e_response(frame)
    assert (ours.end_code, ours.data) == (theirs.end_code, theirs.data)
    assert ours.route == Route(theirs.target.network, theirs.target.station,
                               theirs.target.module_io, theirs.target.multidrop)


def test_an_error_answer_names_the_failed_command() -> None:
    route = Route()
    info = route.pack() + (0x0401).to_bytes(2, "little") + (0).to_bytes(2, "little")
    frame = b"\xd0\x00" + route.pack() + (11).to_bytes(2, "little") + b"\x56\xc0" + info
    answer = frames.parse_response(frame, "3e", route)
    assert (answer.end_code, answer.failed) == (0xC056, (0x0401, 0))


@pytest.mark.parametrize(("frame", "kind", "reason"), [
    (b"\x00\x00\x00\xff\xff\x03\x00\x02\x00\x00\x00", "garbled", "not an answer: starts 00 00"),
    (b"\xd0\x00\x00\xff\xff\x03\x00\x01\x00\x00", "garbled", "announcing 1 bytes"),
    (b"\xd0\x00\x00\xff\xff\x03\x00\x04\x00\x00\x00", "garbled", "an answer of 11 bytes "
                                                              "announcing 13"),
    (b"\xd0\x00\x01\xff\xff\x03\x00\x02\x00\x00\x00", "decode", "answer from network 1"),
    (b"\xd0\x00\x00\xff\xff\x03\x00\x00\xf0\x00\x00", "garbled", "announcing 61440 bytes"),
])
def test_answers_that_are_not_the_answer(frame: bytes, kind: str, reason: str) -> None:
    with pytest.raises(McFrameError, match=reason) as info:
        frames.parse_response(frame, "3e", Route())
    assert info.value.counter == kind


def test_a_4e_answer_to_another_request_is_refused() -> None:
    frame = b"\xd4\x00\x07\x00\x00\x00" + Route().pack() + b"\x02\x00\x00\x00"
    assert frames.parse_response(frame, "4e", Route(), 7).serial == 7
    with pytest.raises(McFrameError, match="answer to request 7, not to 8"):
        frames.parse_response(frame, "4e", Route(), 8)


@settings(deadline=None)  # timing is no verdict on a shared machine
@given(st.binary(max_size=64), st.sampled_from(["3e", "4e"]), st.none() | st.integers(0, 9))
def test_any_bytes_are_an_answer_or_a_frame_error(data: bytes, kind: str,
                                                  serial: int | None) -> None:
    """Fuzz: no input makes the answer checks fail with anything but McFrameError."""
    try:
        frames.parse_response(data, kind, Route(), serial)  # type: ignore[arg-type]
    except McFrameError as exc:
        assert exc.counter in ("garbled", "decode") and exc.reason
    size = frames.header_size(kind)  # type: ignore[arg-type]
    if len(data) >= size:
        with contextlib.suppress(McFrameError):
            frames.answer_length(data[:size], kind)  # type: ignore[arg-type]


@settings(deadline=None)  # timing is no verdict on a shared machine
@given(st.binary(max_size=20), st.integers(0, 40))
def test_any_bit_answer_unpacks_or_is_refused(data: bytes, count: int) -> None:
    try:
        bits = frames.unpack_bits(data, count)
    except McFrameError:
        return
    assert len(bits) == count and set(bits) <= {0, 1}
