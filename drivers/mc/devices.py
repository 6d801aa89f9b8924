"""MELSEC devices: their names, binary device codes, number bases, and the address syntax.

An address is what GX Works shows: a device name and a number, ``D100``, ``M10``,
``W1A``, ``X17``, ``ZR4000``; a bit of a word device is ``D100.A`` (bit 0..F, hex as in
GX Works). The number is decimal or hexadecimal by device, except X and Y, whose
base follows the CPU series: octal on iQ-F (FX5: ``X17`` is the 16th input),
hexadecimal on Q, L and iQ-R (``X17`` is the 24th). The binary frame carries the
number as a plain integer: an iQ-F ``X20`` goes on the wire as 16, a Q ``X20`` as 32.

ZR is decimal here, as GX Works numbers it; some MC protocol manuals print it as
hexadecimal, which is about the ASCII frame's notation, not about the binary number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

#: MELSEC CPU series: ``q`` (MELSEC-Q and L), ``iq-r`` (iQ-R, iQ-L), ``iq-f`` (FX5)
PlcSeries = Literal["q", "iq-r", "iq-f"]
SERIES: tuple[PlcSeries, ...] = ("q", "iq-r", "iq-f")

#: bits in one word: a bit device read in word units packs 16 devices per word, LSB first
WORD_BITS = 16


@dataclass(frozen=True, slots=True)
class DeviceKind:
    """One MELSEC device: ``code`` is its binary device code, ``base`` its number base
    (0: X/Y, which follow the series)."""

    name: str
    code: int
    bit: bool
    base: int
    description: str
    #: ``None``: writable; otherwise why a write is refused
    read_only: str | None = None

    def number_base(self, series: PlcSeries) -> int:
        if self.base:
            return self.base
        return 8 if series == "iq-f" else 16

    def format_number(self, number: int, series: PlcSeries) -> str:
        """``number`` as the engineer writes it (``X17`` on iQ-F for 15)."""
        base = self.number_base(series)
        text = {8: f"{number:o}", 10: f"{number:d}", 16: f"{number:X}"}[base]
        return f"{self.name}{text}"


# fmt: off
#: the devices this driver reads, by name (codes: SLMP reference manual, device code list)
DEVICES: dict[str, DeviceKind] = {d.name: d for d in (
    DeviceKind("SM", 0x91, True, 10, "special relay"),
    DeviceKind("SD", 0xA9, False, 10, "special register"),
    DeviceKind("X", 0x9C, True, 0, "input",
               read_only="X are inputs, refreshed from the input modules every scan: "
                         "a written value would not stay"),
    DeviceKind("Y", 0x9D, True, 0, "output"),
    DeviceKind("M", 0x90, True, 10, "internal relay"),
    DeviceKind("L", 0x92, True, 10, "latch relay"),
    DeviceKind("F", 0x93, True, 10, "annunciator"),
    DeviceKind("V", 0x94, True, 10, "edge relay"),
    DeviceKind("B", 0xA0, True, 16, "link relay"),
    DeviceKind("SB", 0xA1, True, 16, "link special relay"),
    DeviceKind("D", 0xA8, False, 10, "data register"),
    DeviceKind("W", 0xB4, False, 16, "link register"),
    DeviceKind("SW", 0xB5, False, 16, "link special register"),
    DeviceKind("TN", 0xC2, False, 10, "timer current value"),
    DeviceKind("CN", 0xC5, False, 10, "counter current value"),
    DeviceKind("R", 0xAF, False, 10, "file register (block switching)"),
    DeviceKind("ZR", 0xB0, False, 10, "file register (serial number access)"),
)}
# fmt: on
#: device code -> device (the simulator and the frame decoder look codes up)
BY_CODE: dict[int, DeviceKind] = {d.code: d for d in DEVICES.values()}

#: device names, longest first: ``SM1`` is special relay 1, not step relay ``S`` M1
_NAMES = sorted(DEVICES, key=lambda n: (-len(n), n))
_ADDRESS = re.compile(
    r"^(?P<device>" + "|".join(_NAMES) + r")(?P<number>[0-9A-F]+)(?:\.(?P<bit>[0-9A-F]))?$"
)
_DIGITS = {8: "01234567", 10: "0123456789", 16: "0123456789ABCDEF"}


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed address: device, its number as on the wire, and a bit of a word device."""

    device: DeviceKind
    number: int
    bit: int | None = None

    def text(self, series: PlcSeries) -> str:
        base = self.device.format_number(self.number, series)
        return base if self.bit is None else f"{base}.{self.bit:X}"


def parse_address(text: str, series: PlcSeries) -> Address:
    """``D100``, ``x1f``, ``D100.A``: the device and its wire number; :class:`ValueError`
    with a readable reason for anything else (a name that is no device, a digit the
    device's base does not have)."""
    cleaned = text.strip().upper()
    match = _ADDRESS.match(cleaned)
    if match is None:
        head = re.match(r"^[A-Z]+", cleaned)
        if head is None or not any(head.group(0).startswith(n) for n in DEVICES):
            known = ", ".join(sorted(DEVICES))
            raise ValueError(f"{text!r} names no device this driver reads ({known})")
        raise ValueError(f"{text!r} is not an address: a device name, its number and "
                           "optionally .bit (0-F) of a word device, e.g. D100, X1F, D100.A")
    device = DEVICES[match.group("device")]
    digits = match.group("number")
    base = device.number_base(series)
    bad = [c for c in digits if c not in _DIGITS[base]]
    if bad:
        kind = {8: "octal", 10: "decimal", 16: "hexadecimal"}[base]
        why = f" on {series}" if device.base == 0 else ""
        raise ValueError(f"{text!r}: {device.name} numbers are {kind}{why} "
                           f"(digits {_DIGITS[base][0]}-{_DIGITS[base][-1]})")
    number = int(digits, base)
    bit_text = match.group("bit")
    if bit_text is not None and device.bit:
        raise ValueError(f"{text!r}: .bit is for word devices; {device.name} is a bit device")
    return Address(device, number, None if bit_text is None else int(bit_text, 16))
