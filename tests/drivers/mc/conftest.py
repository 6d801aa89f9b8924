"""Fixtures of the MC driver tests: the simulated MELSEC CPU (hil/devices/mc_plc.py), drivers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest

from hil.devices.mc_plc import McPlcSimulator

if TYPE_CHECKING:
    from drivers.mc.config import McDeviceConfig
    from drivers.mc.driver import McDriver


@pytest.fixture
async def mc_plc() -> AsyncIterator[Callable[..., Any]]:
    """``await mc_plc(series=..., process=...)`` starts a simulated CPU; all stop at teardown."""
    sims: list[McPlcSimulator] = []

    async def start(**options: Any) -> McPlcSimulator:
        sim = McPlcSimulator(**options)
        await sim.start()
        sims.append(sim)
        return sim

    yield start
    for sim in sims:
        await sim.stop()


@pytest.fixture
async def make_driver() -> AsyncIterator[Callable[..., McDriver]]:
    """``make_driver(device)``: a driver with tag ids 100, 101, ...; closed at teardown."""
    from drivers.mc.config import McDeviceConfig
    from drivers.mc.driver import McDriver

    drivers: list[McDriver] = []

    def make(device: McDeviceConfig | dict[str, Any]) -> McDriver:
        if isinstance(device, dict):
            device = McDeviceConfig.model_validate(device)
        driver = McDriver(device, [100 + i for i in range(len(device.tags))])
        drivers.append(driver)
        return driver

    yield make
    for driver in drivers:
        await driver.close()
