"""Omron FINS over UDP and TCP: address syntax, frames, config, request planner and the
driver (see README.md).

The driver module is loaded on first use of :class:`FinsDriver`, so that reading configs
does not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drivers.fins.address import AREAS, Address, Area, parse_address
from drivers.fins.config import FinsDeviceConfig, FinsPollGroup, FinsTagConfig
from gateway.lazy_names import lazy_names

if TYPE_CHECKING:
    from drivers.fins.driver import FinsDriver
    from drivers.fins.frames import EndCode, Frame, Route, parse_frame
    from drivers.fins.planner import ReadRequest, TagSpan, plan_requests

__all__ = [
    "AREAS",
    "Address",
    "Area",
    "EndCode",
    "FinsDeviceConfig",
    "FinsDriver",
    "FinsPollGroup",
    "FinsTagConfig",
    "Frame",
    "ReadRequest",
    "Route",
    "TagSpan",
    "parse_address",
    "parse_frame",
    "plan_requests",
]


#: names read on first use, from the module that defines them: importing the package for
#: its config (the driver registry does) pays for neither these nor the driver (issue 21)
_LAZY = {
    "EndCode": "drivers.fins.frames",
    "Frame": "drivers.fins.frames",
    "Route": "drivers.fins.frames",
    "parse_frame": "drivers.fins.frames",
    "ReadRequest": "drivers.fins.planner",
    "TagSpan": "drivers.fins.planner",
    "plan_requests": "drivers.fins.planner",
    "FinsDriver": "drivers.fins.driver",
}


__getattr__ = lazy_names(__name__, _LAZY)
