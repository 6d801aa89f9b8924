"""The DL/T 645 driver over real lines: a pty carrying several meters, a TCP socket to a
simulated serial device server (hil/devices/dlt645_meter.py), with their faults."""

from __future__ import annotations

import asyncio
import math
import os
import time
from typing import Any

import pytest

from drivers.dlt645.config import Dlt645TcpDeviceConfig
from drivers.dlt645.driver import MAX_SILENT_REQUESTS, Dlt645TcpDriver
from gateway.errors import ConnectionLost, DeviceUnreachable, DeviceWriteRefused
from gateway.serial_ports import SerialPorts
from gateway.types import Quality
from hil.devices.dlt645_meter import Dlt645Line
from tests.drivers.dlt645.dlt645_sim import (
    A1,
    A2,
    A3,
    device,
    driver,
    fixed_meter,
    machine_state_tag,
)

TAGS = [
    {"name": "volts_a", "di": "voltage.a"},
    {"name": "volts_b", "di": "02010200"},
    {"name": "amps_a", "di": "current.a"},
    {"name": "kw", "di": "power.active.total"},
    {"name": "pf", "di": "power_factor.total"},
    {"name": "hz", "di": "frequency"},
    {"name": "kwh", "di": "energy.import.total"},
    {"name": "temp", "di": "temperature"},
    {"name": "peak", "di": "demand.import.total"},
    {"name": "peak_at", "di": "demand.import.total.time"},
    machine_state_tag(),
]
#: FixedMeter's reading as the meter's formats carry it (phase B is 0.2 % above A)
EXPECTED = {"volts_a": 230.4, "volts_b": 230.9, "amps_a": 10.0, "kw": 12.3456, "pf": 0.95,
            "hz": 50.01, "kwh": 1234.56, "temp": -5.5, "peak": 12.3456, "machine_state": 2}


def values_of(drv: Any, batch: Any) -> dict[str, Any]:
    names = [t.name for t in drv.config.tags]
    return {names[int(i)]: v for i, v in zip(batch.tag_ids, batch.values, strict=True)}


def quality_of(drv: Any, batch: Any) -> dict[str, int]:
    names = [t.name for t in drv.config.tags]
    return {names[int(i)]: int(q) for i, q in zip(batch.tag_ids, batch.quality, strict=True)}


async def read(drv: Any) -> Any:
    return await drv.read(drv.poll_groups()[0])


@pytest.mark.parametrize("transport", ["serial", "tcp"])
async def test_reads_exact_values_with_read_times(transport: str) -> None:
    async with Dlt645Line([fixed_meter(A1)], transport=transport) as line:
        drv = driver(device(line, A1, TAGS))
        await drv.connect()
        before = time.time_ns()
        batch = await read(drv)
        after = time.time_ns()
        await drv.close()
    got = values_of(drv, batch)
    assert {k: got[k] for k in EXPECTED} == EXPECTED
    assert isinstance(got["machine_state"], int)  # an integer tag decodes exactly
    assert len(got["peak_at"]) == 16 and got["peak_at"].startswith("20")
    assert set(quality_of(drv, batch).values()) == {Quality.GOOD}
    assert all(before <= ts <= after for ts in batch.ts_ns)  # when each request left
    assert len(drv.planned) == len(TAGS) - 1  # demand and its time: one request
    assert dict(drv.errors) == {}


async def test_several_meters_share_one_serial_line() -> None:
    meters = [fixed_meter(A1), fixed_meter(A2, voltage_v=220.0), fixed_meter(A3, voltage_v=110.0)]
    ports = SerialPorts()
    async with Dlt645Line(meters) as line:
        one = driver(device(line, A1, TAGS[:1], name="m1"), ports)
        # one device reading two meters by their tags' addresses
        two = driver(device(line, A2, [TAGS[0], {**TAGS[0], "name": "volts_m3",
                                                "meter_address": A3}], name="m2"), ports)
        await one.connect()
        await two.connect()
        assert ports.users(line.serial_path) == ["m1", "m2"]
        first, second = await read(one), await read(two)
        assert values_of(one, first) == {"volts_a": 230.4}
        assert values_of(two, second) == {"volts_a": 220.0, "volts_m3": 110.0}
        # one meter stops answering: only its tags go BAD, the others read on
        meters[2].silent = True
        batch = await read(two)
        assert quality_of(two, batch) == {"volts_a": Quality.GOOD, "volts_m3": Quality.BAD}
        assert two.errors["timeout"] == 2  # a retry, then the request failed
        assert values_of(one, await read(one)) == {"volts_a": 230.4}
        await one.close()
        assert ports.users(line.serial_path) == ["m2"]  # the line stays open for the other
        assert values_of(two, await read(two))["volts_a"] == 220.0
        await two.close()
        assert ports.paths() == []


