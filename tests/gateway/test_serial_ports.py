"""One registry of serial ports for every driver that opens one (gateway/serial_ports.py).

Through real pseudo-terminals: a Modbus RTU device, MCU nodes and a serial-line
instrument claim ports in one :class:`SerialPorts`, as the gateway's devices do.
A claim that cannot share the port is refused naming the devices on both sides;
the last release closes the port's file descriptor.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drivers.modbus.config import ModbusRtuDeviceConfig
from drivers.modbus.driver import ModbusRtuDriver
from drivers.serial_line.config import SerialLineDeviceConfig
from drivers.serial_line.driver import SerialLineDriver
from firmware_bridge.config import McuNodeDeviceConfig
from firmware_bridge.driver import McuNodeDriver
from gateway.errors import ConfigError, DeviceUnreachable, PortConflict
from gateway.serial_ports import LineSettings, PortUse, SerialPorts
from gateway.types import Quality, SampleBatch
from hil.broker import MqttBroker
from hil.devices.mcu_node import McuNodeBus
from hil.devices.modbus_meter import ModbusMeterSimulator
from hil.devices.scale import ScaleSimulator
from tests.integration.gateway_harness import gateway_config, running


def fds_on(path: str) -> int:
    """How many of this process's file descriptors are open on ``path``."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == path
        except OSError:
            continue
    return count


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def rtu_device(name: str, path: str, **kw: Any) -> dict[str, Any]:
    return {
        "name": name, "protocol": "modbus_rtu", "port": path, "baudrate": 19200,
        "timeout": "300ms", "retries": 0, "poll_interval": "100ms",
        "tags": [{"name": "voltage", "table": "input", "address": 0, "type": "float32"}],
        **kw,
    }


def node_device(name: str, path: str, node_id: int, **kw: Any) -> dict[str, Any]:
    return {
        "name": name, "protocol": "mcu_node", "port": path, "node_id": node_id,
        "sample_interval": "20ms", "samples_per_frame": 5, "stale_after": "2s",
        "hello_timeout": "500ms", "tags": [{"name": "temperature", "sensor": "temperature"}],
        **kw,
    }


def scale_device(name: str, path: str) -> dict[str, Any]:
    return {
        "name": name, "protocol": "serial_line", "port": path,
        "framing": {"terminator": r"\r\n"},
        "parser": {"regex": r"(?:ST|US),(?:GS|NT),(?P<weight>[+-]\d+\.\d+) \w+"},
        "tags": [{"name": "weight", "type": "float64", "field": "weight"}],
    }


def rtu(body: dict[str, Any], ports: SerialPorts) -> ModbusRtuDriver:
    return ModbusRtuDriver(ModbusRtuDeviceConfig.model_validate(body), [100], ports)


def node(body: dict[str, Any], ports: SerialPorts) -> McuNodeDriver:
    return McuNodeDriver(McuNodeDeviceConfig.model_validate(body), [200], ports)


def scale(body: dict[str, Any], ports: SerialPorts) -> SerialLineDriver:
    return SerialLineDriver(SerialLineDeviceConfig.model_validate(body), [300], ports)


async def test_mcu_nodes_own_their_line_against_modbus_and_an_instrument() -> None:
    ports = SerialPorts()
    async with McuNodeBus([3, 5], seed=2) as bus:
        path = bus.serial_path
        idle = fds_on(path)
        nodes = [node(node_device(f"node-{n}", path, n), ports) for n in (3, 5)]
        try:
            for driver in nodes:
                await driver.connect()
            assert nodes[0]._port is nodes[1]._port and fds_on(path) == idle + 1
            with pytest.raises(PortConflict) as refused:
                await rtu(rtu_device("meter", path), ports).connect()
            assert str(refused.value) == (
                f"serial port {path} is used by devices 'node-3', 'node-5' (mcu_node); device "
                "'meter' (modbus_rtu) cannot share it: the devices on one line must speak one "
                "protocol"
            )
            with pytest.raises(PortConflict, match=r"device 'scale' \(serial_line\) cannot"):
                await scale(scale_device("scale", path), ports).connect()
            # the refused claims hold nothing and opened nothing; the nodes read on
            assert ports.users(path) == ["node-3", "node-5"] and fds_on(path) == idle + 1
            got: list[SampleBatch] = []
            task = asyncio.create_task(nodes[1].subscribe(got.append))
            await until(lambda: sum(int((b.quality == Quality.GOOD).sum()) for b in got) >= 5)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        finally:
            for driver in nodes:
                await driver.close()
        assert not ports.paths() and fds_on(path) == idle  # the last release closed it


async def test_a_modbus_bus_refuses_an_mcu_node_and_serves_on() -> None:
    ports = SerialPorts()
    async with ModbusMeterSimulator(rtu=True) as sim:
        path = sim.serial_path
        idle = fds_on(path)
        meter = rtu(rtu_device("meter", path), ports)
        try:
            await meter.connect()
            (group,) = meter.poll_groups()
            assert (await meter.read(group)).quality.tolist() == [Quality.GOOD]
            intruder = node(node_device("spindle", path, 4), ports)
            with pytest.raises(DeviceUnreachable, match=(
                r"is used by device 'meter' \(modbus_rtu\); device 'spindle' \(mcu_node\) "
                "cannot share it")):
                await intruder.connect()
            assert not intruder.connected
            assert (await meter.read(group)).quality.tolist() == [Quality.GOOD]
            assert fds_on(path) == idle + 1
        finally:
            await meter.close()
        assert fds_on(path) == idle


