"""The Modbus TCP driver against a real pymodbus server on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from modbus_golden import CASE_NAMES, load_case, same_value
from modbus_sim import ModbusSim, RawDevice, mbap_reply
from pymodbus.constants import ExcCodes

from drivers.modbus.codec import encode
from drivers.modbus.config import ModbusTcpDeviceConfig
from drivers.modbus.driver import MAX_SILENT_REQUESTS, ModbusTcpDriver
from drivers.modbus.pymodbus_adapter import BACKSTOP_SECONDS
from gateway.errors import ConnectionLost, DeviceUnreachable, DeviceWriteRefused, PlanError
from gateway.types import DataType, Quality, SampleBatch
from tests.waiting import until

StartSim = Callable[[dict[str, dict[int, list[int]]]], Any]
MakeDriver = Callable[..., ModbusTcpDriver]


def device(port: int, tags: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "name": "meter-1",
        "protocol": "modbus_tcp",
        "host": "127.0.0.1",
        "port": port,
        "timeout": 0.5,
        "tags": tags,
        **extra,
    }


def by_name(driver: ModbusTcpDriver, batch: SampleBatch) -> dict[str, tuple[float, int]]:
    """Tag name -> (value, quality): floats, exact ints for 64-bit tags, NaN when bad."""
    names = {
        tag_id: tag.name for tag_id, tag in zip(driver.tag_ids, driver.config.tags, strict=True)
    }
    return {
        names[int(t)]: (_number(v), int(q))
        for t, v, q in zip(batch.tag_ids, batch.values, batch.quality, strict=True)
    }


def _number(value: object) -> float:
    if type(value) is int:
        return value  # type: ignore[return-value]
    return math.nan if value is None else float(value)  # type: ignore[arg-type]


async def read_all(driver: ModbusTcpDriver) -> SampleBatch:
    (group,) = driver.poll_groups()
    return await driver.read(group)


# A device with two register blocks and a hole (10..19) between them.
HOLE_MEMORY = {
    "holding": {0: [1, 0x4049, 0x0FDB, 7, 8, 9, 10, 11, 12, 13], 20: [0xFFFF, 0xFFFE, 5]},
    "input": {0: [111, 222, 333]},
}
HOLE_TAGS = [
    {"name": "a", "type": "uint16", "address": 0},
    {"name": "pi", "type": "float32", "address": 1},
    {"name": "in_hole", "type": "uint16", "address": 12},
    {"name": "neg", "type": "int32", "address": 20},
    {"name": "inp", "type": "uint16", "table": "input", "address": 1},
]
GOOD_VALUES = {"a": 1.0, "pi": float(np.float32(math.pi)), "neg": -2.0, "inp": 222.0}


# -- reading ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", CASE_NAMES)
async def test_every_golden_case_reads_through_the_driver(
    name: str, modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    case = load_case(name)
    sim = await modbus_sim({table: {0: values} for table, values in case.tables.items()})
    driver = make_driver(case.device_at("127.0.0.1", sim.port))
    await driver.connect()
    before = time.time_ns()
    batch = await read_all(driver)
    after = time.time_ns()

    assert sorted(batch.tag_ids.tolist()) == sorted(driver.tag_ids)
    objects = any(tag.type.is_object for tag in driver.config.tags)
    assert batch.values.dtype == (object if objects else np.float64)
    assert (batch.quality == Quality.GOOD).all()
    assert ((batch.ts_ns >= before) & (batch.ts_ns <= after)).all()
    names = {i: t.name for i, t in zip(driver.tag_ids, driver.config.tags, strict=True)}
    columns = zip(batch.tag_ids, batch.values, batch.quality, strict=True)
    got = {names[int(t)]: (v, q) for t, v, q in columns}
    wrong = {
        tag: (got[tag][0], want.decoded)
        for tag, want in case.expected.items()
        if not same_value(got[tag][0], want.decoded)
    }
    assert not wrong
    assert not driver.errors


async def test_poll_group_is_all_tags_at_the_poll_interval(make_driver: MakeDriver) -> None:
    driver = make_driver(device(502, HOLE_TAGS, poll_interval="250ms"))
    (group,) = driver.poll_groups()
    assert group.name == "default"
    assert group.interval == 0.25
    assert group.tag_ids == (100, 101, 102, 103, 104)
    assert [r.describe() for r in driver.requests] == [
        "holding 0..2 (3 registers)",
        "holding 12..12 (1 register)",
        "holding 20..21 (2 registers)",
        "input 1..1 (1 register)",
    ]


async def test_missing_address_makes_only_its_request_bad(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim = await modbus_sim(HOLE_MEMORY)
    driver = make_driver(device(sim.port, HOLE_TAGS))
    await driver.connect()
    for polls in (1, 2):
        got = by_name(driver, await read_all(driver))
        value, quality = got.pop("in_hole")
        assert math.isnan(value) and quality == Quality.BAD
        assert got == {name: (v, Quality.GOOD) for name, v in GOOD_VALUES.items()}
        assert driver.errors == {"exception_2": polls}


async def test_device_busy_is_counted_by_exception_code(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim = await modbus_sim(HOLE_MEMORY)
    sim.faults.exception[("input", 1)] = ExcCodes.DEVICE_BUSY
    driver = make_driver(device(sim.port, [t for t in HOLE_TAGS if t["name"] != "in_hole"]))
    await driver.connect()
    got = by_name(driver, await read_all(driver))
    assert math.isnan(got["inp"][0]) and got["inp"][1] == Quality.BAD
    assert got["neg"] == (-2.0, Quality.GOOD)
    assert driver.errors == {"exception_6": 1}

    del sim.faults.exception[("input", 1)]
    got = by_name(driver, await read_all(driver))
    assert got["inp"] == (222.0, Quality.GOOD)
    assert driver.errors == {"exception_6": 1}


async def test_timeout_of_one_request_makes_only_its_tags_bad(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim = await modbus_sim(HOLE_MEMORY)
    # the late answers come after the test: the pymodbus server stamps a late answer
    # with the transaction id of the newest request, which no real device does
    sim.faults.delay[("holding", 20)] = 5.0
    tags = [t for t in HOLE_TAGS if t["name"] != "in_hole"]
    driver = make_driver(device(sim.port, tags, timeout=0.2))
    await driver.connect()
    # more polls than MAX_SILENT_REQUESTS: the answers in between keep the connection
    for polls in range(1, MAX_SILENT_REQUESTS + 2):
        got = by_name(driver, await read_all(driver))
        value, quality = got.pop("neg")
        assert math.isnan(value) and quality == Quality.BAD
        assert got == {n: (v, Quality.GOOD) for n, v in GOOD_VALUES.items() if n != "neg"}
        assert driver.errors == {"timeout": polls}
    assert driver.connected


async def test_a_silent_device_is_a_lost_connection(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim = await modbus_sim(HOLE_MEMORY)
    driver = make_driver(device(sim.port, [HOLE_TAGS[0], HOLE_TAGS[3]], timeout=0.1))
    await driver.connect()
    sim.faults.silence = 5.0
    batch = await read_all(driver)  # two requests, two timeouts
    assert (batch.quality == Quality.BAD).all()
    assert np.isnan(batch.values).all()
    with pytest.raises(ConnectionLost, match="presumed dead"):
        await read_all(driver)
    assert driver.errors == {"timeout": MAX_SILENT_REQUESTS, "connection_lost": 1}
    assert not driver.connected


async def test_short_answer_is_a_decode_error(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim = await modbus_sim(HOLE_MEMORY)
    sim.faults.short_answer.add("input")
    tags = [t for t in HOLE_TAGS if t["name"] != "in_hole"]
    driver = make_driver(device(sim.port, tags))
    await driver.connect()
    got = by_name(driver, await read_all(driver))
    assert math.isnan(got["inp"][0]) and got["inp"][1] == Quality.BAD
    assert got["pi"] == (GOOD_VALUES["pi"], Quality.GOOD)
    assert driver.errors == {"decode": 1}


async def test_answer_with_the_wrong_function_code_is_a_decode_error(
    make_driver: MakeDriver,
) -> None:
    # answers every request as if it were a read of input registers (FC4)
    fake = RawDevice(lambda request: mbap_reply(request, bytes([4, 2, 0x12, 0x34])))
    await fake.start()
    try:
        driver = make_driver(device(fake.port, [HOLE_TAGS[0]]))
        await driver.connect()
        got = by_name(driver, await read_all(driver))
        assert math.isnan(got["a"][0]) and got["a"][1] == Quality.BAD
        assert driver.errors == {"decode": 1}
        assert driver.connected
    finally:
        await fake.stop()


async def test_unparseable_answer_is_a_garbled_answer_and_a_lost_connection(
    make_driver: MakeDriver, caplog: pytest.LogCaptureFixture
) -> None:
    # a byte count of 255 with 2 bytes of data: the stream is out of step
    fake = RawDevice(lambda request: mbap_reply(request, bytes([3, 0xFF, 0x00, 0x01])))
    await fake.start()
    try:
        driver = make_driver(device(fake.port, [HOLE_TAGS[0]], timeout=3.0))
        await driver.connect()
        with pytest.raises(ConnectionLost, match="garbled answer that cannot be decoded"):
            await read_all(driver)
        # lost at once, not after the 3 s timeout: no timeout counted (the first would
        # only have made the tag BAD)
        assert driver.errors == {"garbled": 1, "connection_lost": 1}
        assert driver.units[1].errors["garbled"] == 1  # a bad frame of its unit
        # pymodbus raised it out of data_received: no traceback from asyncio for it
        assert not [r for r in caplog.records if r.name == "asyncio"]
    finally:
        await fake.stop()


async def test_each_request_is_stamped_when_it_was_sent(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim = await modbus_sim(HOLE_MEMORY)
    sim.faults.delay[("holding", 0)] = 0.1
    driver = make_driver(device(sim.port, [HOLE_TAGS[0], HOLE_TAGS[1], HOLE_TAGS[3]]))
    await driver.connect()
    batch = await read_all(driver)
    ts = dict(zip(batch.tag_ids.tolist(), batch.ts_ns.tolist(), strict=True))
    assert ts[100] == ts[101]  # one request
    assert ts[102] - ts[100] >= 90_000_000  # sent after the slow first answer


# -- connection -------------------------------------------------------------------------


async def test_server_going_away_raises_connection_lost_and_reconnect_works(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim: ModbusSim = await modbus_sim(HOLE_MEMORY)
    driver = make_driver(device(sim.port, [HOLE_TAGS[0]]))
    await driver.connect()
    assert by_name(driver, await read_all(driver)) == {"a": (1.0, Quality.GOOD)}

    await sim.stop()
    with pytest.raises(ConnectionLost):
        await read_all(driver)
    assert driver.errors["connection_lost"] == 1
    with pytest.raises(ConnectionLost):  # stays lost: pymodbus does not reconnect behind our back
        await read_all(driver)
    with pytest.raises(DeviceUnreachable, match="refused"):
        await driver.connect()

    await sim.start()
    with pytest.raises(ConnectionLost):  # still not reconnected until the runner says so
        await read_all(driver)
    await driver.connect()
    assert by_name(driver, await read_all(driver)) == {"a": (1.0, Quality.GOOD)}
    assert driver.errors == {"connection_lost": 1}


async def test_connection_dropped_during_a_request_is_noticed_at_once(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim: ModbusSim = await modbus_sim(HOLE_MEMORY)
    sim.faults.delay[("holding", 0)] = 5.0
    driver = make_driver(device(sim.port, [HOLE_TAGS[0]], timeout=3.0))
    await driver.connect()
    reading = asyncio.create_task(read_all(driver))
    await until(lambda: sim.in_flight, "the read at the device")
    await sim.stop()
    with pytest.raises(ConnectionLost, match=r"closed during read holding 0\.\.0"):
        await reading
    assert driver.errors == {"connection_lost": 1}  # not after the 3 s timeout: none counted


async def test_connect_to_a_closed_port_fails_fast(
    closed_port: int, make_driver: MakeDriver
) -> None:
    driver = make_driver(device(closed_port, [HOLE_TAGS[0]], timeout=5.0))
    # the refusal itself, not the 5 s timeout (which says "connect timed out")
    with pytest.raises(DeviceUnreachable, match=f"connection refused by 127.0.0.1:{closed_port}"):
        await driver.connect()
    assert not driver.connected


async def test_connect_timeout_is_the_configured_timeout(
    blackhole_port: int, make_driver: MakeDriver
) -> None:
    """The driver's own 0.3 s ends the connect, not pymodbus's backstop 1 s later (same
    message): the connect fails before a timer set halfway to the backstop. Timers fire in
    the order of their deadlines however loaded the box: an order, not a stopwatch."""
    driver = make_driver(device(blackhole_port, [HOLE_TAGS[0]], timeout=0.3))
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(0.3 + BACKSTOP_SECONDS / 2):  # TimeoutError: the backstop's
        with pytest.raises(DeviceUnreachable, match=r"within 0.3 s \(connect timed out\)"):
            await driver.connect()
    assert loop.time() - started > 0.25  # not before its timeout


async def test_connect_to_an_unknown_host_names_dns(make_driver: MakeDriver) -> None:
    cfg = device(502, [HOLE_TAGS[0]], timeout=3.0)
    cfg["host"] = "no-such-plc.invalid"
    driver = make_driver(cfg)
    with pytest.raises(DeviceUnreachable, match=r"cannot resolve host name 'no-such-plc\.invalid'"):
        await driver.connect()


async def test_read_before_connect_and_close_twice(make_driver: MakeDriver) -> None:
    driver = make_driver(device(502, [HOLE_TAGS[0]]))
    with pytest.raises(ConnectionLost, match="not connected"):
        await read_all(driver)
    await driver.close()
    await driver.close()
    assert not driver.errors


async def test_close_twice_after_connect(modbus_sim: StartSim, make_driver: MakeDriver) -> None:
    sim = await modbus_sim(HOLE_MEMORY)
    driver = make_driver(device(sim.port, [HOLE_TAGS[0]]))
    await driver.connect()
    await driver.close()
    await driver.close()
    assert not driver.connected
    with pytest.raises(ConnectionLost):
        await read_all(driver)


# -- writing ----------------------------------------------------------------------------

WRITE_MEMORY = {
    "holding": {0: [0] * 16, 40: [0] * 4},
    "input": {0: [5, 6]},
    "coil": {0: [0] * 16},
    "discrete": {0: [1] * 8},
}
WRITE_TAGS = [
    {"name": "setpoint", "type": "int16", "address": 0, "writable": True, "range": [-100, 100]},
    {
        "name": "flow_limit",
        "type": "float32",
        "address": 1,
        "byte_order": "CDAB",
        "writable": True,
        "range": [0, 1000],
    },
    {
        "name": "counter",
        "type": "uint64",
        "address": 3,
        "byte_order": "DCBA",
        "writable": True,
        "range": [0, 1.0e19],
    },
    {
        "name": "mode",
        "type": "uint16",
        "address": 7,
        "byte_order": "BADC",
        "writable": True,
        "range": [0, 65535],
    },
    {"name": "in_hole", "type": "uint16", "address": 30, "writable": True, "range": [0, 10]},
    {"name": "pump_on", "type": "bool", "table": "coil", "address": 5, "writable": True},
    {"name": "temperature", "type": "uint16", "table": "input", "address": 0},
    {"name": "door_closed", "type": "bool", "table": "discrete", "address": 3},
]
TAG_ID = {tag["name"]: 100 + i for i, tag in enumerate(WRITE_TAGS)}


async def test_writes_to_holding_registers_round_trip(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim = await modbus_sim(WRITE_MEMORY)
    driver = make_driver(device(sim.port, WRITE_TAGS))
    await driver.connect()
    await driver.write(TAG_ID["setpoint"], -42)  # FC6
    await driver.write(TAG_ID["flow_limit"], 512.25)  # FC16, word swapped
    await driver.write(TAG_ID["counter"], 2**40 + 3)  # FC16, little endian
    await driver.write(TAG_ID["mode"], 258.0)  # FC6, byte swapped; 258 = 0x0102
    assert await sim.read("holding", 0, 8) == [
        0xFFD6,
        *encode(512.25, DataType.FLOAT32, "CDAB"),
        *[0x0300, 0x0000, 0x0001, 0x0000],  # 0x0000_0100_0000_0003 in DCBA
        0x0201,
    ]
    got = by_name(driver, await read_all(driver))
    assert got["setpoint"] == (-42.0, Quality.GOOD)
    assert got["flow_limit"] == (512.25, Quality.GOOD)
    assert got["counter"] == (2**40 + 3, Quality.GOOD)
    assert type(got["counter"][0]) is int
    assert got["mode"] == (258.0, Quality.GOOD)


async def test_writes_to_coils_round_trip(modbus_sim: StartSim, make_driver: MakeDriver) -> None:
    sim = await modbus_sim(WRITE_MEMORY)
    driver = make_driver(device(sim.port, WRITE_TAGS))
    await driver.connect()
    await driver.write(TAG_ID["pump_on"], True)
    assert (await sim.read("coil", 0, 8))[:8] == [False] * 5 + [True] + [False] * 2
    assert by_name(driver, await read_all(driver))["pump_on"] == (1.0, Quality.GOOD)
    await driver.write(TAG_ID["pump_on"], 0.0)
    assert by_name(driver, await read_all(driver))["pump_on"] == (0.0, Quality.GOOD)


@pytest.mark.parametrize("tag", ["temperature", "door_closed"])
async def test_writes_to_read_only_tables_are_rejected(
    tag: str, modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim = await modbus_sim(WRITE_MEMORY)
    driver = make_driver(device(sim.port, WRITE_TAGS))
    await driver.connect()
    before = sim.requests
    with pytest.raises(DeviceWriteRefused, match="read-only"):
        await driver.write(TAG_ID[tag], 1)
    assert sim.requests == before  # nothing was sent
    assert await sim.read("input", 0, 2) == [5, 6]


async def test_write_answered_with_an_exception_is_rejected(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim = await modbus_sim(WRITE_MEMORY)
    driver = make_driver(device(sim.port, WRITE_TAGS))
    await driver.connect()
    with pytest.raises(DeviceWriteRefused, match=r"exception 2 \(illegal data address\)"):
        await driver.write(TAG_ID["in_hole"], 3)
    sim.faults.exception[("holding", 0)] = ExcCodes.DEVICE_FAILURE
    with pytest.raises(DeviceWriteRefused, match=r"exception 4 \(server device failure\)"):
        await driver.write(TAG_ID["setpoint"], 3)
    assert driver.errors == {"exception_2": 1, "exception_4": 1}


async def test_write_queued_behind_a_slow_read_keeps_its_whole_timeout(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim = await modbus_sim(WRITE_MEMORY)
    sim.faults.delay[("holding", 0)] = 0.6  # the poll (holding 0..2)
    sim.faults.delay[("holding", 1)] = 0.6  # the write (FC16)
    driver = make_driver(device(sim.port, WRITE_TAGS[:2], timeout=1.0))
    await driver.connect()
    reading = asyncio.create_task(read_all(driver))
    await until(lambda: sim.in_flight, "the poll at the device")
    # queued up to 0.6 s behind the poll, then 0.6 s: within 1 s only if its clock starts
    # when it is sent (each delay leaves 0.4 s to spare for a loaded box)
    await driver.write(TAG_ID["flow_limit"], 12.5)
    assert (await reading).quality.tolist() == [Quality.GOOD] * 2
    assert await sim.read("holding", 1, 2) == encode(12.5, DataType.FLOAT32, "CDAB")
    assert not driver.errors


async def test_close_ends_a_request_in_flight_at_once(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim = await modbus_sim(WRITE_MEMORY)
    sim.faults.delay[("holding", 0)] = 5.0
    driver = make_driver(device(sim.port, WRITE_TAGS[:2], timeout=3.0))
    await driver.connect()
    writing = asyncio.create_task(driver.write(TAG_ID["setpoint"], 9))
    await until(lambda: sim.in_flight, "the write at the device")
    await driver.close()
    # ended by the close, not the 3 s timeout (a DeviceWriteRefused "may or may not have been
    # written")
    with pytest.raises(ConnectionLost, match="closed during write setpoint"):
        await writing
    assert not driver.errors  # closing is not losing


async def test_write_without_answer_says_it_may_have_been_written(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim = await modbus_sim(WRITE_MEMORY)
    sim.faults.delay[("holding", 0)] = 0.5
    driver = make_driver(device(sim.port, WRITE_TAGS, timeout=0.1))
    await driver.connect()
    with pytest.raises(DeviceWriteRefused, match="may or may not have been written"):
        await driver.write(TAG_ID["setpoint"], 3)
    assert driver.errors == {"timeout": 1}


@pytest.mark.parametrize(
    ("tag", "value", "message"),
    [
        ("setpoint", 40000, "outside the int16 range"),
        ("setpoint", 1.5, "not an integer"),
        ("flow_limit", math.nan, "not a finite number"),
        ("pump_on", 2, "not a boolean"),
        ("setpoint", "12", "expects a number"),
    ],
)
async def test_values_that_cannot_be_written_exactly_are_rejected_before_sending(
    tag: str, value: Any, message: str, modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim = await modbus_sim(WRITE_MEMORY)
    driver = make_driver(device(sim.port, WRITE_TAGS))
    await driver.connect()
    before = sim.requests
    with pytest.raises(DeviceWriteRefused, match=message):
        await driver.write(TAG_ID[tag], value)
    assert sim.requests == before


async def test_write_to_an_unknown_tag_id_is_rejected(make_driver: MakeDriver) -> None:
    driver = make_driver(device(502, WRITE_TAGS))
    with pytest.raises(DeviceWriteRefused, match="tag id 7 is not a tag of device 'meter-1'"):
        await driver.write(7, 1)


async def test_write_when_not_connected_is_connection_lost(make_driver: MakeDriver) -> None:
    driver = make_driver(device(502, WRITE_TAGS))
    with pytest.raises(ConnectionLost):
        await driver.write(TAG_ID["setpoint"], 1)


# -- construction -----------------------------------------------------------------------


def test_tag_ids_must_match_the_tags() -> None:
    from drivers.modbus.config import ModbusTcpDeviceConfig

    cfg = ModbusTcpDeviceConfig.model_validate(device(502, HOLE_TAGS))
    with pytest.raises(ValueError, match="5 tags but 2 tag ids"):
        ModbusTcpDriver(cfg, [1, 2])


def test_tag_larger_than_max_request_registers_is_a_config_error(
    make_driver: MakeDriver,
) -> None:
    from pydantic import ValidationError

    with pytest.raises(
        ValidationError, match="tag 'pi' spans 2 registers, more than max_request_registers"
    ):
        make_driver(device(502, HOLE_TAGS, max_request_registers=1))
    # the planner still refuses it if a config bypassed validation
    unchecked = ModbusTcpDeviceConfig.model_validate(device(502, HOLE_TAGS)).model_copy(
        update={"max_request_registers": 1}
    )
    with pytest.raises(
        PlanError, match="tag 'pi' needs 2 registers but max_request_registers is 1"
    ):
        make_driver(unchecked)


async def test_other_poll_groups_read_their_own_tags(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    from drivers.base import PollGroup

    sim = await modbus_sim(HOLE_MEMORY)
    driver = make_driver(device(sim.port, HOLE_TAGS))
    await driver.connect()
    batch = await driver.read(PollGroup("fast", 0.1, (104, 100)))
    assert sorted(batch.tag_ids.tolist()) == [100, 104]
    assert sorted(batch.values.tolist()) == [1.0, 222.0]
    with pytest.raises(ValueError, match=r"tag ids \[999\]"):
        await driver.read(PollGroup("bad", 0.1, (999,)))
