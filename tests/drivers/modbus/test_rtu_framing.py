"""drivers/modbus/rtu_framing.py: RTU answers among a DTU's packets and garbage, and the
registration of a new connection; golden cases as data (framing_cases/), the CRC against
pymodbus's, and hypothesis fuzzing."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.framer.rtu import FramerRTU

from drivers.modbus.config import PacketConfig
from drivers.modbus.dtu import packets_of
from drivers.modbus.rtu_framing import (
    Expect,
    Packets,
    crc16,
    find_answer,
    identify,
    rtu_frame,
)

CASES = Path(__file__).parent / "framing_cases"
_ALL = {p.stem: yaml.safe_load(p.read_text()) for p in sorted(CASES.glob("*.yaml"))}
ANSWER_CASES = [name for name, case in _ALL.items() if "expect" in case]
REGISTRATION_CASES = [name for name, case in _ALL.items() if "registrations" in case]


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = _ALL[name]
    return data


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def replay(chunks: list[bytes], expect: Expect,
           packets: Packets) -> tuple[bytes | None, dict[str, int]]:
    """What the stream reader does: after each segment, step until it waits or answers."""
    buffer = bytearray()
    counts = {"garbage": 0, "packets_dropped": 0, "bad_crc": 0}
    for chunk in chunks:
        buffer += chunk
        while True:
            found = find_answer(buffer, expect, packets)
            if found.kind == "wait":
                break
            del buffer[:found.used]
            if found.kind == "answer":
                counts["packets_dropped"] += 1 if found.packets else 0
                return found.frame, counts
            if found.kind == "packet":
                counts["packets_dropped"] += 1
            else:
                counts["garbage"] += found.used
                counts["bad_crc"] += found.bad_crc
    return None, counts


@pytest.mark.parametrize("name", ANSWER_CASES)
def test_answer_case(name: str) -> None:
    case = _load(name)
    packets = packets_of(*(PacketConfig.model_validate(p) for p in case["packets"]))
    expect = Expect(**case["expect"])
    answer, counts = replay([_hex(c) for c in case["stream"]], expect, packets)
    assert (answer.hex(" ").upper() if answer else None) == case["answer"]
    assert counts == {k: case[k] for k in ("garbage", "packets_dropped", "bad_crc")}


@pytest.mark.parametrize("name", REGISTRATION_CASES)
def test_registration_case(name: str) -> None:
    case = _load(name)
    registrations: list[bytes | re.Pattern[bytes]] = []
    for raw in case["registrations"]:
        packet = PacketConfig.model_validate(raw)
        literal = packet.literal()
        registrations.append(literal if literal is not None else packet.compiled_pattern())
    data = bytearray()
    for chunk in case["stream"]:
        data += _hex(chunk)
        found = identify(data, registrations, 256)
        if found.kind != "wait":
            break
    expected = case["identified"]
    if isinstance(expected, str):
        assert found.kind == expected
    else:
        assert (found.kind, found.index, found.used) == ("match", expected["match"],
                                                         expected["used"])


def test_every_case_file_is_one_kind() -> None:
    assert len(ANSWER_CASES) + len(REGISTRATION_CASES) == len(_ALL) > 25


def test_the_cases_cover_what_the_issue_names() -> None:
    """Heartbeats inside answers, registration packets, garbage, half answers: each a case."""
    for name in ("heartbeat_inside_answer", "registration_with_every_answer",
                 "garbage_before_answer", "half_answer", "crc_error",
                 "heartbeat_pattern_inside_answer", "registration_unknown"):
        assert (CASES / f"{name}.yaml").is_file(), name


def test_final_identify_takes_the_best_match_or_none() -> None:
    regs: list[bytes | re.Pattern[bytes]] = [b"DTU1", b"DTU12"]
    assert identify(b"DTU1", regs, 256).kind == "wait"
    final = identify(b"DTU1", regs, 256, final=True)
    assert (final.kind, final.index) == ("match", 0)
    assert identify(b"DT", regs, 256, final=True).kind == "unknown"
    patterns: list[bytes | re.Pattern[bytes]] = [re.compile(rb"ID:\d{4}")]
    assert identify(b"ID:12", patterns, 256).kind == "wait"
    assert identify(b"x" * 300, patterns, 256).kind == "unknown"


# -- the CRC, second opinion ------------------------------------------------------------------

@given(st.binary(min_size=1, max_size=256))
def test_crc_agrees_with_pymodbus(body: bytes) -> None:
    ours = crc16(body).to_bytes(2, "little")
    theirs = FramerRTU.compute_CRC(body).to_bytes(2, "big")
    assert ours == theirs


def test_rtu_frame_of_a_known_request() -> None:
    # read holding 0..9 of unit 1: the example of the Modbus over serial line guide
    assert rtu_frame(1, bytes.fromhex("0300000002")).hex(" ") == "01 03 00 00 00 02 c4 0b"


# -- fuzzing ------------------------------------------------------------------------------

PACKETS = Packets([b"HB", b"DTU-0017"], [re.compile(rb"\$HB\d{3}#")])
_registers = st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=40)


def _answer(unit: int, registers: list[int]) -> bytes:
    data = b"".join(r.to_bytes(2, "big") for r in registers)
    return rtu_frame(unit, bytes((3, len(data))) + data)


@settings(max_examples=300, deadline=None)
@given(registers=_registers, unit=st.integers(1, 247), cuts=st.lists(st.integers(0, 300)),
       inserts=st.lists(st.tuples(st.integers(1, 300), st.sampled_from(
           [b"HB", b"DTU-0017", b"$HB123#"])), max_size=3))
def test_an_answer_with_packets_anywhere_inside_is_found_whole(
        registers: list[int], unit: int, cuts: list[int],
        inserts: list[tuple[int, bytes]]) -> None:
    """Literal packets anywhere, cut anywhere; a pattern packet anywhere but whole in one
    segment (the module docstring says why)."""
    answer = _answer(unit, registers)
    before: dict[int, bytes] = {}  # packets put before the answer's byte at that index
    for place, packet in inserts:
        where = max(1, min(place, len(answer) - 1))
        before[where] = before.get(where, b"") + packet
    stream = b""
    whole: list[range] = []  # where a pattern packet lies: no cut inside
    for i in range(len(answer)):
        for part in re.findall(rb"\$HB123#|DTU-0017|HB", before.get(i, b"")):
            if part.startswith(b"$"):
                whole.append(range(len(stream) + 1, len(stream) + len(part)))
            stream += part
        stream += answer[i:i + 1]
    cuts = [c for c in cuts if not any(c in r for r in whole)]
    edges = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    chunks = [bytes(stream[a:b]) for a, b in itertools.pairwise(edges)]
    found, _ = replay(chunks, Expect(unit, 3, 2 * len(registers)), PACKETS)
    assert found == answer


@settings(max_examples=400, deadline=None)
@given(noise=st.binary(max_size=300), unit=st.integers(0, 255),
       function=st.sampled_from([1, 2, 3, 4, 5, 6, 15, 16]),
       byte_count=st.one_of(st.none(), st.integers(0, 250)), cuts=st.lists(st.integers(0, 300)))
def test_garbage_never_raises(noise: bytes, unit: int, function: int, byte_count: int | None,
                              cuts: list[int]) -> None:
    edges = sorted({min(c, len(noise)) for c in cuts} | {0, len(noise)})
    chunks = [noise[a:b] for a, b in itertools.pairwise(edges)]
    found, counts = replay(chunks, Expect(unit, function, byte_count), PACKETS)
    assert found is None or crc16(found[:-2]) == int.from_bytes(found[-2:], "little")
    assert counts["garbage"] <= len(noise)


@settings(max_examples=200, deadline=None)
@given(registers=_registers, noise=st.binary(max_size=40))
def test_an_answer_after_garbage_is_found(registers: list[int], noise: bytes) -> None:
    answer = _answer(1, registers)
    found, _ = replay([noise + answer], Expect(1, 3, 2 * len(registers)), PACKETS)
    # garbage may by chance form a frame that checks out (1 in 65536 per place): then
    # that is taken, as a real RTU master would; otherwise the answer
    assert found == answer or (found is not None and found != answer and len(noise) >= 4)
