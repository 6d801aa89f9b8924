"""Siemens S7 over ISO-on-TCP: addresses, config, planner, codec and the driver (README.md).

The driver module imports python-snap7; it is loaded on first use of :class:`S7Driver`
so that reading configs does not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drivers.s7.address import S7_TYPES, Area, S7Address, S7Type, parse_address
from drivers.s7.codec import DecodePlan, Field, decode_value, encode
from drivers.s7.config import S7DeviceConfig, S7PollGroup, S7TagConfig
from drivers.s7.planner import ReadPlan, ReadRequest, TagSpan, plan_reads
from gateway.errors import PlanError, S7DecodeError

if TYPE_CHECKING:
    from drivers.s7.driver import S7Driver

__all__ = [
    "S7_TYPES",
    "Area",
    "DecodePlan",
    "Field",
    "PlanError",
    "ReadPlan",
    "ReadRequest",
    "S7Address",
    "S7DecodeError",
    "S7DeviceConfig",
    "S7Driver",
    "S7PollGroup",
    "S7TagConfig",
    "S7Type",
    "TagSpan",
    "decode_value",
    "encode",
    "parse_address",
    "plan_reads",
]


def __getattr__(name: str) -> Any:
    if name == "S7Driver":
        from drivers.s7 import driver

        return driver.S7Driver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