async def test_a_silent_meter_is_lost_and_reported_until_it_answers_again() -> None:
    meter = fixed_meter(A1)
    async with Dlt645Line([meter]) as line:
        drv = driver(device(line, A1, TAGS[:2], retries=0, timeout=0.1))
        await drv.connect()
        meter.silent = True
        with pytest.raises(ConnectionLost, match="requests in a row got no answer"):
            for _ in range(MAX_SILENT_REQUESTS):
                batch = await read(drv)
                assert set(batch.quality) == {Quality.BAD}
                assert all(math.isnan(v) for v in batch.values)
        with pytest.raises(DeviceUnreachable, match=f"meter {A1} DI 02010100.*no answer"):
            await drv.connect()
        meter.silent = False
        await drv.connect()
        assert values_of(drv, await read(drv)) == {"volts_a": 230.4, "volts_b": 230.9}
        await drv.close()


async def test_auto_reads_the_address_of_a_lone_meter() -> None:
    async with Dlt645Line([fixed_meter("000012345678")], transport="tcp") as line:
        drv = driver(device(line, "auto", TAGS[:1]))
        await drv.connect()
        assert drv.meter_address == "000012345678"
        assert await drv.identity() == "meter address 000012345678 (DL/T 645-2007)"
        assert values_of(drv, await read(drv)) == {"volts_a": 230.4}
        await drv.close()
    async with Dlt645Line([fixed_meter(A1), fixed_meter(A2)]) as line:  # two answer: collision
        drv = driver(device(line, "auto", TAGS[:1]))
        with pytest.raises(DeviceUnreachable, match="a lone meter on the line answers"):
            await drv.connect()


async def test_1997_meter() -> None:
    tags = [{"name": "volts", "di": "voltage.a"}, {"name": "kwh", "di": "9010"},
            {"name": "amps", "di": "current.b"}, {"name": "peak_at",
                                                   "di": "demand.import.total.time"},
            machine_state_tag(1997)]
    async with Dlt645Line([fixed_meter("000012345678", version=1997)]) as line:
        drv = driver(device(line, "auto", tags, version=1997))
        await drv.connect()
        got = values_of(drv, await read(drv))
        await drv.close()
    assert drv.meter_address == "000012345678"  # 1997: a broadcast read of the meter number
    assert got["volts"] == 230.0 and got["kwh"] == 1234.56 and got["amps"] == 10.02
    assert got["machine_state"] == 2 and len(got["peak_at"]) == 11


async def test_exception_frames_and_identifiers_the_meter_lacks() -> None:
    meter = fixed_meter(A1)
    tags = [TAGS[0], {"name": "odd", "di": "04FE0099", "format": "XX.XX"}]
    async with Dlt645Line([meter]) as line:
        drv = driver(device(line, A1, tags))
        await drv.connect()
        batch = await read(drv)
        assert quality_of(drv, batch) == {"volts_a": Quality.GOOD, "odd": Quality.BAD}
        assert drv.errors["unknown_di"] == 1
        meter.error_byte = 0x01
        assert set((await read(drv)).quality) == {Quality.BAD}
        assert drv.errors["meter_error"] == 2 and drv.errors["timeout"] == 0  # both requests
        meter.error_byte = None
        assert quality_of(drv, await read(drv))["volts_a"] == Quality.GOOD
        await drv.close()


@pytest.mark.parametrize(("kind", "counter"), [("checksum", "garbled"), ("half", "garbled"),
                                               ("length", "decode")])
async def test_bad_answers(kind: str, counter: str) -> None:
    meter = fixed_meter(A1)
    async with Dlt645Line([meter]) as line:
        drv = driver(device(line, A1, TAGS[:1], retries=0, timeout=0.2))
        await drv.connect()
        meter.bad_answers[kind] = 1  # type: ignore[index]
        assert set((await read(drv)).quality) == {Quality.BAD}
        assert drv.errors[counter] == 1
        assert values_of(drv, await read(drv)) == {"volts_a": 230.4}  # the next one is fine
        # with a retry, a garbled answer costs a counter but no BAD value
        drv.config.__dict__["retries"] = 1
        meter.bad_answers[kind] = 1  # type: ignore[index]
        batch = await read(drv)
        await drv.close()
    if counter == "garbled":
        assert set(batch.quality) == {Quality.GOOD} and drv.errors[counter] == 2
    else:  # a wrong length is an answer: not sent again
        assert set(batch.quality) == {Quality.BAD}


