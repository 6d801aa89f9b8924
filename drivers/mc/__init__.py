"""Mitsubishi MELSEC on the MC protocol (SLMP), 3E and 4E binary frames over TCP and UDP:
config, device addressing, frames, request planner, value codec and the driver (README.md).

The driver module (asyncio sockets, no protocol library) is loaded on first use of
:class:`McDriver`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drivers.mc.config import McDeviceConfig, McTagConfig
from drivers.mc.devices import DEVICES, Address, DeviceKind, parse_address
from gateway.lazy_names import lazy_names

if TYPE_CHECKING:
    from drivers.mc.driver import McDriver
    from drivers.mc.end_codes import END_CODE_NAMES, describe_end_code
    from drivers.mc.planner import BatchRead, RandomRead, TagSpan, plan_reads

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


#: names read on first use, from the module that defines them: importing the package for
#: its config (the driver registry does) pays for neither these nor the driver (issue 21)
_LAZY = {
    "END_CODE_NAMES": "drivers.mc.end_codes",
    "describe_end_code": "drivers.mc.end_codes",
    "BatchRead": "drivers.mc.planner",
    "RandomRead": "drivers.mc.planner",
    "TagSpan": "drivers.mc.planner",
    "plan_reads": "drivers.mc.planner",
    "McDriver": "drivers.mc.driver",
}


__getattr__ = lazy_names(__name__, _LAZY)
