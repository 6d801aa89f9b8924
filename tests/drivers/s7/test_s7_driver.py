"""The S7 driver against the HIL S7 simulator over real ISO-on-TCP on loopback: golden
memory images, PDU negotiation, PUT/GET off, optimized and missing DBs, connection
types, faults, writes."""

from __future__ import annotations

import asyncio
import logging
import math
import struct
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from drivers.s7.config import S7DeviceConfig
from drivers.s7.driver import S7Driver
from gateway.errors import ConnectionLost, DeviceUnreachable, DeviceWriteRefused
from gateway.types import Quality, SampleBatch
from hil.devices.s7_plc import S7PlcSimulator
from tests.drivers.s7.s7_golden import VALUE_CASES, load_plan_case, load_value_case, same_value


def device(port: int, tags: list[dict[str, Any]], **more: Any) -> S7DeviceConfig:
    return S7DeviceConfig.model_validate({"name": "press", "protocol": "s7",
                                          "host": "127.0.0.1", "port": port, "timeout": 0.5,
                                          "tags": tags, **more})


def driver_of(config: S7DeviceConfig) -> S7Driver:
    return S7Driver(config, list(range(1, len(config.tags) + 1)))


async def read_all(driver: S7Driver) -> dict[str, tuple[Any, int, int]]:
    """tag name -> (value, quality, timestamp) of one poll of every group."""
    batches = [await driver.read(g) for g in driver.poll_groups()]
    names = {i + 1: t.name for i, t in enumerate(driver.config.tags)}
    out = {}
    for batch in batches:
        for i, tag_id in enumerate(batch.tag_ids.tolist()):
            out[names[tag_id]] = (batch.values[i], int(batch.quality[i]), int(batch.ts_ns[i]))
    return out


@pytest.fixture
async def plc() -> AsyncIterator[S7PlcSimulator]:
    async with S7PlcSimulator(port=0) as sim:
        yield sim


MACHINE = [{"name": "melt", "address": "DB1.DBD0:REAL"},
           {"name": "parts", "address": "DB1.DBD16:DINT"},
           {"name": "state", "address": "DB1.DB24:STRING[16]"},
           {"name": "setpoint", "address": "DB2.DBD0:REAL", "writable": True,
            "range": [100, 350]}]


@pytest.mark.parametrize("case_name", VALUE_CASES)
async def test_golden_memory_images_read_through_iso_on_tcp(case_name: str) -> None:
    case = load_value_case(case_name)
    async with S7PlcSimulator(port=0, use_model=False, memory=case.memory) as sim:
        driver = driver_of(case.device_at("127.0.0.1", sim.port))
        await driver.connect()
        try:
            # the second poll's answers have the learned shape: a poll of one request then
            # decodes its answer as it stands (no poll buffer): the same values
            polls = [await read_all(driver), await read_all(driver)]
        finally:
            await driver.close()
    for got in polls:
        for name, expected in case.expected.items():
            value, quality, _ = got[name]
            if expected.bad is not None:
                assert quality == Quality.BAD, name
                assert driver.errors["bad_value"] >= 1
            else:
                assert quality == Quality.GOOD, name
                assert same_value(value, expected.value), (name, value, expected.value)


async def test_the_pdu_is_negotiated_and_the_plan_follows_it() -> None:
    """The gateway asks 960 bytes; an S7-1200 grants 240, an S7-1500 960. The requests per
    poll are the planner's for the granted size (32 scattered tags: 2 requests either way
    with 20 items at most; their sizes differ)."""
    config, runs = load_plan_case("plan_scattered")
    for cpu, pdu in (("s7-1200", 240), ("s7-1500", 960)):
        async with S7PlcSimulator(port=0, cpu=cpu, memory={"DB1": bytes(1240),
                                                            "M": bytes(16)}) as sim:
            driver = driver_of(config.model_copy(update={"port": sim.port}))
            await driver.connect()
            assert driver.pdu_size == pdu
            before = sim.requests["read"]
            got = await read_all(driver)
            expected = next(r for r in runs if r["pdu_size"] == pdu and r["max_items"] == 20)
            assert sim.requests["read"] - before == len(expected["requests"]) == 2
            described = [[c.item.describe() for c in r.chunks] for r in driver.requests()]
            assert described == expected["requests"]
            assert all(q == Quality.GOOD for _, q, _ in got.values())
            await driver.close()


