"""The FINS driver against the simulated PLC on real sockets, over UDP and TCP: reads,
writes, node numbers, the handshake, and every fault (end codes, slow answers, garbage,
half frames, a PLC that stops)."""

from __future__ import annotations

import asyncio
import math
import struct
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from drivers.fins.driver import MAX_SILENT_REQUESTS, FinsDriver
from gateway.errors import ConnectionLost, DeviceUnreachable, DeviceWriteRefused
from gateway.types import Quality, SampleBatch
from hil.devices.fins_plc import PLC_TAGS, FinsPlcSimulator
from hil.process.injection_moulding import InjectionMouldingModel

MakeDriver = Callable[..., FinsDriver]
TRANSPORTS = ["udp", "tcp"]


def floats_low_first(*values: float) -> list[int]:
    out = []
    for value in values:
        high, low = struct.unpack(">HH", struct.pack(">f", value))
        out += [low, high]
    return out


async def read_all(driver: FinsDriver) -> dict[str, tuple[Any, int]]:
    """Tag name -> (value, quality) of one read of every poll group."""
    out = {}
    names = {100 + i: t.name for i, t in enumerate(driver.config.tags)}
    for group in driver.poll_groups():
        batch: SampleBatch = await driver.read(group)
        for tag_id, value, quality in zip(batch.tag_ids, batch.values, batch.quality,
                                          strict=True):
            out[names[int(tag_id)]] = (value, int(quality))
    return out


MIXED_TAGS = [
    {"name": "temp", "address": "D100", "type": "float32"},
    {"name": "count", "address": "D102", "type": "uint32"},
    {"name": "level", "address": "D104", "type": "int16"},
    {"name": "ratio_abcd", "address": "D105", "type": "float32", "byte_order": "ABCD"},
    {"name": "big", "address": "D107", "type": "uint64"},
    {"name": "running", "address": "CIO0.00", "type": "bool"},
    {"name": "fault", "address": "CIO0.15", "type": "bool"},
    {"name": "mode_bit", "address": "D104.02", "type": "bool"},
    {"name": "w_word", "address": "W10", "type": "uint16"},
    {"name": "h_word", "address": "H20", "type": "int32"},
    {"name": "a_word", "address": "A500", "type": "uint16"},
    {"name": "em", "address": "E2_5", "type": "float64"},
    {"name": "em_bit", "address": "E10_7.9", "type": "bool"},
    {"name": "recipe", "address": "D200", "type": "string", "length": 4},
]


def lay_out_mixed(sim: FinsPlcSimulator) -> None:
    sim.set_words("D100", floats_low_first(231.5))
    sim.set_words("D102", [0x5678, 0x1234])  # 0x12345678, low word first
    sim.set_words("D104", [(-7) & 0xFFFF])  # 0xFFF9: bit 2 is 0
    sim.set_words("D105", list(struct.unpack(">HH", struct.pack(">f", 0.25))))
    sim.set_words("D107", [0xFFFF] * 4)
    sim.set_words("CIO0", [0x8001])
    sim.set_words("W10", [54321])
    sim.set_words("H20", [0x0000, 0x8000])  # -2**31
    sim.set_words("A500", [7])
    lo = list(struct.unpack(">HHHH", struct.pack(">d", -1.125)))
    sim.set_words("E2_5", lo[::-1])
    sim.set_words("E10_7", [1 << 9])
    sim.set_words("D200", [0x4142, 0x4344, 0x4500, 0])


