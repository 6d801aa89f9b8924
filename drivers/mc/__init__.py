"""Mitsubishi MELSEC on the MC protocol (SLMP), 3E and 4E binary frames over TCP and UDP:
config, device addressing, frames, request planner, value codec and the driver (README.md).

The driver module (asyncio sockets, no protocol library) is loaded on first use of
:class:`McDriver`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drivers.mc.config import McDeviceConfig, McTagConfig
from drivers.mc.devices import DEVICES, Address, DeviceKind, parse_address
from drivers.mc.end_codes import END_CODE_NAMES, describe_end_code
from drivers.mc.planner import BatchRead, RandomRead, TagSpan, plan_reads

if TYPE_CHECKING:
    from drivers.mc.driver import McDriver

__all__ = [
    "DEVICES",
    "END_CODE_NAMES",
    "Address",
    "BatchRead",
    "DeviceKind",
    "McDeviceConfig",
    "McDriver",
    "McTagConfig",
    "RandomRead",
    "TagSpan",
    "describe_end_code",
    "parse_address",
    "plan_reads",
]


def __getattr__(name: str) -> Any:
    if name == "McDriver":
        from drivers.mc import driver

        return driver.McDriver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
