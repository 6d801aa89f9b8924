"""Modbus TCP and RTU as the gateway knows them (listed in :mod:`drivers.registry`)."""

from __future__ import annotations

from drivers.modbus.config import ModbusRtuDeviceConfig, ModbusTcpDeviceConfig
from drivers.registration import DriverRegistration

_METRICS = "drivers.modbus.metrics:modbus_unit_metrics"
_TOOLS = {"scan": "drivers.modbus.scan_cmd:scan"}

REGISTRATIONS = (
    DriverRegistration(
        config=ModbusTcpDeviceConfig,
        driver="drivers.modbus.driver:ModbusTcpDriver",
        writes=True,
        metrics=_METRICS,
        tools=_TOOLS,
        family="modbus",
    ),
    DriverRegistration(
        config=ModbusRtuDeviceConfig,
        driver="drivers.modbus.driver:ModbusRtuDriver",
        serial="shared",  # the units of one RS-485 bus share its port
        writes=True,
        metrics=_METRICS,
        tools=_TOOLS,
        family="modbus",
    ),
)