async def test_values_come_from_the_process_model_with_read_times(
    plc: S7PlcSimulator,
) -> None:
    driver = driver_of(device(plc.port, MACHINE))
    await driver.connect()
    t0 = asyncio.get_running_loop().time()
    import time
    before = time.time_ns()
    got = await read_all(driver)
    after = time.time_ns()
    reading = plc.model.state_at(time.time())
    assert got["melt"][1] == Quality.GOOD
    assert abs(got["melt"][0] - reading.melt_temp_c) < 1.0
    assert got["state"][0] in ("CLOSING", "INJECTING", "HOLDING", "COOLING", "OPENING",
                               "EJECTING")
    assert all(before <= ts <= after for _, _, ts in got.values())
    assert (await driver.identity()) == "CPU 1214C DC/DC/DC, 6ES7 214-1AG40-0XB0, firmware V4.5.2"
    del t0
    await driver.close()


async def test_put_get_off_makes_the_tags_bad_and_says_how_to_switch_it_on(
    plc: S7PlcSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    plc.put_get = False
    driver = driver_of(device(plc.port, MACHINE))
    await driver.connect()  # connecting and the SZL identification still work
    assert (await driver.identity()) is not None
    with caplog.at_level(logging.WARNING, logger="drivers.s7.driver"):
        got = await read_all(driver)
        await read_all(driver)
    assert all(q == Quality.BAD for _, q, _ in got.values())
    assert driver.errors["put_get_off"] == 4  # 2 groups, 2 polls
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # once per poll group's request, not per poll
    assert "enable 'Permit access with PUT/GET communication from remote partner'" in warnings[0]
    with pytest.raises(DeviceWriteRefused, match="PUT/GET"):
        await driver.write(4, 200.0)
    plc.put_get = True
    with caplog.at_level(logging.INFO, logger="drivers.s7.driver"):
        got = await read_all(driver)
    assert all(q == Quality.GOOD for _, q, _ in got.values())
    recovered = [r.getMessage() for r in caplog.records if "again" in r.getMessage()]
    assert len(recovered) == 2  # each request that failed as a whole says it reads again
    assert recovered[0].endswith("DB1 bytes 16..19 (4 bytes), DB2 bytes 0..3 (4 bytes) reads again")
    await driver.close()


async def test_an_optimized_db_and_a_missing_db_fail_alone_with_their_reasons(
    plc: S7PlcSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    plc.optimized_dbs.add(2)
    tags = [*MACHINE, {"name": "ghost", "address": "DB9.DBW0:INT"}]
    driver = driver_of(device(plc.port, tags))
    await driver.connect()
    with caplog.at_level(logging.WARNING, logger="drivers.s7.driver"):
        got = await read_all(driver)
    assert got["melt"][1] == got["parts"][1] == got["state"][1] == Quality.GOOD
    assert got["setpoint"][1] == got["ghost"][1] == Quality.BAD
    assert math.isnan(got["setpoint"][0]) and math.isnan(got["ghost"][0])
    assert driver.errors["address_out_of_range"] == 1 and driver.errors["object_missing"] == 1
    text = caplog.text
    assert "DB2 is shorter than that, or it has optimized block access" in text
    assert "untick 'Optimized block access'" in text
    assert "DB9 does not exist in the PLC" in text
    await driver.close()


async def test_the_default_op_connection_leaves_the_engineer_the_pg_connection() -> None:
    """An S7-300 with one PG connection: the gateway (OP by default) and the engineer's
    programming software (PG) both connect; a gateway configured as PG locks the engineer
    out, and one that finds the PG connection taken says so."""
    async with S7PlcSimulator(port=0, cpu="s7-300") as sim:
        gateway = driver_of(device(sim.port, MACHINE, slot=2))
        await gateway.connect()
        engineer = driver_of(device(sim.port, MACHINE, slot=2, connection_type="pg"))
        await engineer.connect()
        assert sim.connections == {"op": 1, "pg": 1}
        second_pg = driver_of(device(sim.port, MACHINE, slot=2, connection_type="pg"))
        with pytest.raises(DeviceUnreachable, match="all its PG connections are in use"):
            await second_pg.connect()
        await engineer.close()
        await gateway.close()
        await asyncio.sleep(0.05)
        assert sim.connections == {"op": 0, "pg": 0}
        basic = driver_of(device(sim.port, MACHINE, slot=2, connection_type="basic"))
        await basic.connect()
        assert sim.connections["basic"] == 1
        await basic.close()


async def test_connect_failures_are_said_in_words(plc: S7PlcSimulator) -> None:
    wrong_slot = driver_of(device(plc.port, MACHINE, slot=3))
    with pytest.raises(DeviceUnreachable, match="the rack or slot is wrong for this CPU"):
        await wrong_slot.connect()
    port = plc.port
    await plc.stop()
    nobody = driver_of(device(port, MACHINE))
    with pytest.raises(DeviceUnreachable, match=r"connection refused by 127\.0\.0\.1"):
        await nobody.connect()


async def test_a_slow_answer_closes_the_connection_and_a_new_one_reads(
    plc: S7PlcSimulator,
) -> None:
    driver = driver_of(device(plc.port, MACHINE, timeout=0.3))
    await driver.connect()
    plc.response_delay = 0.6
    with pytest.raises(ConnectionLost, match="no answer to read of"):
        await read_all(driver)
    assert driver.errors["timeout"] == 1 and driver.errors["connection_lost"] == 1
    plc.response_delay = 0.0
    await driver.connect()
    got = await read_all(driver)
    assert all(q == Quality.GOOD for _, q, _ in got.values())
    await driver.close()


async def test_garbage_and_half_frames_close_the_connection(plc: S7PlcSimulator) -> None:
    driver = driver_of(device(plc.port, MACHINE, timeout=0.3))
    await driver.connect()
    plc.garbage_next(1)
    with pytest.raises(ConnectionLost, match="no ISO-on-TCP frame"):
        await read_all(driver)
    assert driver.errors["garbled"] == 1
    await driver.connect()
    plc.half_frames_next(1)
    with pytest.raises(ConnectionLost, match="no answer to read of"):
        await read_all(driver)
    await driver.connect()
    assert all(q == Quality.GOOD for _, q, _ in (await read_all(driver)).values())
    await driver.close()


async def test_a_corrupt_answer_makes_its_request_bad_and_the_connection_stays(
    plc: S7PlcSimulator,
) -> None:
    driver = driver_of(device(plc.port, MACHINE))
    await driver.connect()
    plc.corrupt_next(1)
    group = driver.poll_groups()[0]
    batch: SampleBatch = await driver.read(group)
    assert (batch.quality == Quality.BAD).all() and np.isnan(batch.values).all()
    assert driver.errors["garbled"] == 1 and driver.connected
    batch = await driver.read(group)
    assert (batch.quality == Quality.GOOD).all()
    await driver.close()


async def test_a_stopped_plc_is_a_lost_connection_and_a_restarted_one_reads(
    plc: S7PlcSimulator,
) -> None:
    driver = driver_of(device(plc.port, MACHINE))
    await driver.connect()
    await plc.stop()
    with pytest.raises(ConnectionLost):
        await read_all(driver)
    await plc.start()
    await driver.connect()
    assert all(q == Quality.GOOD for _, q, _ in (await read_all(driver)).values())
    await driver.close()


WRITABLE = [
    {"name": "setpoint", "address": "DB2.DBD0:REAL", "writable": True, "range": [100, 350]},
    {"name": "valve", "address": "Q1.5", "writable": True},
    {"name": "label", "address": "DB3.DB42:STRING[10]", "writable": True},
    {"name": "wide", "address": "DB3.DB54:WSTRING[6]", "writable": True},
    {"name": "stamp", "address": "DB3.DB70:DT", "writable": True},
    {"name": "big", "address": "DB3.DB26:LINT", "writable": True,
     "range": [-9223372036854775808, 9223372036854775807]},
    {"name": "mode", "address": "MW10:INT", "writable": True, "range": [-100, 100]},
    {"name": "ghost", "address": "DB9.DBW0:INT", "writable": True, "range": [0, 10]},
    # declared longer than the PLC's STRING[10]: a write reads the PLC's maximum first
    {"name": "label_too_long", "address": "DB3.DB42:STRING[20]", "writable": True,
     "poll_group": "never"},
]


async def test_writes_reach_the_plc_exactly(plc: S7PlcSimulator) -> None:
    driver = driver_of(device(plc.port, WRITABLE[:-1]))
    await driver.connect()
    await driver.write(1, 212.5)
    assert plc.model.melt_setpoint == 212.5  # applied to the process model
    plc.areas["Q"][1] = 0b0000_0011
    await driver.write(2, True)
    assert plc.areas["Q"][1] == 0b0010_0011  # a bit written as a bit: the others kept
    await driver.write(2, False)
    assert plc.areas["Q"][1] == 0b0000_0011
    await driver.write(3, "A18")
    # the maximum length byte is the PLC's; the bytes after the text are left as they were
    assert plc.read_bytes("DB", 42, 6, db=3) == b"\x0a\x03A18l"
    await driver.write(4, "注塑")
    assert plc.read_bytes("DB", 54, 8, db=3) == struct.pack(">HH", 6, 2) + "注塑".encode(
        "utf-16-be")
    await driver.write(5, "2026-12-05T01:02:03.456")
    await driver.write(6, 2**63 - 1)
    assert plc.read_bytes("DB", 26, 8, db=3) == struct.pack(">q", 2**63 - 1)
    got = await read_all(driver)
    assert got["stamp"][0] == "2026-12-05T01:02:03.456" and got["big"][0] == 2**63 - 1
    assert got["label"][0] == "A18" and got["wide"][0] == "注塑"
    await driver.close()


async def test_refused_writes_say_why_and_change_nothing(plc: S7PlcSimulator) -> None:
    driver = driver_of(device(plc.port, WRITABLE,
                              poll_groups=[{"name": "never", "interval": "1h"}]))
    await driver.connect()
    before = plc.read_bytes("DB", 42, 12, db=3)
    with pytest.raises(DeviceWriteRefused,
                       match="takes 11 characters but the PLC's STRING holds 10"):
        await driver.write(9, "x" * 11)
    with pytest.raises(DeviceWriteRefused, match="takes 11 bytes in latin-1; the tag holds 10"):
        await driver.write(3, "x" * 11)
    assert plc.read_bytes("DB", 42, 12, db=3) == before
    with pytest.raises(DeviceWriteRefused, match="outside the INT range"):
        await driver.write(7, 40000)
    with pytest.raises(DeviceWriteRefused, match="is not an integer"):
        await driver.write(7, 1.5)
    with pytest.raises(DeviceWriteRefused, match="DB9 does not exist"):
        await driver.write(8, 3)
    with pytest.raises(DeviceWriteRefused, match="cannot be written in latin-1"):
        await driver.write(3, "注")
    await driver.close()


async def test_cancelled_polls_stop_at_once(plc: S7PlcSimulator) -> None:
    """Two poll groups hammer the PLC and are cancelled, as at the gateway's shutdown. On
    Python 3.11 snap7's wait_for swallows a cancel that meets an answer; the poll loop then
    ran on, and the gateway waited 5 s for the device and left its task behind."""
    driver = driver_of(device(plc.port, MACHINE))
    await driver.connect()

    busy = asyncio.Event()

    async def poll(group: Any) -> None:
        reads = 0
        while True:
            await driver.read(group)
            reads += 1
            if reads == 10:
                busy.set()

    for _ in range(5):
        busy.clear()
        tasks = [asyncio.create_task(poll(g)) for g in driver.poll_groups()]
        await busy.wait()
        for task in tasks:
            task.cancel()
        _, pending = await asyncio.wait(tasks, timeout=1.0)
        assert not pending
        assert all(t.cancelled() for t in tasks)
    await driver.close()


async def test_a_plc_that_does_not_identify_itself_is_read_all_the_same(
    plc: S7PlcSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SZL is optional: a CPU that refuses it, or answers what snap7 cannot parse,
    connects without an identity."""
    monkeypatch.setattr(plc, "_szl", lambda szl_id: None)  # 'object does not exist'
    driver = driver_of(device(plc.port, MACHINE))
    await driver.connect()
    assert (await driver.identity()) is None
    assert all(q == Quality.GOOD for _, q, _ in (await read_all(driver)).values())
    await driver.close()
    monkeypatch.setattr(plc, "_szl", lambda szl_id: b"\x00\x1c")  # cut short
    await driver.connect()
    assert (await driver.identity()) is None
    await driver.close()


async def test_an_item_refused_after_whole_answers_is_still_bad(plc: S7PlcSimulator) -> None:
    """Whole answers are taken by their learned shape (frames.ReadAnswerShape); an answer
    with one item refused, or corrupt, has another shape and goes through the full parse."""
    driver = driver_of(device(plc.port, MACHINE))
    await driver.connect()
    for _ in range(3):  # the first whole answer teaches the shape, the next ones use it
        got = await read_all(driver)
        assert all(q == Quality.GOOD for _, q, _ in got.values())
    plc.optimized_dbs.add(2)
    got = await read_all(driver)
    assert got["setpoint"][1] == Quality.BAD and math.isnan(got["setpoint"][0])
    assert got["melt"][1] == Quality.GOOD
    assert driver.errors["address_out_of_range"] == 1
    plc.optimized_dbs.discard(2)
    plc.corrupt_next(1)
    batch: SampleBatch = await driver.read(driver.poll_groups()[0])
    assert (batch.quality == Quality.BAD).all() and driver.errors["garbled"] == 1
    got = await read_all(driver)
    assert all(q == Quality.GOOD for _, q, _ in got.values())
    await driver.close()
