"""Modbus TCP: config, request planner, register codec and the driver (see README.md).

The driver module imports pymodbus; it is loaded on first use of
:class:`ModbusTcpDriver` so that reading configs does not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drivers.modbus.codec import DecodeError, DecodePlan, Field, decode_value, encode
from drivers.modbus.config import ModbusTagConfig, ModbusTcpDeviceConfig
from drivers.modbus.planner import PlanError, ReadRequest, TagSpan, plan_requests

if TYPE_CHECKING:
    from drivers.modbus.driver import ModbusTcpDriver

__all__ = [
    "DecodeError",
    "DecodePlan",
    "Field",
    "ModbusTagConfig",
    "ModbusTcpDeviceConfig",
    "ModbusTcpDriver",
    "PlanError",
    "ReadRequest",
    "TagSpan",
    "decode_value",
    "encode",
    "plan_requests",
]


def __getattr__(name: str) -> Any:
    if name == "ModbusTcpDriver":
        from drivers.modbus.driver import ModbusTcpDriver

        return ModbusTcpDriver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
