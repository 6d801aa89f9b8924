"""Serial-line instruments (protocol ``serial_line``): scales, barcode readers, analyzers.

Framing (``framing``) and parsing (``parsing``) are pure and have no I/O; the driver
(``driver``) imports pyserial and is loaded on first use of :class:`SerialLineDriver`.
See README.md in this folder for the config keys and examples.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drivers.serial_line.config import (
    FramingConfig,
    ParserConfig,
    SerialLineDeviceConfig,
    SerialLineTagConfig,
    unescape_bytes,
)
from drivers.serial_line.framing import (
    FixedLengthFramer,
    Framer,
    StartEndFramer,
    TerminatorFramer,
    make_framer,
)
from drivers.serial_line.parsing import FrameParser, ParsedFrame
from gateway.errors import InstrumentFrameRejected

if TYPE_CHECKING:
    from drivers.serial_line.driver import SerialLineDriver

__all__ = [
    "FixedLengthFramer",
    "FrameParser",
    "Framer",
    "FramingConfig",
    "InstrumentFrameRejected",
    "ParsedFrame",
    "ParserConfig",
    "SerialLineDeviceConfig",
    "SerialLineDriver",
    "SerialLineTagConfig",
    "StartEndFramer",
    "TerminatorFramer",
    "make_framer",
    "unescape_bytes",
]


def __getattr__(name: str) -> Any:
    if name == "SerialLineDriver":
        from drivers.serial_line import driver

        return driver.SerialLineDriver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