EXPECTED = {
    "temp": 231.5, "count": 0x12345678, "level": -7.0, "ratio_abcd": 0.25, "big": 2**64 - 1,
    "running": 1.0, "fault": 1.0, "mode_bit": 0.0, "w_word": 54321.0, "h_word": -(2.0**31),
    "a_word": 7.0, "em": -1.125, "em_bit": 1.0, "recipe": "ABCDE",
}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_every_area_and_type_reads_exactly(
    transport: str, plc: FinsPlcSimulator, make_driver: MakeDriver
) -> None:
    lay_out_mixed(plc)
    driver = make_driver(plc, MIXED_TAGS, transport=transport)
    await driver.connect()
    before = time.time_ns()
    got = await read_all(driver)
    assert {name: value for name, (value, _) in got.items()} == EXPECTED
    assert type(got["big"][0]) is int  # 64-bit integers exactly, never through float64
    assert all(q == Quality.GOOD for _, q in got.values())
    assert not driver.errors
    batch = await driver.read(driver.poll_groups()[0])
    assert (batch.ts_ns >= before).all() and (batch.ts_ns <= time.time_ns()).all()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_process_models_plc_reads_and_its_setpoints_write(
    transport: str, make_driver: MakeDriver
) -> None:
    model = InjectionMouldingModel(seed=4, time_scale=20.0)
    async with FinsPlcSimulator(model) as sim:
        driver = make_driver(sim, [*PLC_TAGS[:7], {**PLC_TAGS[7], "writable": True,
                                                    "range": [100, 350]}, *PLC_TAGS[8:]],
                             transport=transport)
        await driver.connect()
        got = await read_all(driver)
        assert all(q == Quality.GOOD for _, q in got.values()), got
        reading = model.state_at(time.time())
        assert got["state"][0] in {"CLOSING", "INJECTING", "HOLDING", "COOLING", "OPENING",
                                   "EJECTING"}
        assert abs(got["melt_temp"][0] - reading.melt_temp_c) < 5
        assert got["part_count"][0] == got["part_count_retained"][0]
        assert got["melt_setpoint"][0] == 230.0
        await driver.write(107, 241.5)
        assert model.melt_setpoint == 241.5
        got = await read_all(driver)
        assert got["melt_setpoint"][0] == 241.5
        # one poll of 16 numeric tags is one multiple memory area read; strings one more
        sim.commands.clear()
        await read_all(driver)
        assert sum(sim.commands.values()) == len(driver.poll_groups()) == 2


async def test_reads_are_planned_into_few_requests(
    plc: FinsPlcSimulator, make_driver: MakeDriver
) -> None:
    tags = [{"name": f"d{i}", "address": f"D{i * 2}", "type": "float32"} for i in range(600)]
    tags += [{"name": "b1", "address": "CIO5.01", "type": "bool"},
             {"name": "b2", "address": "W7.00", "type": "bool"}]
    driver = make_driver(plc, tags)
    # 999 words would split a float: 998; 202 words are too many for a multiple read
    assert [r.describe() for r in driver.requests] == [
        "D0..D997 (998 words)", "D998..D1199 (202 words)", "multiple read of 2 items"]
    plc.set_words("D0", floats_low_first(*(float(i) for i in range(600))))
    plc.set_words("CIO5", [0x0002])
    await driver.connect()
    plc.commands.clear()
    got = await read_all(driver)
    assert all(q == Quality.GOOD for _, q in got.values())
    assert sum(plc.commands.values()) == 3
    # each answer is decoded while the next read is out: every value lands at its tag
    assert [got[f"d{i}"][0] for i in range(600)] == [float(i) for i in range(600)]
    assert (got["b1"][0], got["b2"][0]) == (1.0, 0.0)
    plc.memory["D"] = plc.memory["D"][:1100]  # the second read now runs past this CPU's DM
    got = await read_all(driver)
    assert [got[f"d{i}"][1] for i in (0, 498, 499, 599)] == [0, 0, 2, 2]
    assert got["d498"][0] == 498.0 and math.isnan(got["d599"][0]) and got["b1"][0] == 1.0
    assert driver.errors == {"end_code_1104": 1}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_writes_words_bits_and_strings_as_sent(
    transport: str, plc: FinsPlcSimulator, make_driver: MakeDriver
) -> None:
    tags = [
        {"name": "sp", "address": "D10", "type": "float32", "writable": True, "range": [0, 500]},
        {"name": "big", "address": "D20", "type": "uint64", "writable": True,
         "range": [0, 2**64 - 1]},
        {"name": "valve", "address": "CIO3.07", "type": "bool", "writable": True},
        {"name": "em_flag", "address": "E3_1.15", "type": "bool", "writable": True},
        {"name": "recipe", "address": "D40", "type": "string", "length": 3, "writable": True},
        {"name": "level", "address": "W1", "type": "int16", "writable": True,
         "range": [-100, 100]},
    ]
    plc.set_words("CIO3", [0xFF7F])  # every bit but 7
    driver = make_driver(plc, tags, transport=transport)
    await driver.connect()
    await driver.write(100, 123.25)
    await driver.write(101, 2**64 - 2)
    await driver.write(102, True)
    await driver.write(103, 1)
    await driver.write(104, "AB1")
    await driver.write(105, -100)
    assert plc.words("D10", 2) == floats_low_first(123.25)
    assert plc.words("D20", 4) == [0xFFFE, 0xFFFF, 0xFFFF, 0xFFFF]
    assert plc.words("CIO3", 1) == [0xFFFF]  # one bit written, the other 15 untouched
    assert plc.bit("E3_1.15")
    assert plc.words("D40", 3) == [0x4142, 0x3100, 0]
    assert plc.words("W1", 1) == [0xFF9C]
    await driver.write(102, False)
    assert plc.words("CIO3", 1) == [0xFF7F]
    got = await read_all(driver)
    assert got["big"][0] == 2**64 - 2 and got["recipe"][0] == "AB1" and got["valve"][0] == 0


