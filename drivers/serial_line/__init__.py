"""Serial-line instruments (protocol ``serial_line``): scales, barcode readers, analyzers.

Framing (``framing``) and parsing (``parsing``) are pure and have no I/O; the driver
(``driver``) imports pyserial and is loaded on first use of :class:`SerialLineDriver`.
See README.md in this folder for the config keys and examples.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drivers.serial_line.config import (
    FramingConfig,
    ParserConfig,
    SerialLineDeviceConfig,
    SerialLineTagConfig,
    unescape_bytes,
)
from gateway.errors import InstrumentFrameRejected
from gateway.lazy_names import lazy_names

if TYPE_CHECKING:
    from drivers.serial_line.driver import SerialLineDriver
    from drivers.serial_line.framing import (
        FixedLengthFramer,
        Framer,
        StartEndFramer,
        TerminatorFramer,
        make_framer,
    )
    from drivers.serial_line.parsing import FrameParser, ParsedFrame

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


#: names read on first use, from the module that defines them: importing the package for
#: its config (the driver registry does) pays for neither these nor the driver (issue 21)
_LAZY = {
    "FixedLengthFramer": "drivers.serial_line.framing",
    "Framer": "drivers.serial_line.framing",
    "StartEndFramer": "drivers.serial_line.framing",
    "TerminatorFramer": "drivers.serial_line.framing",
    "make_framer": "drivers.serial_line.framing",
    "FrameParser": "drivers.serial_line.parsing",
    "ParsedFrame": "drivers.serial_line.parsing",
    "SerialLineDriver": "drivers.serial_line.driver",
}


__getattr__ = lazy_names(__name__, _LAZY)
