"""Fixtures of the Modbus tests: a real server (see modbus_sim.py), drivers, odd ports."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from modbus_sim import Memory, ModbusSim

from drivers.modbus.config import ModbusDeviceConfig, ModbusRtuDeviceConfig, ModbusTcpDeviceConfig
from drivers.modbus.driver import ModbusDriver, ModbusRtuDriver, ModbusTcpDriver
from gateway.serial_ports import SerialPorts

_CONFIGS: dict[str, type[ModbusDeviceConfig]] = {
    "modbus_tcp": ModbusTcpDeviceConfig,
    "modbus_rtu": ModbusRtuDeviceConfig,
}


@pytest.fixture
async def modbus_sim() -> AsyncIterator[Callable[..., Any]]:
    """``await modbus_sim(memory, units=..., rtu=...)`` starts a server; all stop at teardown."""
    sims: list[ModbusSim] = []

    async def start(memory: Memory, **options: Any) -> ModbusSim:
        sim = ModbusSim(memory, **options)
        await sim.start()
        sims.append(sim)
        return sim

    yield start
    for sim in sims:
        await sim.stop()
        sim.close_line()


@pytest.fixture
def serial_ports() -> SerialPorts:
    """The serial ports of the test's drivers, as the gateway keeps them for its devices."""
    return SerialPorts()


@pytest.fixture
async def make_driver(serial_ports: SerialPorts) -> AsyncIterator[Callable[..., Any]]:
    """``make_driver(device)``: a TCP or RTU driver with tag ids 100, 101, ...; closed at
    teardown. RTU drivers share :func:`serial_ports`."""
    drivers: list[ModbusDriver] = []

    def make(device: ModbusDeviceConfig | dict[str, Any]) -> ModbusDriver:
        if isinstance(device, dict):
            device = _CONFIGS[device["protocol"]].model_validate(device)
        ids = [100 + i for i in range(len(device.tags))]
        driver: ModbusDriver
        if isinstance(device, ModbusRtuDeviceConfig):
            driver = ModbusRtuDriver(device, ids, serial_ports)
        else:
            driver = ModbusTcpDriver(device, ids)  # type: ignore[arg-type]
        drivers.append(driver)
        return driver

    yield make
    for driver in drivers:
        await driver.close()


@pytest.fixture
def blackhole_port() -> Iterator[int]:
    """A port whose connects hang: a listener with a full accept queue drops new SYNs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=1)
    try:
        yield port
    finally:
        filler.close()
        listener.close()


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
