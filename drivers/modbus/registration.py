"""Modbus over every transport the gateway speaks (listed in :mod:`drivers.registry`):
TCP, UDP, RTU and ASCII on serial lines, RTU through a serial device server, and RTU
through 4G DTUs that dial in. One protocol name per transport (README.md says why)."""

from __future__ import annotations

from typing import Any

from drivers.modbus.config import (
    ModbusAsciiDeviceConfig,
    ModbusDtuDeviceConfig,
    ModbusRtuDeviceConfig,
    ModbusRtuOverTcpDeviceConfig,
    ModbusTcpDeviceConfig,
    ModbusUdpDeviceConfig,
)
from drivers.registration import DriverRegistration
from gateway.config.device import DeviceConfig


def _modbus(config: type[DeviceConfig], driver: str, **kw: Any) -> DriverRegistration:
    """A Modbus transport: writes, the per-unit metrics, the family ``modbus``."""
    return DriverRegistration(config=config, driver=f"drivers.modbus.driver:{driver}",
                              writes=True, metrics="drivers.modbus.metrics:modbus_unit_metrics",
                              family="modbus", **kw)


_SCAN = {"scan": "drivers.modbus.scan_cmd:scan"}
_API_SCAN = {"scan": "drivers.modbus.scan_cmd:scan_for_api"}

REGISTRATIONS = (
    _modbus(ModbusTcpDeviceConfig, "ModbusTcpDriver", tools=_SCAN, discovery=_API_SCAN),
    # the units of one RS-485 bus share its port (and an ASCII line carries ASCII only)
    _modbus(ModbusRtuDeviceConfig, "ModbusRtuDriver", serial="shared", tools=_SCAN,
            discovery=_API_SCAN),
    _modbus(ModbusAsciiDeviceConfig, "ModbusAsciiDriver", serial="shared"),
    _modbus(ModbusUdpDeviceConfig, "ModbusUdpDriver"),
    _modbus(ModbusRtuOverTcpDeviceConfig, "ModbusRtuOverTcpDriver"),
    # DTUs dial in to a port the DTU devices share
    _modbus(ModbusDtuDeviceConfig, "ModbusDtuDriver", listens=True),
)
