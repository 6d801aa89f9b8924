"""Omron FINS over UDP and TCP: address syntax, frames, config, request planner and the
driver (see README.md).

The driver module is loaded on first use of :class:`FinsDriver`, so that reading configs
does not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drivers.fins.address import AREAS, Address, Area, parse_address
from drivers.fins.config import FinsDeviceConfig, FinsPollGroup, FinsTagConfig
from drivers.fins.frames import EndCode, Frame, Route, parse_frame
from drivers.fins.planner import ReadRequest, TagSpan, plan_requests

if TYPE_CHECKING:
    from drivers.fins.driver import FinsDriver

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


def __getattr__(name: str) -> Any:
    if name == "FinsDriver":
        from drivers.fins import driver

        return driver.FinsDriver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
