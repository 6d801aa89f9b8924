"""Modbus TCP and RTU: config, request planner, register codec and the driver (see README.md).

The driver module imports pymodbus; it is loaded on first use of
:class:`ModbusTcpDriver` or :class:`ModbusRtuDriver` so that reading configs does not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drivers.modbus.codec import DecodePlan, Field, decode_value, encode, encode_string
from drivers.modbus.config import (
    ModbusDeviceConfig,
    ModbusRtuDeviceConfig,
    ModbusTagConfig,
    ModbusTcpDeviceConfig,
    PollGroupConfig,
)
from drivers.modbus.planner import ReadRequest, TagSpan, plan_requests
from gateway.errors import PlanError, RegisterDecodeError

if TYPE_CHECKING:
    from drivers.modbus.driver import ModbusDriver, ModbusRtuDriver, ModbusTcpDriver

__all__ = [
    "DecodePlan",
    "Field",
    "ModbusDeviceConfig",
    "ModbusDriver",
    "ModbusRtuDeviceConfig",
    "ModbusRtuDriver",
    "ModbusTagConfig",
    "ModbusTcpDeviceConfig",
    "ModbusTcpDriver",
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
    if name in ("ModbusDriver", "ModbusTcpDriver", "ModbusRtuDriver"):
        from drivers.modbus import driver

        return getattr(driver, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