async def test_slow_answers_and_garbage_do_not_shift_later_answers() -> None:
    meter = fixed_meter(A1)
    async with Dlt645Line([meter]) as line:
        drv = driver(device(line, A1, TAGS[:2], retries=0, timeout=0.15))
        await drv.connect()
        meter.delay = 0.25  # answers after the timeout: they arrive during the next request
        assert set((await read(drv)).quality) == {Quality.BAD}
        assert (drv.errors["timeout"], drv.errors["decode"]) == (2, 0)  # not taken as answers
        meter.delay = 0.0
        line.inject_garbage(40)
        got = values_of(drv, await read(drv))
        assert got == {"volts_a": 230.4, "volts_b": 230.9}  # no late answer taken for another
        await drv.close()


async def test_writes_a_parameter_with_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METER_PW", "02000000")
    meter = fixed_meter(A1)
    tags = [{"name": "period", "di": "param.demand_period", "writable": True, "range": [1, 60],
             "type": "uint16"}]
    async with Dlt645Line([meter]) as line:
        drv = driver(device(line, A1, tags, password={"env": "METER_PW"}))
        await drv.connect()
        await drv.write(0, 30)
        assert meter.params["demand_period"] == 30
        assert values_of(drv, await read(drv)) == {"period": 30}
        with pytest.raises(DeviceWriteRefused, match="does not fit format XX"):
            await drv.write(0, 150)
        monkeypatch.setenv("METER_PW", "02123456")
        with pytest.raises(DeviceWriteRefused, match=r"the meter refused .*password wrong"):
            await drv.write(0, 20)
        assert meter.params["demand_period"] == 30 and drv.errors["meter_error"] == 1
        monkeypatch.delenv("METER_PW")
        with pytest.raises(DeviceWriteRefused, match="METER_PW is not set"):
            await drv.write(0, 20)
        await drv.close()


async def test_a_port_that_vanishes_is_a_lost_connection() -> None:
    async with Dlt645Line([fixed_meter(A1)]) as line:
        drv = driver(device(line, A1, TAGS[:1]))
        await drv.connect()
        path = line.serial_path
        line.line.stop()  # the USB adapter is pulled
        with pytest.raises(ConnectionLost):
            for _ in range(5):
                await read(drv)
        assert drv.errors["connection_lost"] >= 1
        await drv.close()
    assert not os.path.exists(path)  # noqa: ASYNC240 (the pty went with the line)


async def test_tcp_server_gone_is_unreachable_with_the_reason() -> None:
    async with Dlt645Line([fixed_meter(A1)], transport="tcp") as line:
        cfg = device(line, A1, TAGS[:1])
    drv = driver(cfg)
    with pytest.raises(DeviceUnreachable, match="connection refused"):
        await drv.connect()


async def test_block_reads_read_the_same_values_in_fewer_requests() -> None:
    tags = [{"name": "volts_a", "di": "voltage.a"}, {"name": "volts_b", "di": "voltage.b"},
            {"name": "volts_c", "di": "voltage.c"}, {"name": "kw", "di": "power.active.total"},
            {"name": "kw_a", "di": "power.active.a"}, {"name": "kwh", "di": "energy.import.total"}]
    meter = fixed_meter(A1)
    async with Dlt645Line([meter]) as line:
        plain = driver(device(line, A1, tags, name="plain"))
        blocks = driver(device(line, A1, tags, name="blocks", block_reads=True))
        await plain.connect()
        before = plain.requests
        one = values_of(plain, await read(plain))
        assert plain.requests - before == 6
        await plain.close()
        await blocks.connect()
        before = blocks.requests
        other = values_of(blocks, await read(blocks))
        assert blocks.requests - before == 3  # voltages, powers, energy
        assert one == other == {"volts_a": 230.4, "volts_b": 230.9, "volts_c": 229.9,
                                "kw": 12.3456, "kw_a": 4.1152, "kwh": 1234.56}
        # a meter without block reads: the tags are BAD once, then read one at a time
        meter.block_reads = False
        batch = await read(blocks)
        assert quality_of(blocks, batch)["volts_a"] == Quality.BAD
        assert blocks.errors["unknown_di"] == 2
        assert values_of(blocks, await read(blocks)) == one
        assert [r.di for r in blocks.planned][:3] == ["02010100", "02010200", "02010300"]
        await blocks.close()


async def test_a_server_that_hangs_up_at_once_is_unreachable_not_lost() -> None:
    """A serial device server whose line is taken by another client accepts and closes."""
    async def hang_up(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = Dlt645TcpDeviceConfig.model_validate(
        {"name": "m", "protocol": "dlt645_tcp", "host": "127.0.0.1", "port": port,
         "meter_address": A1, "tags": TAGS[:1], "timeout": 1.0})
    drv = Dlt645TcpDriver(config, [0])
    with pytest.raises(DeviceUnreachable, match=r"closed the connection|connection broken"):
        await drv.connect()
    server.close()
