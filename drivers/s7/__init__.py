"""Siemens S7 over ISO-on-TCP: addresses, config, planner, codec and the driver (README.md).

The driver module imports python-snap7; it is loaded on first use of :class:`S7Driver`
so that reading configs does not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drivers.s7.address import S7_TYPES, Area, S7Address, S7Type, parse_address
from drivers.s7.config import S7DeviceConfig, S7PollGroup, S7TagConfig
from gateway.errors import PlanError, S7DecodeError
from gateway.lazy_names import lazy_names

if TYPE_CHECKING:
    from drivers.s7.codec import DecodePlan, Field, decode_value, encode
    from drivers.s7.driver import S7Driver
    from drivers.s7.planner import ReadPlan, ReadRequest, TagSpan, plan_reads

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


#: names read on first use, from the module that defines them: importing the package for
#: its config (the driver registry does) pays for neither these nor the driver (issue 21)
_LAZY = {
    "DecodePlan": "drivers.s7.codec",
    "Field": "drivers.s7.codec",
    "decode_value": "drivers.s7.codec",
    "encode": "drivers.s7.codec",
    "ReadPlan": "drivers.s7.planner",
    "ReadRequest": "drivers.s7.planner",
    "TagSpan": "drivers.s7.planner",
    "plan_reads": "drivers.s7.planner",
    "S7Driver": "drivers.s7.driver",
}


__getattr__ = lazy_names(__name__, _LAZY)