async def test_writes_the_plc_or_the_type_refuses_say_why(
    plc: FinsPlcSimulator, make_driver: MakeDriver
) -> None:
    tags = [{"name": "level", "address": "D0", "type": "int16", "writable": True,
             "range": [-1, 1]},
            {"name": "valve", "address": "CIO0.01", "type": "bool", "writable": True},
            {"name": "name", "address": "D5", "type": "string", "length": 1, "writable": True}]
    driver = make_driver(plc, tags)
    await driver.connect()
    plc.commands.clear()
    refused: list[tuple[int, float | str, str]] = [
        (100, 40000, "outside the int16 range"),
        (100, 1.5, "is not an integer"),
        (100, math.nan, "not a finite number"),
        (100, "7", "expects a number"),
        (101, 2, "is not a boolean"),
        (101, "on", "expects true or false"),
        (102, "ABC", "takes 3 bytes; the tag holds 2"),
        (102, 5, "expects a text"),
    ]
    for tag_id, value, words in refused:
        with pytest.raises(DeviceWriteRefused, match=words):
            await driver.write(tag_id, value)
    assert not plc.commands  # nothing was sent
    plc.end_code = 0x2101
    with pytest.raises(DeviceWriteRefused, match=r"end code 21 01 \(read-only"):
        await driver.write(100, 1)
    assert driver.errors["end_code_2101"] == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_end_code_makes_the_reads_tags_bad_and_says_why(
    transport: str, plc: FinsPlcSimulator, make_driver: MakeDriver,
    caplog: pytest.LogCaptureFixture
) -> None:
    lay_out_mixed(plc)
    driver = make_driver(plc, MIXED_TAGS[:3], transport=transport)
    await driver.connect()
    plc.end_code = 0x1103
    batch = await driver.read(driver.poll_groups()[0])
    assert (batch.quality == Quality.BAD).all() and np.isnan(batch.values).all()
    assert driver.errors == {"end_code_1103": 1}
    assert "the PLC answered end code 11 03 (address range error" in caplog.text
    plc.end_code = 0x0040  # a success with the PLC's non-fatal error flag: values are good
    batch = await driver.read(driver.poll_groups()[0])
    assert (batch.quality == Quality.GOOD).all() and batch.values[0] == 231.5
    assert driver.errors["plc_error_flag"] == 1
    plc.end_code = None
    assert (await driver.read(driver.poll_groups()[0])).quality.tolist() == [0, 0, 0]


