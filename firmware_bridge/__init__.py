"""The serial link to microcontroller sensor nodes (see README.md and PROTOCOL.md).

Framing and messages (``cobs``, ``crc``, ``frames``, ``messages``) depend on nothing of
the gateway but its errors; the driver (``driver``, protocol ``mcu_node``), its config and
its firmware-update capability (``firmware``) are declared in ``registration``. The
driver module imports pyserial: it is loaded on first use of :class:`McuNodeDriver`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from firmware_bridge.config import McuNodeDeviceConfig, McuNodeTagConfig
from gateway.errors import NodeFrameError
from gateway.lazy_names import lazy_names

if TYPE_CHECKING:
    from firmware_bridge.driver import McuNodeDriver
    from firmware_bridge.frames import BadFrame, Frame, FrameDecoder, MessageType

__all__ = [
    "BadFrame",
    "Frame",
    "FrameDecoder",
    "McuNodeDeviceConfig",
    "McuNodeDriver",
    "McuNodeTagConfig",
    "MessageType",
    "NodeFrameError",
]


#: names read on first use, from the module that defines them: importing the package for
#: its config (the driver registry does) pays for neither these nor the driver (issue 21)
_LAZY = {
    "BadFrame": "firmware_bridge.frames",
    "Frame": "firmware_bridge.frames",
    "FrameDecoder": "firmware_bridge.frames",
    "MessageType": "firmware_bridge.frames",
    "McuNodeDriver": "firmware_bridge.driver",
}


__getattr__ = lazy_names(__name__, _LAZY)