async def test_an_instrument_needs_its_port_to_itself() -> None:
    ports = SerialPorts()
    async with ScaleSimulator(mode="stream", rate=50, seed=1) as sim:
        first = scale(scale_device("scale", sim.serial_path), ports)
        await first.connect()
        try:
            with pytest.raises(PortConflict, match=(
                r"used by device 'scale' \(serial_line\); device 'scale-2' cannot share it: "
                "a serial_line device needs the port to itself")):
                await scale(scale_device("scale-2", sim.serial_path), ports).connect()
            assert ports.users(sim.serial_path) == ["scale"]
        finally:
            await first.close()
        again = scale(scale_device("scale-2", sim.serial_path), ports)
        await again.connect()  # released: free for the next device
        await again.close()
        assert not ports.paths()


@pytest.mark.broker
async def test_the_gateway_hands_one_registry_to_its_devices(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    """Two RTU units share the bus; an MCU node on the same port is refused when the config
    is read and, when the ports only meet at run time (a by-id link made after the config
    was read), it is down with the reason naming the devices, and the units read on."""
    async with ModbusMeterSimulator(rtu=True) as sim:
        path = sim.serial_path
        meters = [rtu_device("meter", path), rtu_device("ghost", path, unit_id=9)]
        with pytest.raises(ConfigError) as refused:
            gateway_config(tmp_path, mosquitto.port, [*meters, node_device("spindle", path, 4)])
        assert [p.path_text for p in refused.value.problems] == ["devices[2].port"]
        link = tmp_path / "usb-node-if00"
        config = gateway_config(tmp_path, mosquitto.port,
                                [*meters, node_device("spindle", str(link), 4)])
        link.symlink_to(path)
        async with running(config) as gw:
            runners = gw.gateway.runners
            await until(lambda: runners["meter"].stats.polls >= 3)
            await until(lambda: runners["spindle"].stats.connect_failures >= 1)
            assert gw.gateway.serial_ports.users(path) == ["meter", "ghost"]
            assert runners["spindle"].stats.state.value == "down"
            assert runners["spindle"].stats.last_error == (
                f"serial port {link} (the port {path}) is used by devices 'meter', 'ghost' "
                "(modbus_rtu); device 'spindle' (mcu_node) cannot share it: the devices on one "
                "line must speak one protocol"
            )
            await gw.stop()
        assert not gw.gateway.serial_ports.paths()  # every device released the port


# -- the registry's rules, on its own ------------------------------------------------------
class Line:
    """A stand-in for a line's shared object: it only records being closed."""

    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def use(device: str, protocol: str = "modbus_rtu", baudrate: int = 9600,
        shared: bool = True) -> PortUse:
    return PortUse(device, protocol, LineSettings(baudrate), shared)


def test_claims_are_counted_and_the_last_release_closes(tmp_path: Path) -> None:
    ports = SerialPorts()
    made: list[Line] = []

    def make() -> Line:
        made.append(Line())
        return made[-1]

    a = ports.claim("/dev/ttyUSB0", use("a"), make)
    b = ports.claim("/dev/ttyUSB0", use("b"), make)
    assert a.port is b.port and len(made) == 1
    a.release()
    a.release()  # a second release gives nothing back twice
    assert made[0].closed == 0 and ports.users("/dev/ttyUSB0") == ["b"]
    b.release()
    assert made[0].closed == 1 and not ports.paths()
    c = ports.claim("/dev/ttyUSB0", use("c", baudrate=19200), make)  # free: any settings
    assert c.port is made[1]
    c.release()


def test_a_refused_claim_names_both_sides_and_holds_nothing() -> None:
    ports = SerialPorts()
    line = Line()
    ports.claim("/dev/ttyUSB0", use("meter", baudrate=19200), lambda: line)
    with pytest.raises(PortConflict, match=(
            "serial port /dev/ttyUSB0 is used by device 'meter' at 19200 baud 8N1; device "
            "'pump' asks for 9600 baud 8N1: the devices on one line must use the same "
            "baudrate, bytesize, parity and stopbits")):
        ports.claim("/dev/ttyUSB0", use("pump"), Line)
    with pytest.raises(PortConflict, match="needs the port to itself"):
        ports.claim("/dev/ttyUSB0", use("pump", baudrate=19200, shared=False), Line)
    assert ports.users("/dev/ttyUSB0") == ["meter"] and line.closed == 0


def test_a_port_that_cannot_be_made_is_not_held() -> None:
    ports = SerialPorts()

    def broken() -> Line:
        raise DeviceUnreachable("cannot open serial port /dev/ttyUSB7: no such file")

    with pytest.raises(DeviceUnreachable, match="cannot open"):
        ports.claim("/dev/ttyUSB7", use("a"), broken)
    assert not ports.paths()
