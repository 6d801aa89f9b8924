"""Omron memory addresses as plants write them: ``D100``, ``CIO100.05``, ``W10.3``, ``E0_100``.

The syntax (case does not matter, no spaces):

=================  ===========================================================
``D100``           data memory (DM) word 100; ``DM100`` is the same
``CIO100``         CIO word 100 (the I/O and internal relay area)
``W10``            work area word 10
``H20``            holding area word 20
``A500``           auxiliary area word 500 (A0..A447 are read-only)
``E0_100``         extended data memory (EM) bank 0, word 100; the bank is
                   hexadecimal as CX-Programmer writes it (``E0_`` .. ``EF_``,
                   ``E10_`` .. ``E18_``: banks 0..24)
``<word>.NN``      bit NN (0..15, ``.5`` or ``.05``) of that word:
                   ``CIO100.05``, ``W10.3``, ``H20.15``, ``D100.00``, ``E1_4.7``
=================  ===========================================================

A bit address is read and written with the area's bit access (one bit, the
other fifteen untouched); a word address with word access. Each area has a
FINS memory area code for word access and one for bit access (CS/CJ/CP/NJ mode,
Omron's FINS reference W342); :data:`AREAS` holds them with the largest word
address any CS/CJ-series CPU has. A CPU with less memory answers end code 11 03
(address range error) for addresses it does not have.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["AREAS", "AREA_BY_CODE", "EM_BANKS", "Address", "Area", "parse_address"]


@dataclass(frozen=True, slots=True)
class Area:
    """One memory area: its name in addresses, FINS area codes and size."""

    name: str
    word_code: int
    bit_code: int
    words: int  # word addresses 0 .. words - 1
    read_only_below: int = 0  # words below this are read-only (A0..A447)
    bank: int | None = None  # EM bank number


#: EM banks 0..24 (0x00..0x18): CJ2H-CPU68 has the most
EM_BANKS = 25


def _em_area(bank: int) -> Area:
    word = 0xA0 + bank if bank < 16 else 0x60 + bank - 16
    bit = 0x20 + bank if bank < 16 else 0xE0 + bank - 16
    return Area(f"E{bank:X}_", word, bit, 32768, bank=bank)


#: area name (as in an address, upper case) -> area; EM banks by ``E<bank hex>_``
AREAS: dict[str, Area] = {
    "CIO": Area("CIO", 0xB0, 0x30, 6144),
    "W": Area("W", 0xB1, 0x31, 512),
    "H": Area("H", 0xB2, 0x32, 1536),
    "A": Area("A", 0xB3, 0x33, 960, read_only_below=448),
    "D": Area("D", 0x82, 0x02, 32768),
    **{f"E{bank:X}_": _em_area(bank) for bank in range(EM_BANKS)},
}
#: FINS area code -> (area, is a bit code)
AREA_BY_CODE: dict[int, tuple[Area, bool]] = {
    **{a.word_code: (a, False) for a in AREAS.values()},
    **{a.bit_code: (a, True) for a in AREAS.values()},
}

_ADDRESS = re.compile(
    r"^(?P<area>CIO|DM|D|W|H|A|E(?P<bank>[0-9A-F]{1,2})_)(?P<word>\d{1,5})"
    r"(?:\.(?P<bit>\d{1,2}))?$",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Address:
    """A word, or one bit of a word, in one memory area."""

    area: Area
    word: int
    bit: int | None = None

    @property
    def is_bit(self) -> bool:
        return self.bit is not None

    @property
    def code(self) -> int:
        """The FINS memory area code for this access (bit or word)."""
        return self.area.bit_code if self.is_bit else self.area.word_code

    @property
    def bit_index(self) -> int:
        """Position in the area counted in bits (word * 16 + bit), for bit ranges."""
        return self.word * 16 + (self.bit or 0)

    def __str__(self) -> str:
        text = f"{self.area.name}{self.word}"
        return text if self.bit is None else f"{text}.{self.bit:02d}"


def parse_address(text: str) -> Address:
    """``text`` as an :class:`Address`; :class:`ValueError` says what is wrong and what
    is expected."""
    if not isinstance(text, str):
        raise ValueError(f"an address is a text such as D100 or CIO0.05, not {text!r}")
    match = _ADDRESS.match(text.strip())
    if match is None:
        raise ValueError(
            f"{text!r} is not an Omron address: write D100 (or DM100), CIO100, W10, H20, "
            "A500, E0_100 (EM bank 0), with .NN for a bit (CIO100.05, W10.3)"
        )
    name = match["area"].upper()
    if match["bank"] is not None:
        bank = int(match["bank"], 16)
        if bank >= EM_BANKS:
            raise ValueError(
                f"{text!r}: EM bank {match['bank'].upper()} (hex) does not exist; banks are "
                f"E0_ .. E{EM_BANKS - 1:X}_ (hexadecimal, as CX-Programmer writes them)"
            )
        name = f"E{bank:X}_"
    elif name == "DM":
        name = "D"
    area = AREAS[name]
    word = int(match["word"])
    if word >= area.words:
        raise ValueError(
            f"{text!r}: word {word} is beyond the {_area_words(area)} area "
            f"({area.name}0 .. {area.name}{area.words - 1})"
        )
    bit = None if match["bit"] is None else int(match["bit"])
    if bit is not None and bit > 15:
        raise ValueError(f"{text!r}: bit {bit} does not exist; a word has bits 00 .. 15")
    return Address(area, word, bit)


def _area_words(area: Area) -> str:
    if area.bank is not None:
        return f"EM bank {area.bank:X}"
    return {"D": "DM", "CIO": "CIO", "W": "work (W)", "H": "holding (H)",
            "A": "auxiliary (A)"}[area.name]