async def test_an_address_the_cpu_does_not_have_is_its_end_code(
    plc: FinsPlcSimulator, make_driver: MakeDriver
) -> None:
    """A multiple read item out of range: the whole read is refused with 11 03."""
    driver = make_driver(plc, [{"name": "ok", "address": "D0", "type": "uint16"},
                               {"name": "far", "address": "D30000", "type": "uint16"}])
    await driver.connect()
    plc.memory["D"] = plc.memory["D"][:20000]  # a CPU with less DM
    batch = await driver.read(driver.poll_groups()[0])
    assert batch.quality.tolist() == [Quality.BAD, Quality.BAD]
    assert driver.errors["end_code_1103"] == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_slow_answers_time_out_and_a_silent_plc_is_presumed_gone(
    transport: str, plc: FinsPlcSimulator, make_driver: MakeDriver
) -> None:
    lay_out_mixed(plc)
    driver = make_driver(plc, MIXED_TAGS[:1], transport=transport, retries=1)
    await driver.connect()
    group = driver.poll_groups()[0]
    plc.response_delay = 0.5  # the timeout is 300 ms
    batch = await driver.read(group)
    assert batch.quality.tolist() == [Quality.BAD]
    assert driver.errors["timeout"] == 2  # the first try and its retry
    with pytest.raises(ConnectionLost, match="requests in a row got no answer"):
        await driver.read(group)
    assert driver.errors["connection_lost"] == 1
    plc.response_delay = 0.0
    await driver.connect()
    await asyncio.sleep(0.3)  # the late answers arrive and are dropped by their service id
    assert (await driver.read(group)).values.tolist() == [231.5]


async def test_garbage_over_udp_is_a_garbled_answer(
    plc: FinsPlcSimulator, make_driver: MakeDriver
) -> None:
    lay_out_mixed(plc)
    driver = make_driver(plc, MIXED_TAGS[:1])
    await driver.connect()
    plc.garbage = True
    batch = await driver.read(driver.poll_groups()[0])
    assert batch.quality.tolist() == [Quality.BAD]
    assert driver.errors["garbled"] == 1
    plc.garbage, plc.half_frames = False, True
    assert (await driver.read(driver.poll_groups()[0])).quality.tolist() == [Quality.BAD]
    assert driver.errors["garbled"] == 2
    plc.half_frames = False
    assert (await driver.read(driver.poll_groups()[0])).values.tolist() == [231.5]


@pytest.mark.parametrize("fault", ["garbage", "half_frames"])
async def test_garbage_or_half_a_frame_over_tcp_puts_the_stream_out_of_step(
    fault: str, plc: FinsPlcSimulator, make_driver: MakeDriver
) -> None:
    lay_out_mixed(plc)
    driver = make_driver(plc, MIXED_TAGS[:1], transport="tcp")
    await driver.connect()
    setattr(plc, fault, True)
    words = "no FINS/TCP message" if fault == "garbage" else "half an answer"
    with pytest.raises(ConnectionLost, match=words):
        await driver.read(driver.poll_groups()[0])
    assert driver.errors["connection_lost"] == 1
    setattr(plc, fault, False)
    await driver.connect()  # a new connection, a new handshake: in step again
    assert (await driver.read(driver.poll_groups()[0])).values.tolist() == [231.5]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_plc_that_stops_is_lost_and_found_again(
    transport: str, plc: FinsPlcSimulator, make_driver: MakeDriver
) -> None:
    lay_out_mixed(plc)
    driver = make_driver(plc, MIXED_TAGS[:1], transport=transport)
    await driver.connect()
    await plc.stop()
    with pytest.raises(ConnectionLost):
        for _ in range(MAX_SILENT_REQUESTS + 1):
            await driver.read(driver.poll_groups()[0])
    with pytest.raises(DeviceUnreachable):
        await driver.connect()
    await plc.start()
    await driver.connect()
    assert (await driver.read(driver.poll_groups()[0])).values.tolist() == [231.5]


