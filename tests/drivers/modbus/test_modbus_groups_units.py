"""Poll groups, several unit ids per connection with per-unit backoff, retries, bit and
string tags, clamp and FC15/FC16 writes: the TCP driver against a real pymodbus server."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from pymodbus.constants import ExcCodes

from drivers.modbus import driver as driver_module
from drivers.modbus.codec import encode, encode_string
from drivers.modbus.driver import UNIT_FAILURES_BEFORE_BACKOFF, ModbusDriver
from gateway.types import DataType, Quality, SampleBatch
from tests.waiting import until

StartSim = Callable[..., Any]
MakeDriver = Callable[..., ModbusDriver]


def device(port: int, tags: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "name": "meter-1",
        "protocol": "modbus_tcp",
        "host": "127.0.0.1",
        "port": port,
        "timeout": 0.3,
        "tags": tags,
        **extra,
    }


def by_name(driver: ModbusDriver, batch: SampleBatch) -> dict[str, tuple[Any, int]]:
    names = {i: t.name for i, t in zip(driver.tag_ids, driver.config.tags, strict=True)}
    return {
        names[int(t)]: (v, int(q))
        for t, v, q in zip(batch.tag_ids, batch.values, batch.quality, strict=True)
    }


def backoff_over(driver: ModbusDriver, unit: int) -> bool:
    """The unit's backoff has run out: the next read asks it again."""
    return driver.units[unit].skip_until <= asyncio.get_running_loop().time()


async def read_group(driver: ModbusDriver, name: str) -> SampleBatch:
    group = next(g for g in driver.poll_groups() if g.name == name)
    return await driver.read(group)


MEMORY = {"holding": {0: [1, 2, 3, 4, 5, 6, 7, 8]}, "input": {0: [10, 20, 30, 40]}}
UNIT2 = {"holding": {0: [201, 202, 203, 204]}, "input": {0: [210, 220]}}
UNIT3 = {"holding": {0: [301, 302]}}


# -- poll groups ---------------------------------------------------------------------------


