"""Modbus over every transport the gateway speaks (listed in :mod:`drivers.registry`):
TCP, UDP, RTU and ASCII on serial lines, RTU through a serial device server, and RTU
through 4G DTUs that dial in. One protocol name per transport (config.py says why)."""

from __future__ import annotations

from drivers.modbus.config import (
    ModbusAsciiDeviceConfig,
    ModbusDtuDeviceConfig,
    ModbusRtuDeviceConfig,
    ModbusRtuOverTcpDeviceConfig,
    ModbusTcpDeviceConfig,
    ModbusUdpDeviceConfig,
)
from drivers.registration import DriverRegistration

_METRICS = "drivers.modbus.metrics:modbus_unit_metrics"
_TOOLS = {"scan": "drivers.modbus.scan_cmd:scan"}
_DRIVER = "drivers.modbus.driver:"

REGISTRATIONS = (
    DriverRegistration(
        config=ModbusTcpDeviceConfig,
        driver=_DRIVER + "ModbusTcpDriver",
        writes=True,
        metrics=_METRICS,
        tools=_TOOLS,
        family="modbus",
    ),
    DriverRegistration(
        config=ModbusRtuDeviceConfig,
        driver=_DRIVER + "ModbusRtuDriver",
        serial="shared",  # the units of one RS-485 bus share its port
        writes=True,
        metrics=_METRICS,
        tools=_TOOLS,
        family="modbus",
    ),
    DriverRegistration(
        config=ModbusAsciiDeviceConfig,
        driver=_DRIVER + "ModbusAsciiDriver",
        serial="shared",  # an ASCII line is shared by ASCII devices only
        writes=True,
        metrics=_METRICS,
        family="modbus",
    ),
    DriverRegistration(
        config=ModbusUdpDeviceConfig,
        driver=_DRIVER + "ModbusUdpDriver",
        writes=True,
        metrics=_METRICS,
        family="modbus",
    ),
    DriverRegistration(
        config=ModbusRtuOverTcpDeviceConfig,
        driver=_DRIVER + "ModbusRtuOverTcpDriver",
        writes=True,
        metrics=_METRICS,
        family="modbus",
    ),
    DriverRegistration(
        config=ModbusDtuDeviceConfig,
        driver=_DRIVER + "ModbusDtuDriver",
        listens=True,  # DTUs dial in to a port the DTU devices share
        writes=True,
        metrics=_METRICS,
        family="modbus",
    ),
)