async def test_tcp_handshake_assigns_each_client_its_node(
    plc: FinsPlcSimulator, make_driver: MakeDriver
) -> None:
    tags = MIXED_TAGS[:1]
    first, second = (make_driver(plc, tags, transport="tcp") for _ in range(2))
    await first.connect()
    await second.connect()
    assert sorted(plc.clients) == [239, 240]
    assert "from node 239" in first.route and "from node 240" in second.route
    asked = make_driver(plc, tags, transport="tcp", source_node=17)
    await asked.connect()
    assert asked.route == "network 0 node 1 unit 0 from node 17"
    taken = make_driver(plc, tags, transport="tcp", source_node=17)
    with pytest.raises(DeviceUnreachable, match="the node asked for is already connected"):
        await taken.connect()


async def test_udp_node_numbers_must_match_the_plcs(make_driver: MakeDriver) -> None:
    """Over UDP the PLC's node defaults to the last number of its IP address (127.0.0.1:
    node 1); a PLC set to node 5 does not answer frames for node 1."""
    async with FinsPlcSimulator(node=5, tcp=False) as sim:
        lost = make_driver(sim, MIXED_TAGS[:1])
        with pytest.raises(DeviceUnreachable, match="to node 1 from node 1: check the PLC's IP "
                                                    "address, its node number"):
            await lost.connect()
        assert sim.misaddressed == 1
        found = make_driver(sim, MIXED_TAGS[:1], node=5, source_node=25)
        await found.connect()
        assert found.route == "network 0 node 5 unit 0 from node 25"
        assert (await found.read(found.poll_groups()[0])).quality.tolist() == [Quality.GOOD]


async def test_identity_is_the_controller_model(
    plc: FinsPlcSimulator, make_driver: MakeDriver
) -> None:
    driver = make_driver(plc, MIXED_TAGS[:1], transport="tcp")
    await driver.connect()
    assert await driver.identity() == "CJ2M-CPU33, version 02.00, 32768 DM words, 1 EM bank"


async def test_nothing_listening_is_unreachable_with_a_reason(make_driver: MakeDriver) -> None:
    sim = FinsPlcSimulator()
    await sim.start()
    await sim.stop()  # its port is free again
    tcp = make_driver(sim, MIXED_TAGS[:1], transport="tcp")
    with pytest.raises(DeviceUnreachable, match="connection refused"):
        await tcp.connect()
    udp = make_driver(sim, MIXED_TAGS[:1])
    with pytest.raises(DeviceUnreachable, match=r"nothing listens on UDP port|no FINS answer"):
        await udp.connect()


