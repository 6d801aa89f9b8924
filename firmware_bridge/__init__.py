"""The serial link to microcontroller sensor nodes (see README.md and PROTOCOL.md).

Framing and messages (``cobs``, ``crc``, ``frames``, ``messages``) depend on nothing of
the gateway but its errors; the driver (``driver``, protocol ``mcu_node``), its config and
its firmware-update capability (``firmware``) are declared in ``registration``. The
driver module imports pyserial: it is loaded on first use of :class:`McuNodeDriver`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from firmware_bridge.config import McuNodeDeviceConfig, McuNodeTagConfig
from firmware_bridge.frames import BadFrame, Frame, FrameDecoder, MessageType
from gateway.errors import NodeFrameError

if TYPE_CHECKING:
    from firmware_bridge.driver import McuNodeDriver

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


def __getattr__(name: str) -> Any:
    if name == "McuNodeDriver":
        from firmware_bridge.driver import McuNodeDriver

        return McuNodeDriver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
