"""Modbus on every transport: config, request planner, register codec and the drivers
(see README.md).

The driver module imports pymodbus; it is loaded on first use of a driver class so that
reading configs does not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drivers.modbus.codec import DecodePlan, Field, decode_value, encode, encode_string
from drivers.modbus.config import (
    ModbusAsciiDeviceConfig,
    ModbusDeviceConfig,
    ModbusDtuDeviceConfig,
    ModbusRtuDeviceConfig,
    ModbusRtuOverTcpDeviceConfig,
    ModbusTagConfig,
    ModbusTcpDeviceConfig,
    ModbusUdpDeviceConfig,
    PacketConfig,
    PollGroupConfig,
)
from drivers.modbus.planner import ReadRequest, TagSpan, plan_requests
from gateway.errors import PlanError, RegisterDecodeError

if TYPE_CHECKING:
    from drivers.modbus.driver import (
        ModbusAsciiDriver,
        ModbusDriver,
        ModbusDtuDriver,
        ModbusRtuDriver,
        ModbusRtuOverTcpDriver,
        ModbusTcpDriver,
        ModbusUdpDriver,
    )

_DRIVERS = ("ModbusDriver", "ModbusTcpDriver", "ModbusUdpDriver", "ModbusRtuDriver",
            "ModbusAsciiDriver", "ModbusRtuOverTcpDriver", "ModbusDtuDriver")

__all__ = [
    "DecodePlan",
    "Field",
    "ModbusAsciiDeviceConfig",
    "ModbusAsciiDriver",
    "ModbusDeviceConfig",
    "ModbusDriver",
    "ModbusDtuDeviceConfig",
    "ModbusDtuDriver",
    "ModbusRtuDeviceConfig",
    "ModbusRtuDriver",
    "ModbusRtuOverTcpDeviceConfig",
    "ModbusRtuOverTcpDriver",
    "ModbusTagConfig",
    "ModbusTcpDeviceConfig",
    "ModbusTcpDriver",
    "ModbusUdpDeviceConfig",
    "ModbusUdpDriver",
    "PacketConfig",
    "PlanError",
    "PollGroupConfig",
    "ReadRequest",
    "RegisterDecodeError",
    "TagSpan",
    "decode_value",
    "encode",
    "encode_string",
    "plan_requests",
]


def __getattr__(name: str) -> Any:
    if name in _DRIVERS:
        from drivers.modbus import driver

        return getattr(driver, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
