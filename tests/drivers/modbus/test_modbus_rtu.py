"""Modbus RTU: the driver over a real pty line to a pymodbus serial server (no mocks).

Garbled frames, several devices sharing one bus, absent units, a line that goes away.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable
from typing import Any

import pytest

from drivers.modbus import driver as driver_module
from drivers.modbus.codec import encode
from drivers.modbus.driver import MAX_SILENT_REQUESTS, ModbusDriver
from gateway.errors import ConnectionLost, DeviceUnreachable
from gateway.serial_ports import SerialPorts
from gateway.types import DataType, Quality, SampleBatch
from tests.waiting import until

StartSim = Callable[..., Any]
MakeDriver = Callable[..., ModbusDriver]

MEMORY = {"holding": {0: [7, *encode(230.5, DataType.FLOAT32), 9]}}
UNIT2 = {"holding": {0: [21, 22, 23, 24]}}
TAGS = [
    {"name": "a", "type": "uint16", "address": 0},
    {"name": "volts", "type": "float32", "address": 1},
]


def rtu(path: str, tags: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "name": extra.pop("name", "rtu-1"),
        "protocol": "modbus_rtu",
        "port": path,
        "baudrate": 19200,
        "timeout": 0.2,
        "retries": 0,
        "tags": tags,
        **extra,
    }


def values(batch: SampleBatch) -> list[tuple[float, int]]:
    return [(float(v), int(q)) for v, q in zip(batch.values, batch.quality, strict=True)]


async def read_all(driver: ModbusDriver) -> SampleBatch:
    (group,) = driver.poll_groups()
    return await driver.read(group)


GOOD = [(7.0, Quality.GOOD), (230.5, Quality.GOOD)]
#: bytes of an RTU read request: unit, function, address, count, CRC
RTU_READ_FRAME = 8


def fds_on(path: str) -> int:
    """How many of this process's file descriptors are open on ``path``."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == path
        except OSError:
            continue
    return count


async def test_reads_over_a_serial_line(modbus_sim: StartSim, make_driver: MakeDriver) -> None:
    sim = await modbus_sim(MEMORY, rtu=True)
    driver = make_driver(rtu(sim.serial_path, TAGS))
    await driver.connect()
    assert values(await read_all(driver)) == GOOD
    assert driver.connected and not driver.errors


