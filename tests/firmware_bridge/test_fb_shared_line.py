"""Several MCU nodes on one RS-485 line (one pty): one port, one reader, one device per node.

The drivers share the port through one :class:`SerialPorts`, as the gateway's devices do.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from firmware_bridge.config import McuNodeDeviceConfig
from firmware_bridge.driver import McuNodeDriver
from firmware_bridge.node_port import NodePort
from gateway.errors import DeviceUnreachable
from gateway.serial_ports import SerialPorts
from gateway.types import Quality, SampleBatch
from hil.devices.mcu_node import McuNodeBus, sensor_value
from tests.waiting import until


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


@pytest.fixture
async def bus() -> AsyncIterator[McuNodeBus]:
    async with McuNodeBus([3, 5, 9], seed=10) as line:
        yield line


def fds_on(path: str) -> int:
    """How many of this process's file descriptors are open on ``path``."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == path
        except OSError:
            continue
    return count


async def test_three_nodes_share_one_port_each_its_own_tags(bus: McuNodeBus) -> None:
    ids = {3: [0, 1], 5: [10, 11], 9: [20, 21]}
    serial_ports = SerialPorts()
    idle = fds_on(bus.serial_path)
    drivers = {n: McuNodeDriver(node_config(bus, n), ids[n], serial_ports) for n in (3, 5)}
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
        assert fds_on(bus.serial_path) == idle + 1  # opened once
        # node 9 talks on the line but has no device: counted on the owner, not mixed in
        assert drivers[3].errors["other_node"] > 0 and drivers[5].errors["other_node"] == 0
        # each node's settings reached only that node; each HELLO is its own
        for n, driver in drivers.items():
            assert bus.nodes[n].configs_applied == 1
            assert driver.node is not None
        assert bus.nodes[9].configs_applied == 0
        # a third device joins the running line
        drivers[9] = McuNodeDriver(node_config(bus, 9), ids[9], serial_ports)
        await drivers[9].connect()
        tasks.append(asyncio.create_task(drivers[9].subscribe(outs[9])))
        await until(lambda: outs[9].good() >= 20)
        # the first node's device goes away: the others keep reading on the open port
        await drivers[3].close()
        tasks[0].cancel()
        counts = {n: outs[n].good() for n in (5, 9)}
        await until(lambda: all(outs[n].good() >= counts[n] + 20 for n in (5, 9)))
        assert port.is_open and set(port.listeners) == {5, 9}
        assert serial_ports.users(bus.serial_path) == ["node-5", "node-9"]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for driver in drivers.values():
            await driver.close()
    assert not port.is_open  # the last device closed it
    assert not serial_ports.paths() and fds_on(bus.serial_path) == idle
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
    ports = SerialPorts()
    first = McuNodeDriver(node_config(bus, 3), [0, 1], ports)
    await first.connect()
    try:
        twin = McuNodeDriver(node_config(bus, 3, name="node-3b"), [2, 3], ports)
        with pytest.raises(DeviceUnreachable,
                           match="node 3 is already attached by device 'node-3'; "
                                 "device 'node-3b' cannot"):
            await twin.connect()
        with pytest.raises(DeviceUnreachable,
                           match=r"used by device 'node-3' at 115200 baud 8N1; device 'node-5' "
                                 r"asks for 9600 baud 8N1: .* same baudrate"):
            await McuNodeDriver(node_config(bus, 5, baudrate=9600), [4, 5], ports).connect()
        assert ports.users(bus.serial_path) == ["node-3"]  # the refused claims hold nothing
        assert first.connected and first.node is not None
    finally:
        await first.close()
    assert not ports.paths()


async def test_a_link_to_the_port_is_the_same_port(bus: McuNodeBus, tmp_path: Path) -> None:
    """A /dev/serial/by-id/... link and the tty it points to are one port: shared, not
    opened twice."""
    link = tmp_path / "usb-FTDI_RS485-if00-port0"
    link.symlink_to(bus.serial_path)
    ports = SerialPorts()
    idle = fds_on(bus.serial_path)
    drivers = [McuNodeDriver(node_config(bus, 3), [0, 1], ports),
               McuNodeDriver(node_config(bus, 5, port=str(link)), [2, 3], ports)]
    try:
        for driver in drivers:
            await driver.connect()
        assert all(d.node is not None for d in drivers)
        assert drivers[0]._port is drivers[1]._port
        assert fds_on(bus.serial_path) == idle + 1
    finally:
        for driver in drivers:
            await driver.close()
    assert fds_on(bus.serial_path) == idle


async def test_firmware_update_is_refused_on_a_shared_line(bus: McuNodeBus) -> None:
    from firmware_bridge.image import build_image
    from firmware_bridge.update import update_firmware
    from gateway.errors import FirmwareUpdateError

    ports = SerialPorts()
    drivers = [McuNodeDriver(node_config(bus, n), [2 * n, 2 * n + 1], ports) for n in (3, 5)]
    for driver in drivers:
        await driver.connect()
    try:
        with pytest.raises(FirmwareUpdateError, match=r"nodes \[5\] share"):
            await update_firmware(drivers[0], build_image((9, 0, 0), 4096))
        assert bus.nodes[3].smp.upload_requests == 0
    finally:
        for driver in drivers:
            await driver.close()
