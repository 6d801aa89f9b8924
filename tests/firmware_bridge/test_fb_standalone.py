"""``node_session``: a node's port without a gateway, supervised by the gateway's device runner."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge.config import McuNodeDeviceConfig
from firmware_bridge.standalone import node_session
from gateway.errors import DeviceUnreachable
from gateway.serial_ports import SerialPorts
from gateway.types import Quality, SampleBatch
from hil.devices.mcu_node import McuNodeSimulator


def node_config(path: str, **kw: Any) -> McuNodeDeviceConfig:
    return McuNodeDeviceConfig.model_validate({
        "name": "node", "protocol": "mcu_node", "port": path, "node_id": 4,
        "sample_interval": "20ms", "samples_per_frame": 5, "stale_after": "400ms",
        "hello_timeout": "300ms", "tags": [{"name": "temperature", "sensor": "temperature"}],
        **kw,
    })


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.fixture
async def sim() -> AsyncIterator[McuNodeSimulator]:
    async with McuNodeSimulator(node_id=4, seed=7) as node:
        yield node


async def test_a_cut_link_marks_the_tags_stale_and_reconnects(sim: McuNodeSimulator) -> None:
    """As in the gateway: while the node is away its tags are STALE, then it reconnects."""
    got: list[SampleBatch] = []
    async with node_session(node_config(sim.serial_path), got.append) as driver:
        await until(lambda: any((b.quality == Quality.GOOD).any() for b in got))
        sim.line.cut = True
        await until(lambda: (got[-1].quality == Quality.STALE).all())
        assert driver.errors["silent"] == 1
        sim.line.cut = False
        marked = len(got)
        await until(lambda: any((b.quality == Quality.GOOD).any() for b in got[marked:]))
        assert driver.connected and driver.errors["silent"] == 1


async def test_an_absent_port_is_unreachable_with_the_reason(tmp_path: Path) -> None:
    ports = SerialPorts()
    config = node_config(str(tmp_path / "ttyUSB9"))
    with pytest.raises(DeviceUnreachable, match=r"cannot open serial port .*ttyUSB9"):
        async with node_session(config, connect_timeout=0.5, ports=ports):
            raise AssertionError("connected to a port that does not exist")
    assert not ports.paths()  # it gave up at connect_timeout (else: the test times out)


async def test_the_session_closes_its_port(sim: McuNodeSimulator) -> None:
    ports = SerialPorts()
    async with node_session(node_config(sim.serial_path), ports=ports) as driver:
        assert driver.node is not None and ports.users(sim.serial_path) == ["node"]
    assert not driver.connected and not ports.paths()
