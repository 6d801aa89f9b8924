"""The MC driver against the simulated MELSEC CPU on 127.0.0.1, TCP and UDP, 3E and 4E."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from mc_golden import CASE_NAMES, load_case, same_value

from drivers.mc.driver import MAX_SILENT_REQUESTS, McDriver
from gateway.errors import ConnectionLost, DeviceUnreachable, DeviceWriteRefused, RequestFailed
from gateway.types import Quality, SampleBatch
from hil.devices.mc_plc import McPlcSimulator, mc_tag_configs

StartPlc = Callable[..., Any]
MakeDriver = Callable[..., McDriver]
LINKS = [("tcp", "3e"), ("tcp", "4e"), ("udp", "3e"), ("udp", "4e")]


def device(port: int, tags: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"name": "press", "protocol": "mc", "host": "127.0.0.1", "port": port,
            "plc_series": "q", "timeout": 0.5, "tags": tags, **extra}


async def read_all(driver: McDriver) -> SampleBatch:
    (group,) = driver.poll_groups()
    return await driver.read(group)


def by_name(driver: McDriver, batch: SampleBatch) -> dict[str, tuple[Any, int]]:
    names = {tag_id: tag.name for tag_id, tag in zip(driver.tag_ids, driver.config.tags,
                                                     strict=True)}
    return {names[int(t)]: (v, int(q))
            for t, v, q in zip(batch.tag_ids, batch.values, batch.quality, strict=True)}


D0 = [{"name": "d0", "type": "int16", "address": "D0"}]


@pytest.mark.parametrize(("transport", "frame"), LINKS)
@pytest.mark.parametrize("name", CASE_NAMES)
async def test_golden_case_through_the_driver(name: str, transport: str, frame: str,
                                              mc_plc: StartPlc, make_driver: MakeDriver) -> None:
    case = load_case(name)
    sim = await mc_plc(series=case.device.plc_series, process=False)
    sim.load(case.memory)
    driver = make_driver(case.device_at(sim.port, transport=transport, frame=frame))
    await driver.connect()
    values = by_name(driver, await read_all(driver))
    wrong = {tag: (values[tag], want) for tag, want in case.expected.items()
             if values[tag][1] != Quality.GOOD or not same_value(values[tag][0], want)}
    assert not wrong
    assert dict(driver.errors) == {}


@pytest.mark.parametrize("name", CASE_NAMES)
async def test_batch_reads_only_read_the_same(name: str, mc_plc: StartPlc,
                                              make_driver: MakeDriver) -> None:
    case = load_case(name)
    sim = await mc_plc(series=case.device.plc_series, process=False)
    sim.load(case.memory)
    batch_only = make_driver(case.device_at(sim.port, random_reads=False))
    await batch_only.connect()
    values = by_name(batch_only, await read_all(batch_only))
    assert all(same_value(values[t][0], want) for t, want in case.expected.items())
    assert all(cmd == 0x0401 for cmd, _ in sim.commands)


@pytest.mark.parametrize("series", ["q", "iq-r", "iq-f"])
async def test_the_machine_through_each_series(series: str, mc_plc: StartPlc,
                                               make_driver: MakeDriver) -> None:
    sim: McPlcSimulator = await mc_plc(series=series)
    driver = make_driver(device(sim.port, mc_tag_configs(series), plc_series=series))
    await driver.connect()
    before = time.time_ns()
    batch = await read_all(driver)
    after = time.time_ns()
    values = by_name(driver, batch)
    assert all(q == Quality.GOOD for _, q in values.values()), values
    assert 200 < values["melt_temp"][0] < 240
    assert values["state"][0] == sim.get_value("state")
    assert values["recipe"][0] == "ABS-BLACK-01" and values["recipe_no"][0] == 17
    assert values["always_on"][0] == 1 and values["gate_closed"][0] == 1
    # X20 on iQ-F, X10 on Q/iQ-R: the same input (wire number 16)
    assert values["cycle_start"][0] == sim.memory.bits["X"][16]
    assert values["heater_contactor"][0] == 1
    assert (batch.ts_ns >= before).all() and (batch.ts_ns <= after).all()
    assert len(sim.commands) == 1  # one random read for the whole machine (plus none else)


async def test_identity_is_the_cpu_model(mc_plc: StartPlc, make_driver: MakeDriver) -> None:
    sim = await mc_plc(series="iq-f")
    driver = make_driver(device(sim.port, D0, plc_series="iq-f"))
    await driver.connect()
    assert await driver.identity() == "FX5U-32MT/ES (model code 4A29H)"
    sim.end_code = 0xC059  # a Q built-in port does not answer Read CPU model
    driver.cpu_model = None
    assert await driver.identity() == ("unknown (read CPU model: the device answered end code "
                                       "C059H (command or subcommand not supported))")


@pytest.mark.parametrize(("transport", "frame"), LINKS)
async def test_writes_reach_the_cpu_and_the_machine(transport: str, frame: str,
                                                    mc_plc: StartPlc,
                                                    make_driver: MakeDriver) -> None:
    sim: McPlcSimulator = await mc_plc(series="iq-r")
    tags = [
        {"name": "hold_time", "type": "float32", "address": "D200", "writable": True,
         "range": [0.1, 30]},
        {"name": "mode", "type": "int16", "address": "D210", "writable": True, "range": [0, 3]},
        {"name": "recipe", "type": "string", "address": "R0", "length": 8, "writable": True},
        {"name": "lamp", "type": "bool", "address": "M100", "writable": True},
        {"name": "out", "type": "bool", "address": "Y1F", "writable": True},
        {"name": "total", "type": "uint64", "address": "D300", "writable": True,
         "range": [0, 2**64 - 1]},
    ]
    driver = make_driver(device(sim.port, tags, plc_series="iq-r", transport=transport,
                                frame=frame))
    await driver.connect()
    await driver.write(100, 4.5)
    await driver.write(101, 1)
    await driver.write(102, "PP-GREY-7")
    await driver.write(103, True)
    await driver.write(104, 1)
    await driver.write(105, 2**64 - 2)
    assert sim.model.hold_time == 4.5 and sim.model.mode == "idle"
    assert sim.memory.get_text("R", 0, 8) == "PP-GREY-7"
    assert sim.memory.bits["M"][100] == 1 and sim.memory.bits["Y"][0x1F] == 1
    values = by_name(driver, await read_all(driver))
    assert values["hold_time"][0] == 4.5 and values["mode"][0] == 1
    assert values["recipe"][0] == "PP-GREY-7" and values["lamp"][0] == 1
    assert values["total"][0] == 2**64 - 2 and type(values["total"][0]) is int
    await driver.write(103, False)
    assert sim.memory.bits["M"][100] == 0
    assert sim.commands[-1] == (0x1401, 0x0003)  # a bit write in bit units, iQ-R spec


async def test_writes_refused_before_they_leave(mc_plc: StartPlc,
                                                make_driver: MakeDriver) -> None:
    sim = await mc_plc()
    tags = [{"name": "level", "type": "int16", "address": "D0", "writable": True,
             "range": [-100, 100]},
            {"name": "alarm", "type": "bool", "address": "D1.3"},
            {"name": "start", "type": "bool", "address": "X0"},
            {"name": "lamp", "type": "bool", "address": "M0", "writable": True}]
    driver = make_driver(device(sim.port, tags))
    await driver.connect()
    sent = len(sim.commands)
    for tag_id, value, reason in [
        (100, 40000, "outside the int16 range"), (100, 1.5, "not an integer"),
        (100, math.nan, "not a finite number"), (100, "12", "expects a number"),
        (101, 1, "a bit of a word device is read-only"),
        (102, 1, "X are inputs"), (103, 2, "not a boolean"), (999, 1, "not a tag"),
    ]:
        with pytest.raises(DeviceWriteRefused, match=reason):
            await driver.write(tag_id, value)
    assert len(sim.commands) == sent


async def test_an_end_code_makes_the_tags_bad_and_is_counted(mc_plc: StartPlc,
                                                             make_driver: MakeDriver) -> None:
    sim = await mc_plc(process=False)
    sim.load({"D": {0: 7}})
    tags = [*D0, {"name": "lamp", "type": "bool", "address": "M0", "writable": True}]
    driver = make_driver(device(sim.port, tags))
    await driver.connect()
    sim.end_code = 0xC056
    values = by_name(driver, await read_all(driver))
    assert values["d0"][1] == Quality.BAD and math.isnan(values["d0"][0])
    assert driver.errors["mc_end_code_c056"] == 1
    with pytest.raises(DeviceWriteRefused, match=r"end code C056H \(the device range is exceeded"):
        await driver.write(101, True)
    assert driver.errors["mc_end_code_c056"] == 2
    sim.end_code = None
    assert by_name(driver, await read_all(driver))["d0"] == (7, Quality.GOOD)
    assert driver.connected


@pytest.mark.parametrize(("transport", "frame"), LINKS)
async def test_a_late_answer_is_never_taken_for_the_next(transport: str, frame: str,
                                                         mc_plc: StartPlc,
                                                         make_driver: MakeDriver) -> None:
    """3E frames carry no serial number: an answer that comes after its request timed out
    must not be read as the answer to the next request (the stream is resynchronised;
    with 4E the late answer is recognised by its serial number)."""
    sim = await mc_plc(process=False)
    sim.load({"D": {0: 1}})
    driver = make_driver(device(sim.port, D0, transport=transport, frame=frame, timeout=0.2))
    await driver.connect()
    sim.response_delay = 0.4
    assert by_name(driver, await read_all(driver))["d0"][1] == Quality.BAD
    assert driver.errors["timeout"] == 1
    sim.response_delay = 0.0
    sim.load({"D": {0: 2}})
    await asyncio.sleep(0.3)  # the late answer (D0 = 1) has arrived by now
    assert by_name(driver, await read_all(driver))["d0"] == (2, Quality.GOOD)
    if transport == "udp" and frame == "4e":
        assert driver.errors["late_answer"] == 1  # dropped by its serial number
    else:
        assert driver.errors["resync"] == 1  # a fresh connection (or socket)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_garbage_and_half_answers_are_bad_and_recovered(transport: str,
                                                              mc_plc: StartPlc,
                                                              make_driver: MakeDriver) -> None:
    sim = await mc_plc(process=False)
    sim.load({"D": {0: 5}})
    driver = make_driver(device(sim.port, D0, transport=transport, timeout=0.2))
    await driver.connect()
    sim.garbage_answers = 1
    assert by_name(driver, await read_all(driver))["d0"][1] == Quality.BAD
    assert by_name(driver, await read_all(driver))["d0"] == (5, Quality.GOOD)
    sim.half_answers = 1
    assert by_name(driver, await read_all(driver))["d0"][1] == Quality.BAD
    assert by_name(driver, await read_all(driver))["d0"] == (5, Quality.GOOD)
    # TCP: half a frame, then nothing; UDP: a datagram shorter than it announces
    half = "short_answer" if transport == "tcp" else "garbled"
    assert driver.errors[half] >= 1 and driver.errors["resync"] >= 1
    assert driver.errors["garbled"] + driver.errors["timeout"] + driver.errors[
        "short_answer"] >= 2


@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_a_silent_cpu_loses_the_connection(transport: str, mc_plc: StartPlc,
                                                 make_driver: MakeDriver) -> None:
    sim = await mc_plc()
    driver = make_driver(device(sim.port, D0, transport=transport, timeout=0.1))
    await driver.connect()
    sim.silent = True
    for _ in range(MAX_SILENT_REQUESTS - 1):
        assert by_name(driver, await read_all(driver))["d0"][1] == Quality.BAD
    with pytest.raises(ConnectionLost, match="3 requests in a row got no answer"):
        await read_all(driver)
    assert driver.errors["timeout"] == MAX_SILENT_REQUESTS
    assert driver.errors["connection_lost"] == 1 and not driver.connected
    if transport == "udp":  # no connection: the CPU must answer to count as there
        with pytest.raises(DeviceUnreachable, match="no answer to read CPU model"):
            await driver.connect()
    sim.silent = False
    await driver.connect()
    assert by_name(driver, await read_all(driver))["d0"][1] == Quality.GOOD


@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_a_stopped_cpu_is_lost_then_unreachable_then_back(transport: str,
                                                                mc_plc: StartPlc,
                                                                make_driver: MakeDriver) -> None:
    sim = await mc_plc()
    driver = make_driver(device(sim.port, D0, transport=transport, timeout=0.3))
    await driver.connect()
    await sim.stop()
    with pytest.raises(ConnectionLost):
        for _ in range(MAX_SILENT_REQUESTS):  # TCP: closed at once; UDP: port unreachable
            await read_all(driver)
    with pytest.raises(DeviceUnreachable, match="refused"):
        await driver.connect()
    await sim.start()
    await driver.connect()
    assert by_name(driver, await read_all(driver))["d0"][1] == Quality.GOOD


async def test_reads_retry_before_their_tags_go_bad(mc_plc: StartPlc,
                                                    make_driver: MakeDriver) -> None:
    sim = await mc_plc(process=False)
    sim.load({"D": {0: 9}})
    driver = make_driver(device(sim.port, D0, retries=1, timeout=0.2))
    await driver.connect()
    sim.garbage_answers = 1
    assert by_name(driver, await read_all(driver))["d0"] == (9, Quality.GOOD)
    assert driver.errors["garbled"] == 1


async def test_values_are_exact_and_batches_float64_without_strings(
        mc_plc: StartPlc, make_driver: MakeDriver) -> None:
    sim = await mc_plc(process=False)
    sim.load({"D": {0: 0xFFFF, 1: 0xFFFF, 2: 0xFFFF, 3: 0xFFFF, 10: 0x4241}})
    numbers = make_driver(device(sim.port, [{"name": "n", "type": "int32", "address": "D0"}]))
    await numbers.connect()
    batch = await read_all(numbers)
    assert batch.values.dtype == np.float64 and batch.values[0] == -1
    wide = make_driver(device(sim.port, [{"name": "u", "type": "uint64", "address": "D0"},
                                         {"name": "s", "type": "string", "address": "D10",
                                          "length": 1}]))
    await wide.connect()
    values = by_name(wide, await read_all(wide))
    assert values["u"][0] == 2**64 - 1 and type(values["u"][0]) is int
    assert values["s"][0] == "AB"


async def test_a_device_without_random_reads_is_read_with_batch_reads(
        mc_plc: StartPlc, make_driver: MakeDriver) -> None:
    """A CPU or Ethernet module that answers the random read with C059H (not supported):
    one poll BAD, then batch reads, without a config change."""
    sim = await mc_plc(process=False)
    sim.load({"D": {0: 1, 500: 2}})
    sim.refused_commands = {0x0403}
    driver = make_driver(device(sim.port, [*D0, {"name": "d500", "type": "int16",
                                                 "address": "D500"}]))
    await driver.connect()
    assert [r.describe() for r in driver.requests] == ["random read D 0, D 500 (2 points)"]
    assert {q for _, q in by_name(driver, await read_all(driver)).values()} == {Quality.BAD}
    assert driver.errors["mc_end_code_c059"] == 1
    assert by_name(driver, await read_all(driver)) == {"d0": (1, Quality.GOOD),
                                                       "d500": (2, Quality.GOOD)}
    assert [r.describe() for r in driver.requests] == ["batch read D 0 (1 word)",
                                                       "batch read D 500 (1 word)"]


@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_the_links_deadline_follows_each_exchanges_timeout(transport: str,
                                                                 mc_plc: StartPlc) -> None:
    """One watchdog per link: a later exchange with a shorter timeout still ends at its own
    deadline, not at the longer one the watchdog was set for."""
    from drivers.mc import frames
    from drivers.mc.transport import TcpLink, UdpLink

    sim = await mc_plc(process=False)
    link = (TcpLink if transport == "tcp" else UdpLink)("127.0.0.1", sim.port, "3e")
    await link.open()
    try:
        request = frames.batch_read(frames.Route(), 4, frames.DeviceRef(0xA8, 0), 1)
        assert (await link.exchange(request, None, 30.0))[:2] == b"\xd0\x00"
        sim.silent = True
        with pytest.raises(RequestFailed, match=r"no answer within 0\.05 s"):
            await asyncio.wait_for(link.exchange(request, None, 0.05), 10.0)
    finally:
        link.close()


@pytest.mark.parametrize(("transport", "frame"), LINKS)
async def test_a_read_refused_in_the_middle_of_a_poll_leaves_the_others_good(
        transport: str, frame: str, mc_plc: StartPlc, make_driver: MakeDriver) -> None:
    """Answers are decoded while the next request is on its way: every value still lands at
    its own tag, and the one read the CPU refuses (SD past its 4096 points) is BAD alone."""
    sim = await mc_plc(process=False)
    sim.load({"D": {0: 11}, "W": {0x10: 22}, "R": {7: 33}})
    tags = [{"name": "d0", "type": "int16", "address": "D0"},
            {"name": "sd", "type": "int16", "address": "SD5000"},
            {"name": "w10", "type": "int16", "address": "W10"},
            {"name": "r7", "type": "int16", "address": "R7"}]
    driver = make_driver(device(sim.port, tags, random_reads=False, transport=transport,
                                frame=frame))
    await driver.connect()
    assert len(driver.requests) == 4
    for _ in range(2):
        values = by_name(driver, await read_all(driver))
        assert {name: values[name] for name in ("d0", "w10", "r7")} == {
            "d0": (11, Quality.GOOD), "w10": (22, Quality.GOOD), "r7": (33, Quality.GOOD)}
        assert values["sd"][1] == Quality.BAD and math.isnan(values["sd"][0])
    assert dict(driver.errors) == {"mc_end_code_c056": 2}