async def test_a_refused_word_read_leaves_the_others_of_the_poll_good(
    plc: FinsPlcSimulator, make_driver: MakeDriver
) -> None:
    """The word reads of a poll are decoded together: the tags of one refused read stay
    bad (NaN), the other read's tags keep their values."""
    plc.memory["D"][0] = 0x1234
    driver = make_driver(plc, [{"name": "ok", "address": "D0", "type": "uint16"},
                               {"name": "far", "address": "D30000", "type": "float32"}],
                         multiple_read=False)
    await driver.connect()
    assert len(driver.requests) == 2
    plc.memory["D"] = plc.memory["D"][:20000]  # a CPU with less DM
    batch = await driver.read(driver.poll_groups()[0])
    assert batch.quality.tolist() == [Quality.GOOD, Quality.BAD]
    assert batch.values[0] == 0x1234 and np.isnan(batch.values[1])
    assert driver.errors["end_code_1103"] == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_read_refused_mid_poll_leaves_the_reads_after_it_good(
    transport: str, plc: FinsPlcSimulator, make_driver: MakeDriver
) -> None:
    """A poll's reads go as one run on the link; a refused answer in the middle ends the run
    there, is settled on its own (BAD, counted), and the reads after it go on: good, each
    tag timed by the moment its own read left."""
    plc.set_words("W10", [11])
    plc.set_words("E2_5", [25])
    plc.set_words("CIO0", [0x0002])
    driver = make_driver(plc, [{"name": "w", "address": "W10", "type": "uint16"},
                               {"name": "far", "address": "D30000", "type": "float32"},
                               {"name": "em", "address": "E2_5", "type": "uint16"},
                               {"name": "bit", "address": "CIO0.01", "type": "bool"}],
                         transport=transport, multiple_read=False)
    await driver.connect()
    assert [r.describe() for r in driver.requests] == [
        "CIO0.01..CIO0.01 (1 bits)", "W10..W10 (1 word)", "D30000..D30001 (2 words)",
        "E2_5..E2_5 (1 word)"]
    plc.memory["D"] = plc.memory["D"][:20000]  # a CPU with less DM
    for _ in range(2):  # the second poll: the run goes again from its first read
        batch = await driver.read(driver.poll_groups()[0])
        got = dict(zip(batch.tag_ids.tolist(), zip(batch.values.tolist(),
                                                   batch.quality.tolist(), strict=True),
                       strict=True))
        assert got[100] == (11.0, Quality.GOOD) and got[102] == (25.0, Quality.GOOD)
        assert got[103] == (1.0, Quality.GOOD)
        assert math.isnan(got[101][0]) and got[101][1] == Quality.BAD
        assert batch.ts_ns.tolist() == sorted(batch.ts_ns.tolist())  # in read order
        assert len(set(batch.ts_ns.tolist())) == 4  # each read its own time
    assert driver.errors == {"end_code_1103": 2}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_write_during_a_poll_goes_between_its_reads(
    transport: str, plc: FinsPlcSimulator, make_driver: MakeDriver
) -> None:
    """A poll's run of reads gives way to a command waiting for the link after the read on
    its way: a write does not wait for the whole poll."""
    driver = make_driver(plc, [{"name": "w", "address": "W10", "type": "uint16"},
                               {"name": "d", "address": "D0", "type": "uint16"},
                               {"name": "em", "address": "E2_5", "type": "uint16"}],
                         transport=transport, multiple_read=False, timeout="5s")
    await driver.connect()
    plc.response_delay = 0.05
    poll = asyncio.create_task(driver.read(driver.poll_groups()[0]))
    await asyncio.sleep(0)  # the poll's first read leaves
    await driver.write(101, 1234)
    assert not poll.done()  # the write went between the poll's reads
    plc.response_delay = 0.0
    batch = await poll
    assert batch.quality.tolist() == [Quality.GOOD] * 3
    assert plc.memory["D"][0] == 1234
    assert (await driver.read(driver.poll_groups()[0])).values.tolist()[1] == 1234.0


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_poll_cancelled_mid_run_leaves_the_link_usable(
    transport: str, plc: FinsPlcSimulator, make_driver: MakeDriver
) -> None:
    """A poll cancelled while one of its reads is on its way (a device stopped, a config
    change) leaves no command waiting: the next poll and a write go through, the late
    answer is dropped by its service id."""
    plc.set_words("W10", [11])
    driver = make_driver(plc, [{"name": "w", "address": "W10", "type": "uint16"},
                               {"name": "d", "address": "D0", "type": "uint16"}],
                         transport=transport, multiple_read=False)
    await driver.connect()
    plc.response_delay = 0.05
    poll = asyncio.create_task(driver.read(driver.poll_groups()[0]))
    await asyncio.sleep(0)  # its first read leaves
    poll.cancel()
    with pytest.raises(asyncio.CancelledError):
        await poll
    plc.response_delay = 0.0
    await driver.write(101, 7)
    batch = await driver.read(driver.poll_groups()[0])
    assert batch.values.tolist() == [11.0, 7.0] and batch.quality.tolist() == [0, 0]
    assert not driver.errors
