"""OPC UA: config, value conversion, security set-up and the client driver (see README.md).

The driver and security modules import asyncua; they are loaded on first use of
:class:`OpcUaDriver` so that reading configs does not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drivers.opcua.config import (
    DataChangeDeadband,
    OpcUaDeviceConfig,
    OpcUaSecurity,
    OpcUaTagConfig,
)

if TYPE_CHECKING:
    from drivers.opcua.driver import OpcUaDriver

__all__ = [
    "DataChangeDeadband",
    "OpcUaDeviceConfig",
    "OpcUaDriver",
    "OpcUaSecurity",
    "OpcUaTagConfig",
]


def __getattr__(name: str) -> Any:
    if name == "OpcUaDriver":
        from drivers.opcua.driver import OpcUaDriver

        return OpcUaDriver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
