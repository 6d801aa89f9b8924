"""Several MCU nodes on one RS-485 line (one pty): one port, one reader, one device per node."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

from firmware_bridge.config import McuNodeDeviceConfig
from firmware_bridge.driver import McuNodeDriver
from firmware_bridge.node_port import NodePort
from gateway.errors import DeviceUnreachable
from gateway.types import Quality, SampleBatch
from hil.devices.mcu_node import McuNodeBus, sensor_value


def node_config(bus: McuNodeBus, node_id: int, **kw: Any) -> McuNodeDeviceConfig:
    body: dict[str, Any] = {
        "name": f"node-{node_id}", "protocol": "mcu_node", "port": bus.serial_path,
        "node_id": node_id, "sample_interval": "20ms", "samples_per_frame": 5,
        "stale_after": "1s", "hello_timeout": "500ms",
        "tags": [{"name": "vibration", "sensor": "vibration_rms"},
                 {"name": "temperature", "sensor": "temperature"}],
        **kw,
    }
    return McuNodeDeviceConfig.model_validate(body)


class Collector:
    def __init__(self) -> None:
        self.batches: list[SampleBatch] = []

    def __call__(self, batch: SampleBatch) -> None:
        self.batches.append(batch)

    def good(self) -> int:
        return sum(int((b.quality == Quality.GOOD).sum()) for b in self.batches)


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.fixture
async def bus() -> AsyncIterator[McuNodeBus]:
    async with McuNodeBus([3, 5, 9], seed=10) as line:
        yield line


async def test_three_nodes_share_one_port_each_its_own_tags(bus: McuNodeBus) -> None:
    ids = {3: [0, 1], 5: [10, 11], 9: [20, 21]}
    drivers = {n: McuNodeDriver(node_config(bus, n), ids[n]) for n in (3, 5)}
    outs = {n: Collector() for n in ids}
    tasks = []
    for n, driver in drivers.items():
        await driver.connect()
        tasks.append(asyncio.create_task(driver.subscribe(outs[n])))
    try:
        await until(lambda: all(outs[n].good() >= 40 for n in drivers))
        # one port object, one reader, both nodes attached
        ports = {id(d._port) for d in drivers.values()}
        assert len(ports) == 1
        port = drivers[3]._port
        assert isinstance(port, NodePort) and set(port.listeners) == {3, 5}
        # node 9 talks on the line but has no device: counted on the owner, not mixed in
        assert drivers[3].errors["other_node"] > 0 and drivers[5].errors["other_node"] == 0
        # each node's settings reached only that node; each HELLO is its own
        for n, driver in drivers.items():
            assert bus.nodes[n].configs_applied == 1
            assert driver.node is not None
        assert bus.nodes[9].configs_applied == 0
        # a third device joins the running line
        drivers[9] = McuNodeDriver(node_config(bus, 9), ids[9])
        await drivers[9].connect()
        tasks.append(asyncio.create_task(drivers[9].subscribe(outs[9])))
        await until(lambda: outs[9].good() >= 20)
        # the first node's device goes away: the others keep reading on the open port
        await drivers[3].close()
        tasks[0].cancel()
        counts = {n: outs[n].good() for n in (5, 9)}
        await until(lambda: all(outs[n].good() >= counts[n] + 20 for n in (5, 9)))
        assert port.is_open and set(port.listeners) == {5, 9}
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for driver in drivers.values():
            await driver.close()
    assert not port.is_open  # the last device closed it
    # every reading went to its own node's tags: the values are that node's signal
    for n, out in outs.items():
        batch = SampleBatch.concat(out.batches)
        assert set(batch.tag_ids.tolist()) == set(ids[n])
        sent = {v for c, _t, v in bus.nodes[n].history if c == 1}
        temps = batch.values[batch.tag_ids == ids[n][1]]
        assert np.isin(temps, list(sent)).all()
    seeds = {n: bus.nodes[n].seed for n in ids}
    assert len({sensor_value(seeds[n], 1, 1000) for n in ids}) == 3  # distinct signals


async def test_two_devices_for_one_node_or_two_baud_rates_are_refused(bus: McuNodeBus) -> None:
    first = McuNodeDriver(node_config(bus, 3), [0, 1])
    await first.connect()
    try:
        with pytest.raises(DeviceUnreachable, match="already attached"):
            await McuNodeDriver(node_config(bus, 3), [2, 3]).connect()
        with pytest.raises(DeviceUnreachable, match="same baudrate"):
            await McuNodeDriver(node_config(bus, 5, baudrate=9600), [4, 5]).connect()
    finally:
        await first.close()


async def test_firmware_update_is_refused_on_a_shared_line(bus: McuNodeBus) -> None:
    from firmware_bridge.image import build_image
    from firmware_bridge.update import UpdateError, update_firmware

    drivers = [McuNodeDriver(node_config(bus, n), [2 * n, 2 * n + 1]) for n in (3, 5)]
    for driver in drivers:
        await driver.connect()
    try:
        with pytest.raises(UpdateError, match=r"nodes \[5\] share"):
            await update_firmware(drivers[0], build_image((9, 0, 0), 4096))
        assert bus.nodes[3].smp.upload_requests == 0
    finally:
        for driver in drivers:
            await driver.close()
