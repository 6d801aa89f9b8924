"""Devices on one serial port that cannot share it are refused when the config is read,
at the second device's ``port``, naming both devices (not only when it connects).

Which drivers use a serial port, and whether they share a line or need the port
alone, comes from their registrations; the rules are the runtime's
(:class:`gateway.serial_ports.SerialPorts`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import pytest

from drivers.registration import DriverRegistration
from drivers.registry import REGISTRY
from gateway.config.device import DeviceConfig
from gateway.config.loader import load_config_text
from gateway.errors import ConfigError
from gateway.serial_ports import LineSettings

TAGS = {
    "modbus_rtu": "[{name: v, address: 0, type: uint16}]",
    "mcu_node": "[{name: t, sensor: temperature}]",
    "serial_line": "[{name: w, field: weight, type: float64}]",
}
EXTRA = {
    "mcu_node": "node_id: {n}",
    "modbus_rtu": "unit_id: {n}",
    "serial_line": "framing: {{terminator: '\\n'}}\n    parser: {{regex: '(?P<weight>[0-9.]+)'}}",
}


def config(*devices: dict[str, Any]) -> str:
    """A config with one device block per ``devices`` entry (protocol, port, extra keys)."""
    text = "gateway: {id: gw-1, site: plant, line: line-1}\ndevices:\n"
    for n, d in enumerate(devices, start=1):
        protocol = d["protocol"]
        text += f"  - name: dev-{n}\n    protocol: {protocol}\n    port: {d['port']}\n"
        text += f"    {EXTRA[protocol].format(n=n)}\n"
        for key, value in d.items():
            if key not in ("protocol", "port"):
                text += f"    {key}: {value}\n"
        text += f"    tags: {TAGS[protocol]}\n"
    return text


def port_problems(text: str) -> list[tuple[int, str, str]]:
    try:
        load_config_text(text, "cfg.yaml")
    except ConfigError as exc:
        return [(p.line, p.path_text, p.message) for p in exc.problems]
    return []


def test_devices_that_share_a_line_are_accepted() -> None:
    assert port_problems(config(
        {"protocol": "modbus_rtu", "port": "/dev/ttyUSB0", "baudrate": 19200},
        {"protocol": "modbus_rtu", "port": "/dev/ttyUSB0", "baudrate": 19200},
        {"protocol": "mcu_node", "port": "/dev/ttyUSB1"},
        {"protocol": "mcu_node", "port": "/dev/ttyUSB1"},
        {"protocol": "serial_line", "port": "/dev/ttyUSB2"},
    )) == []


def test_another_protocol_on_the_line_is_refused_at_its_port() -> None:
    found = port_problems(config(
        {"protocol": "modbus_rtu", "port": "/dev/ttyUSB0"},
        {"protocol": "mcu_node", "port": "/dev/ttyUSB0"},
    ))
    assert found == [(
        10, "devices[1].port",
        "serial port /dev/ttyUSB0 is used by device 'dev-1' (modbus_rtu); device 'dev-2' "
        "(mcu_node) cannot share it: the devices on one line must speak one protocol",
    )]


def test_other_line_settings_on_the_line_are_refused() -> None:
    (found,) = port_problems(config(
        {"protocol": "modbus_rtu", "port": "/dev/ttyUSB0", "baudrate": 9600},
        {"protocol": "modbus_rtu", "port": "/dev/ttyUSB0", "baudrate": 9600},
        {"protocol": "modbus_rtu", "port": "/dev/ttyUSB0", "baudrate": 19200, "parity": "E"},
    ))
    assert found == (
        17, "devices[2].port",
        "serial port /dev/ttyUSB0 is used by devices 'dev-1', 'dev-2' at 9600 baud 8N1; "
        "device 'dev-3' asks for 19200 baud 8E1: the devices on one line must use the same "
        "baudrate, bytesize, parity and stopbits",
    )


def test_an_instrument_needs_its_port_alone() -> None:
    found = port_problems(config(
        {"protocol": "serial_line", "port": "/dev/ttyS0"},
        {"protocol": "serial_line", "port": "/dev/ttyS0"},
    ))
    assert [(line, path) for line, path, _ in found] == [(11, "devices[1].port")]
    assert "device 'dev-2' cannot share it: a serial_line device needs the port to itself" \
        in found[0][2] and "used by device 'dev-1'" in found[0][2]


def test_a_disabled_device_claims_no_port() -> None:
    assert port_problems(config(
        {"protocol": "modbus_rtu", "port": "/dev/ttyUSB0"},
        {"protocol": "mcu_node", "port": "/dev/ttyUSB0", "enabled": "false"},
    )) == []


def test_a_link_and_the_port_it_names_are_one_port(tmp_path: Path) -> None:
    port = tmp_path / "ttyUSB0"
    port.touch()
    link = tmp_path / "usb-FTDI-if00-port0"
    os.symlink(port, link)
    found = port_problems(config(
        {"protocol": "mcu_node", "port": str(port)},
        {"protocol": "serial_line", "port": str(link)},
    ))
    assert [(line, path) for line, path, _ in found] == [(10, "devices[1].port")]
    assert f"serial port {link} (the port {port}) is used by device 'dev-1'" in found[0][2]


def test_a_device_invalid_on_its_own_gets_its_own_errors_only() -> None:
    found = port_problems(config(
        {"protocol": "modbus_rtu", "port": "/dev/ttyUSB0"},
        {"protocol": "mcu_node", "port": "/dev/ttyUSB0", "baudrate": 7},
    ))
    assert [(line, path) for line, path, _ in found] == [(12, "devices[1].baudrate")]


class LoopDeviceConfig(DeviceConfig):
    """A serial driver known only by its registration (for the test below)."""

    protocol: Literal["test_loop"]
    port: str
    baudrate: int = 9600

    @property
    def line_settings(self) -> LineSettings:
        return LineSettings(self.baudrate)


def test_a_new_serial_driver_is_checked_by_its_registration_alone() -> None:
    drivers = REGISTRY.including(DriverRegistration(
        config=LoopDeviceConfig, driver="tests.no_such_module:Driver", serial="shared"))
    loop = "  - {name: loop-%d, protocol: test_loop, port: /dev/ttyUSB0, baudrate: %d, " \
           "tags: [{name: v, type: float64}]}\n"
    text = config({"protocol": "mcu_node", "port": "/dev/ttyUSB1"})
    assert load_config_text(text + loop % (2, 9600) + loop % (3, 9600), "cfg.yaml",
                            drivers=drivers).devices[2].protocol == "test_loop"
    with pytest.raises(ConfigError) as refused:
        load_config_text(text + loop % (2, 9600) + loop % (3, 19200), "cfg.yaml",
                         drivers=drivers)
    (problem,) = refused.value.problems
    assert (problem.line, problem.path_text) == (9, "devices[2].port")
    assert "used by device 'loop-2' at 9600 baud 8N1; device 'loop-3' asks for 19200" \
        in problem.message
    with pytest.raises(ConfigError) as refused:
        load_config_text(config({"protocol": "mcu_node", "port": "/dev/ttyUSB0"}) +
                         loop % (2, 115200), "cfg.yaml", drivers=drivers)
    assert "used by device 'dev-1' (mcu_node); device 'loop-2' (test_loop) cannot share it" \
        in str(refused.value)
