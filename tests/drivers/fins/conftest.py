"""Fixtures of the FINS tests: the simulated PLC on loopback and drivers built for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from drivers.fins.config import FinsDeviceConfig
from drivers.fins.driver import FinsDriver
from hil.devices.fins_plc import FinsPlcSimulator


@pytest.fixture
async def plc() -> AsyncIterator[FinsPlcSimulator]:
    """A PLC with memory only (no process model): tests lay out its words."""
    async with FinsPlcSimulator() as sim:
        yield sim


@pytest.fixture
async def make_driver() -> AsyncIterator[Callable[..., FinsDriver]]:
    """``make_driver(sim, tags, **device keys)``: a driver for ``sim``, closed at teardown."""
    drivers: list[FinsDriver] = []

    def make(sim: FinsPlcSimulator, tags: list[dict[str, Any]], **keys: Any) -> FinsDriver:
        config = FinsDeviceConfig.model_validate({
            "name": "plc", "protocol": "fins", "host": "127.0.0.1", "port": sim.port,
            "timeout": "300ms", "tags": tags, **keys})
        driver = FinsDriver(config, list(range(100, 100 + len(tags))))
        drivers.append(driver)
        return driver

    yield make
    for driver in drivers:
        await driver.close()