async def test_each_poll_group_reads_only_its_tags_at_its_interval(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim = await modbus_sim(MEMORY)
    tags = [
        {"name": "a", "type": "uint16", "address": 0},
        {"name": "fast_1", "type": "uint16", "address": 1, "poll_group": "fast"},
        {"name": "slow_1", "type": "uint16", "table": "input", "address": 3, "poll_group": "slow"},
        {"name": "fast_2", "type": "uint16", "address": 2, "poll_group": "fast"},
    ]
    groups = [{"name": "fast", "interval": "100ms"}, {"name": "slow", "interval": "10s"}]
    driver = make_driver(device(sim.port, tags, poll_interval=2, poll_groups=groups))
    assert [(g.name, g.interval, g.tag_ids) for g in driver.poll_groups()] == [
        ("default", 2.0, (100,)),
        ("fast", 0.1, (101, 103)),
        ("slow", 10.0, (102,)),
    ]
    await driver.connect()
    before = sim.requests
    got = by_name(driver, await read_group(driver, "fast"))
    assert got == {"fast_1": (2.0, Quality.GOOD), "fast_2": (3.0, Quality.GOOD)}
    assert sim.requests - before == 1  # addresses 1..2 in one request
    assert by_name(driver, await read_group(driver, "slow")) == {"slow_1": (40.0, Quality.GOOD)}


def test_a_group_without_tags_is_not_polled(make_driver: MakeDriver) -> None:
    tags = [{"name": "a", "type": "uint16", "address": 0, "poll_group": "fast"}]
    groups = [{"name": "fast", "interval": 0.1}, {"name": "idle", "interval": 1}]
    driver = make_driver(device(502, tags, poll_groups=groups))
    assert [g.name for g in driver.poll_groups()] == ["fast"]


# -- several unit ids ------------------------------------------------------------------------

UNIT_TAGS = [
    {"name": "u1_a", "type": "uint16", "address": 0},
    {"name": "u2_a", "type": "uint16", "address": 0, "unit_id": 2},
    {"name": "u2_in", "type": "uint16", "table": "input", "address": 1, "unit_id": 2},
    {"name": "u1_b", "type": "uint16", "address": 1},
    {"name": "u3_a", "type": "uint16", "address": 1, "unit_id": 3},
]


async def test_requests_are_planned_per_unit_and_table(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim = await modbus_sim(MEMORY, units={2: UNIT2, 3: UNIT3})
    driver = make_driver(device(sim.port, UNIT_TAGS))
    assert [(r.unit, r.describe()) for r in driver.requests] == [
        (1, "holding 0..1 (2 registers)"),
        (2, "holding 0..0 (1 register)"),
        (2, "input 1..1 (1 register)"),
        (3, "holding 1..1 (1 register)"),
    ]
    await driver.connect()
    (group,) = driver.poll_groups()
    got = by_name(driver, await driver.read(group))
    assert got == {
        "u1_a": (1.0, Quality.GOOD),
        "u1_b": (2.0, Quality.GOOD),
        "u2_a": (201.0, Quality.GOOD),
        "u2_in": (220.0, Quality.GOOD),
        "u3_a": (302.0, Quality.GOOD),
    }
    assert [unit for unit, _ in sim.log] == [1, 2, 2, 3]


async def test_a_failing_unit_is_backed_off_without_holding_up_the_others(
    modbus_sim: StartSim, make_driver: MakeDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(driver_module, "UNIT_BACKOFF_INITIAL", 0.4)
    sim = await modbus_sim(MEMORY, units={2: UNIT2, 3: UNIT3})
    sim.faults.unit_exception[2] = ExcCodes.GATEWAY_NO_RESPONSE  # exception 11
    driver = make_driver(device(sim.port, UNIT_TAGS))
    await driver.connect()
    (group,) = driver.poll_groups()

    # two requests per poll for unit 2: backed off after the 3rd failure, in the 2nd poll
    for _ in range(2):
        got = by_name(driver, await driver.read(group))
        assert got["u1_a"] == (1.0, Quality.GOOD) and got["u3_a"] == (302.0, Quality.GOOD)
        assert all(math.isnan(got[n][0]) and got[n][1] == Quality.BAD for n in ("u2_a", "u2_in"))
    assert driver.units[2].errors["exception_11"] == UNIT_FAILURES_BEFORE_BACKOFF
    assert driver.errors["unit_backoff"] == 1
    assert driver.units[1].errors == {} and driver.units[3].errors == {}

    asked = sum(1 for unit, _ in sim.log if unit == 2)
    got = by_name(driver, await driver.read(group))
    assert sum(1 for unit, _ in sim.log if unit == 2) == asked  # skipped: not asked at all
    assert got["u2_a"][1] == Quality.BAD and got["u1_b"] == (2.0, Quality.GOOD)
    assert driver.units[2].errors["skipped"] == 3  # 1 in the 2nd poll, 2 in this one

    del sim.faults.unit_exception[2]
    await until(lambda: backoff_over(driver, 2), "unit 2's backoff over")  # probed again
    got = by_name(driver, await driver.read(group))
    assert got["u2_a"] == (201.0, Quality.GOOD) and got["u2_in"] == (220.0, Quality.GOOD)
    assert driver.units[2].failures == 0
    assert driver.connected


async def test_a_unit_that_fails_again_after_its_backoff_waits_longer(
    modbus_sim: StartSim, make_driver: MakeDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(driver_module, "UNIT_BACKOFF_INITIAL", 0.2)
    sim = await modbus_sim(MEMORY, units={2: UNIT2})
    sim.faults.unit_exception[2] = ExcCodes.GATEWAY_PATH_UNAVIABLE  # exception 10
    driver = make_driver(device(sim.port, [UNIT_TAGS[0], UNIT_TAGS[1]]))
    await driver.connect()
    (group,) = driver.poll_groups()
    for _ in range(UNIT_FAILURES_BEFORE_BACKOFF):
        await driver.read(group)
    await until(lambda: backoff_over(driver, 2), "unit 2's first backoff over")
    await driver.read(group)  # the probe fails: backed off again at once, for longer
    assert driver.errors["unit_backoff"] == 2
    assert driver.units[2].backoff.attempts == 2
    assert driver.units[2].errors["exception_10"] == UNIT_FAILURES_BEFORE_BACKOFF + 1


async def test_illegal_address_does_not_back_a_unit_off(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim = await modbus_sim(MEMORY)
    tags = [{"name": "a", "type": "uint16", "address": 0},
            {"name": "hole", "type": "uint16", "address": 50}]  # fmt: skip
    driver = make_driver(device(sim.port, tags))
    await driver.connect()
    (group,) = driver.poll_groups()
    for _ in range(UNIT_FAILURES_BEFORE_BACKOFF + 1):
        got = by_name(driver, await driver.read(group))
    assert got["a"] == (1.0, Quality.GOOD)
    assert driver.errors == {"exception_2": UNIT_FAILURES_BEFORE_BACKOFF + 1}


# -- retries -------------------------------------------------------------------------------


async def test_retries_resend_a_request_the_device_was_too_busy_for(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim = await modbus_sim(MEMORY)
    driver = make_driver(device(sim.port, [UNIT_TAGS[0]], retries=2))
    await driver.connect()
    sim.faults.exception[("holding", 0)] = ExcCodes.DEVICE_BUSY
    before = sim.requests
    (group,) = driver.poll_groups()
    got = by_name(driver, await driver.read(group))
    assert math.isnan(got["u1_a"][0]) and got["u1_a"][1] == Quality.BAD
    assert sim.requests - before == 3  # the request and 2 retries
    assert driver.errors == {"exception_6": 3}

    sim.faults.exception[("holding", 0)] = ExcCodes.ILLEGAL_ADDRESS  # not worth a retry
    before = sim.requests
    await driver.read(group)
    assert sim.requests - before == 1


# -- bit, string and clamp -------------------------------------------------------------------

TYPE_MEMORY = {
    "holding": {
        0: [0b1000_0000_0000_0101, *encode_string("SN-0042 ", 4), 0x0102, 0x4142, 0x0043],
        20: [*encode(-5, DataType.INT16), *encode(1200, DataType.INT16), 50],
    }
}
TYPE_TAGS = [
    {"name": "bit0", "type": "bool", "address": 0, "bit": 0},
    {"name": "bit1", "type": "bool", "address": 0, "bit": 1},
    {"name": "bit15", "type": "bool", "address": 0, "bit": 15},
    {"name": "serial", "type": "string", "address": 1, "length": 4},
    {"name": "swapped_bit9", "type": "bool", "address": 5, "bit": 9, "byte_order": "BADC"},
    {"name": "text_badc", "type": "string", "address": 6, "length": 2, "byte_order": "BADC"},
    {"name": "low", "type": "int16", "address": 20, "clamp": [0, 100]},
    {"name": "high", "type": "int16", "address": 21, "scale": 0.1, "offset": 1, "clamp": [0, 100]},
    {"name": "inside", "type": "int16", "address": 22, "clamp": [0, 100]},
]


async def test_bits_strings_and_clamp_read_through_the_driver(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim = await modbus_sim(TYPE_MEMORY)
    driver = make_driver(device(sim.port, TYPE_TAGS))
    assert [g.name for g in driver.poll_groups()] == ["default", "default/strings"]
    await driver.connect()
    numbers = await read_group(driver, "default")
    assert numbers.values.dtype == np.float64
    got = by_name(driver, numbers)
    assert got["bit0"] == (1.0, Quality.GOOD)
    assert got["bit1"] == (0.0, Quality.GOOD)
    assert got["bit15"] == (1.0, Quality.GOOD)
    assert got["swapped_bit9"] == (1.0, Quality.GOOD)  # 0x0102 byte-swapped is 0x0201
    # clamped in published units (raw * scale + offset), flagged UNCERTAIN
    assert got["low"] == (0.0, Quality.UNCERTAIN)
    assert got["high"] == (pytest.approx((100 - 1) / 0.1), Quality.UNCERTAIN)
    assert got["inside"] == (50.0, Quality.GOOD)

    strings = await read_group(driver, "default/strings")
    assert strings.values.dtype == object
    assert by_name(driver, strings) == {
        "serial": ("SN-0042", Quality.GOOD),
        "text_badc": ("BAC", Quality.GOOD),  # 0x4142 0x0043 read low byte first
    }


async def test_a_failed_string_read_is_bad_with_no_value(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim = await modbus_sim(TYPE_MEMORY)
    sim.faults.exception[("holding", 1)] = ExcCodes.DEVICE_FAILURE
    driver = make_driver(device(sim.port, TYPE_TAGS))
    await driver.connect()
    got = by_name(driver, await read_group(driver, "default/strings"))
    assert got["serial"] == (None, Quality.BAD)
    assert got["text_badc"] == ("BAC", Quality.GOOD)


# -- writes ------------------------------------------------------------------------------------

WRITE_TAGS = [
    {"name": "label", "type": "string", "address": 0, "length": 3, "writable": True},
    {"name": "setpoint", "type": "uint16", "address": 3, "writable": True, "range": [0, 9]},
    {"name": "relay", "type": "bool", "table": "coil", "address": 2, "writable": True},
]
WRITE_MEMORY = {"holding": {0: [0] * 4}, "coil": {0: [0] * 8}}


async def test_string_writes_round_trip_and_too_long_is_rejected(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    from gateway.errors import DeviceWriteRefused

    sim = await modbus_sim(WRITE_MEMORY)
    driver = make_driver(device(sim.port, WRITE_TAGS))
    await driver.connect()
    await driver.write(100, "P-7")
    assert await sim.read("holding", 0, 3) == encode_string("P-7", 3)
    assert by_name(driver, await read_group(driver, "default/strings")) == {
        "label": ("P-7", Quality.GOOD)
    }
    before = sim.requests
    with pytest.raises(DeviceWriteRefused, match="takes 7 bytes; the tag holds 6"):
        await driver.write(100, "TOOLONG")
    with pytest.raises(DeviceWriteRefused, match="expects a text"):
        await driver.write(100, 5)
    assert sim.requests == before


@pytest.mark.parametrize(("multiple", "codes"), [(False, [6, 5]), (True, [16, 15])])
async def test_write_multiple_uses_fc15_and_fc16_for_single_values(
    multiple: bool, codes: list[int], modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim = await modbus_sim(WRITE_MEMORY)
    driver = make_driver(device(sim.port, WRITE_TAGS, write_multiple=multiple))
    await driver.connect()
    sim.log.clear()
    await driver.write(101, 7)
    await driver.write(102, True)
    assert [fc for _, fc in sim.log] == codes
    assert await sim.read("holding", 3, 1) == [7]
    assert (await sim.read("coil", 0, 8))[2] is True


async def test_each_request_of_a_unit_is_stamped_after_the_previous_answer(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim = await modbus_sim(MEMORY, units={2: UNIT2})
    sim.faults.delay[("holding", 0)] = 0.05
    driver = make_driver(device(sim.port, UNIT_TAGS[:2]))
    await driver.connect()
    (group,) = driver.poll_groups()
    batch = await driver.read(group)
    assert (batch.quality == Quality.GOOD).all()
    u1, u2 = (int(batch.ts_ns[batch.tag_ids == tag_id][0]) for tag_id in driver.tag_ids[:2])
    assert u2 - u1 >= 50_000_000  # unit 2 asked after unit 1's answer, 50 ms late, came
    assert sim.max_in_flight == 1  # one request after the other, not interleaved