async def test_a_garbled_answer_is_bad_and_counted_and_the_next_one_decodes(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim = await modbus_sim(MEMORY, rtu=True)
    driver = make_driver(rtu(sim.serial_path, TAGS))
    await driver.connect()
    sim.line.garble_answers = 1  # one byte flipped: the CRC does not check out
    got = values(await read_all(driver))
    assert all(math.isnan(v) and q == Quality.BAD for v, q in got)
    assert driver.errors == {"garbled": 1}
    assert values(await read_all(driver)) == GOOD
    assert driver.connected


async def test_a_retry_recovers_from_one_garbled_answer(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim = await modbus_sim(MEMORY, rtu=True)
    driver = make_driver(rtu(sim.serial_path, TAGS, retries=1))
    await driver.connect()
    sim.line.garble_answers = 1
    assert values(await read_all(driver)) == GOOD
    assert driver.errors == {"garbled": 1}


async def test_noise_on_the_line_during_a_request_never_crashes(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim = await modbus_sim(MEMORY, rtu=True)
    sim.faults.delay[("holding", 0)] = 0.05
    driver = make_driver(rtu(sim.serial_path, TAGS))
    await driver.connect()
    for _ in range(5):
        reading = asyncio.create_task(read_all(driver))
        await until(lambda: sim.in_flight, "the request at the device")
        sim.line.inject_garbage(24)  # noise while the device is still thinking
        batch = await reading
        assert all(q in (Quality.GOOD, Quality.BAD) for _, q in values(batch))
    assert set(driver.errors) <= {"garbled", "decode"}
    del sim.faults.delay[("holding", 0)]
    assert values(await read_all(driver)) == GOOD
    assert driver.connected


async def test_devices_on_one_bus_share_it_and_never_interleave(
    modbus_sim: StartSim, make_driver: MakeDriver, serial_ports: SerialPorts
) -> None:
    sim = await modbus_sim(MEMORY, units={2: UNIT2}, rtu=True)
    idle = fds_on(sim.serial_path)  # the pty link's own end
    sim.faults.delay[("holding", 0)] = 0.03
    first = make_driver(rtu(sim.serial_path, TAGS))
    second = make_driver(
        rtu(
            sim.serial_path,
            [{"name": "b", "type": "uint16", "address": 3}],
            name="rtu-2",
            unit_id=2,
        )
    )
    await first.connect()
    await second.connect()
    assert first._link is not None and second._link is not None
    assert first._link.client is second._link.client  # one port, one client
    assert fds_on(sim.serial_path) == idle + 1  # opened once
    assert serial_ports.users(sim.serial_path) == ["rtu-1", "rtu-2"]
    results = await asyncio.gather(*(read_all(d) for d in (first, second) for _ in range(3)))
    assert [values(b) for b in results[:3]] == [GOOD] * 3
    assert [values(b) for b in results[3:]] == [[(24.0, Quality.GOOD)]] * 3
    assert sim.max_in_flight == 1
    await first.close()
    assert values(await read_all(second)) == [(24.0, Quality.GOOD)]  # still open for the other
    assert fds_on(sim.serial_path) == idle + 1
    await second.close()
    assert not serial_ports.paths()
    assert fds_on(sim.serial_path) == idle  # the last release closed the port


async def test_an_absent_device_on_the_bus_does_not_stop_the_other(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim = await modbus_sim(MEMORY, rtu=True)
    present = make_driver(rtu(sim.serial_path, TAGS))
    absent = make_driver(rtu(sim.serial_path, TAGS, name="rtu-9", unit_id=9))
    await present.connect()
    await absent.connect()
    for _ in range(MAX_SILENT_REQUESTS - 1):
        assert all(q == Quality.BAD for _, q in values(await read_all(absent)))
        assert values(await read_all(present)) == GOOD
    with pytest.raises(ConnectionLost, match="presumed dead"):
        await read_all(absent)
    assert values(await read_all(present)) == GOOD
    assert present.connected and not present.errors
    await absent.connect()  # the runner's reconnect: attaches to the open bus again
    assert absent.connected


async def test_an_absent_unit_of_a_device_is_backed_off(
    modbus_sim: StartSim, make_driver: MakeDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(driver_module, "UNIT_BACKOFF_INITIAL", 5.0)
    sim = await modbus_sim(MEMORY, rtu=True)
    tags = [*TAGS, {"name": "ghost", "type": "uint16", "address": 0, "unit_id": 5}]
    driver = make_driver(rtu(sim.serial_path, tags))
    await driver.connect()
    for _ in range(MAX_SILENT_REQUESTS + 1):  # unit 1's answers keep the line alive
        got = values(await read_all(driver))
        assert got[:2] == GOOD and got[2][1] == Quality.BAD
    assert driver.errors["unit_backoff"] == 1
    asked, sent = driver.units[5].requests, sim.line.bytes_to_device
    got = values(await read_all(driver))
    # the absent unit no longer costs a timeout: not asked, only unit 1's one request sent
    assert driver.units[5].requests == asked and "timeout" not in driver.units[1].errors
    assert sim.line.bytes_to_device - sent == RTU_READ_FRAME
    assert got[:2] == GOOD
    assert driver.units[5].errors == {"timeout": 3, "backoff": 1, "skipped": 2}


async def test_a_second_device_with_other_line_settings_is_refused(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim = await modbus_sim(MEMORY, rtu=True)
    first = make_driver(rtu(sim.serial_path, TAGS))
    await first.connect()
    other = make_driver(rtu(sim.serial_path, TAGS, name="rtu-2", baudrate=9600))
    with pytest.raises(
        DeviceUnreachable,
        match=r"used by device 'rtu-1' at 19200 baud 8N1; device 'rtu-2' asks for 9600 baud 8N1",
    ):
        await other.connect()
    assert first.connected
    assert values(await read_all(first)) == GOOD


async def test_a_missing_serial_port_is_unreachable(make_driver: MakeDriver) -> None:
    driver = make_driver(rtu("/dev/no-such-tty", TAGS))
    with pytest.raises(DeviceUnreachable, match="cannot open serial port /dev/no-such-tty"):
        await driver.connect()
    assert not driver.connected


async def test_the_line_going_away_is_a_lost_connection(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim = await modbus_sim(MEMORY, rtu=True)
    driver = make_driver(rtu(sim.serial_path, TAGS, timeout=2.0))
    await driver.connect()
    assert values(await read_all(driver)) == GOOD
    await sim.stop()
    sim.close_line()
    with pytest.raises(ConnectionLost, match="closed"):
        await read_all(driver)
    # lost as the line went, not after the 2 s timeout (a timeout would be counted, and
    # the first one would only make the tags BAD)
    assert driver.errors == {"connection_lost": 1}


async def test_runners_of_devices_on_one_bus_poll_their_groups_past_a_dead_one(
    modbus_sim: StartSim,
) -> None:
    """Three device runners on one serial bus, the way the gateway runs them."""
    import random

    from drivers.modbus.config import ModbusRtuDeviceConfig
    from drivers.modbus.driver import ModbusRtuDriver
    from gateway.backoff import Backoff
    from gateway.runtime.device_runner import DeviceRunner

    sim = await modbus_sim(MEMORY, units={2: UNIT2}, rtu=True)
    idle = fds_on(sim.serial_path)
    ports = SerialPorts()  # the gateway's, handed to every driver it builds
    groups = [{"name": "fast", "interval": 0.05}]
    devices = {
        "meter": rtu(sim.serial_path, [{**TAGS[0], "poll_group": "fast"}, TAGS[1]],
                     poll_interval=0.5, poll_groups=groups),
        "second": rtu(sim.serial_path, [{"name": "b", "type": "uint16", "address": 2}],
                      unit_id=2, poll_interval=0.05),
        "dead": rtu(sim.serial_path, TAGS, unit_id=9, poll_interval=0.05, timeout=0.05),
    }  # fmt: skip
    seen: dict[int, list[tuple[float, int]]] = {}

    def sink(batch: SampleBatch) -> None:
        for t, v, q in zip(batch.tag_ids, batch.values, batch.quality, strict=True):
            seen.setdefault(int(t), []).append((float(v), int(q)))

    runners = []
    for i, (name, cfg) in enumerate(devices.items()):
        config = ModbusRtuDeviceConfig.model_validate({**cfg, "name": name})
        ids = [10 * i + k for k in range(len(config.tags))]
        runners.append(
            DeviceRunner(
                name,
                lambda c=config, t=ids: ModbusRtuDriver(c, t, ports),
                sink,
                reconnect=Backoff(0.05, 0.1, rng=random.Random(0)),
            )
        )
    loop = asyncio.get_running_loop()
    started = loop.time()
    tasks = [asyncio.create_task(r.run()) for r in runners]

    def polled() -> bool:  # the others keep polling while the dead device times out
        return (len(seen.get(0, ())) >= 8 and len(seen.get(1, ())) >= 2
                and len(seen.get(10, ())) >= 8 and len(seen.get(20, ())) >= 8)  # fmt: skip

    await until(polled, "8 fast, 2 slow, 8 second polls while the dead one is asked 8 times",
                seen=lambda: {tag: len(got) for tag, got in seen.items()})
    elapsed = loop.time() - started
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    fast, slow, second = seen[0], seen[1], seen[10]
    assert all(s == (7.0, Quality.GOOD) for s in fast)
    assert all(s == (230.5, Quality.GOOD) for s in slow)
    assert all(s == (23.0, Quality.GOOD) for s in second)
    # each group never before its tick (a loaded box only makes these looser); the
    # lower bounds are the awaited counts
    assert len(slow) <= elapsed / 0.5 + 1 and len(fast) <= elapsed / 0.05 + 1
    assert all(q == Quality.BAD for _, q in seen[20])
    assert sim.max_in_flight == 1
    assert not ports.paths()  # every runner released the port: it is closed
    assert fds_on(sim.serial_path) == idle


async def test_a_request_waiting_for_the_bus_is_stamped_when_it_is_sent(
    modbus_sim: StartSim, make_driver: MakeDriver
) -> None:
    sim = await modbus_sim(MEMORY, units={2: UNIT2}, rtu=True)
    sim.faults.delay[("holding", 0)] = 0.15  # unit 1's read holds the bus
    slow = make_driver(rtu(sim.serial_path, TAGS, timeout=1.0))
    queued = make_driver(
        rtu(sim.serial_path, [{"name": "b", "type": "uint16", "address": 3}], name="rtu-2",
            unit_id=2)
    )  # fmt: skip
    await slow.connect()
    await queued.connect()
    first = asyncio.create_task(read_all(slow))
    await until(lambda: sim.in_flight, "unit 1's read at the device")
    batch = await read_all(queued)  # asked now, while the device holds unit 1's read
    held = await first
    # sent after the bus was free: unit 1's answer came 0.15 s after its request was sent
    assert batch.ts_ns[0] - held.ts_ns[0] >= 150_000_000
