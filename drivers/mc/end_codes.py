"""End codes a MELSEC CPU or Ethernet module answers instead of data, in words.

An answer with an end code other than 0 carries no data: its tags are BAD and
the driver counts ``mc_end_code_<code>`` (four hex digits, ``mc_end_code_c056``;
FINS counts its own as ``end_code_<code>``). The
codes below are the ones a gateway that reads and writes devices meets; the
SLMP reference manual and the CPU's user manual list the rest (4000H-4FFFH are
the CPU's own errors).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["END_CODE_NAMES", "counter_of", "describe_end_code"]

# fmt: off
END_CODE_NAMES: Mapping[int, str] = MappingProxyType({
    0x4000: "CPU: serial communication sum check error",
    0x4001: "CPU: the request is not supported",
    0x4002: "CPU: the request is not supported",
    0x4005: "CPU: too much data in the request",
    0x4010: "CPU: cannot do this while the CPU runs",
    0x4013: "CPU: cannot do this unless the CPU is stopped",
    0x4030: "CPU: the device cannot be used in this CPU",
    0x4031: "CPU: the device number is out of the CPU's range",
    0x4032: "CPU: wrong device modification",
    0x4080: "CPU: request data error",
    0x408B: "CPU: the remote request cannot be executed",
    0xC050: "ASCII data that cannot be converted to binary",
    0xC051: "too many bit points for a batch read or write",
    0xC052: "too many (or no) word points for a batch read or write",
    0xC053: "too many bit points for a random access",
    0xC054: "too many word points for a random read or write",
    0xC055: "file size or address out of range",
    0xC056: "the device range is exceeded (address past the device's last number)",
    0xC057: "the request's length does not match its data",
    0xC058: "the request's length does not match (ASCII)",
    0xC059: "command or subcommand not supported",
    0xC05B: "the CPU cannot read or write this device",
    0xC05C: "request content error (e.g. a word device addressed in bit units)",
    0xC05F: "the request cannot be executed on this CPU",
    0xC060: "request content error in bit device data",
    0xC061: "the request's data length does not match its points",
    0xC062: "writing is prohibited while the CPU runs (online write disabled)",
    0xC06F: "ASCII request to a binary port, or binary to an ASCII port",
    0xC070: "device memory extension cannot be specified for this station",
    0xC0B5: "the CPU cannot handle the data",
    0xC0DE: "no answer from the station the request was routed to",
    0xC1A7: "wrong network number",
    0xC1A8: "wrong station number",
    0xC200: "remote password error",
    0xC201: "the port is locked by a remote password",
})
# fmt: on

_PREFIX = "mc_end_code_"


def counter_of(code: int) -> str:
    """The error counter of ``code``: ``mc_end_code_c056``."""
    return f"{_PREFIX}{code:04x}"


def code_of(counter: str) -> int | None:
    """The end code of an ``mc_end_code_xxxx`` counter; None for any other name."""
    digits = counter.removeprefix(_PREFIX)
    if not counter.startswith(_PREFIX) or len(digits) != 4:
        return None
    try:
        return int(digits, 16)
    except ValueError:
        return None


def describe_end_code(code: int) -> str:
    """``C056H (the device range is exceeded ...)``, as an engineer looks it up."""
    name = END_CODE_NAMES.get(code)
    if name is None:
        name = ("a CPU error: see the CPU's manual" if 0x4000 <= code <= 0x4FFF
                else "a code this driver has no words for: see the SLMP manual")
    return f"{code:04X}H ({name})"
