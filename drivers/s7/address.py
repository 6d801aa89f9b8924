"""S7 addresses as a plant engineer writes them: ``DB1.DBD4:REAL``, ``MW10:INT``, ``I0.1``.

The syntax (the one of PLC4X and of the Siemens tools, with German mnemonics too)::

    [%] AREA [SIZE] OFFSET [.BIT] [:TYPE]

============  ==============================================================
AREA          ``DB<n>.DB`` data block n; ``M`` (or ``F``) memory (Merker);
              ``I``/``E`` inputs; ``Q``/``A`` outputs; ``V`` the V memory of an
              S7-200 SMART (it is DB1); ``T`` timers; ``C``/``Z`` counters
SIZE          ``X`` bit, ``B`` byte, ``W`` word (2 bytes), ``D`` double word (4 bytes),
              or nothing: a bit when ``.BIT`` follows, otherwise ``:TYPE`` says
OFFSET        the byte (timers and counters: the number of the timer or counter)
``.BIT``      0..7, for ``BOOL``
``:TYPE``     one of :data:`S7_TYPES` (``STRING[n]``, ``WSTRING[n]`` with their
              declared length; default 254); without it X is BOOL, B BYTE, W WORD,
              D DWORD, T S5TIME and C COUNTER
============  ==============================================================

So ``DB1.DBX0.1``, ``DB1.DBW2:INT``, ``DB1.DBD4:REAL``, ``DB1.DB8:LREAL``,
``DB2.DB0:STRING[20]``, ``MW10:INT``, ``MD20:REAL``, ``M3.7``, ``I0.1``, ``QB0``,
``VW100:INT`` (S7-200 SMART), ``T5``, ``C3``. A size letter and a type must agree
(``DB1.DBW4:REAL`` is an error: a REAL takes 4 bytes, a W names 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum

from gateway.config.spelling import closest
from gateway.types import DataType

__all__ = ["S7_TYPES", "Area", "S7Address", "S7Type", "parse_address"]

#: the largest byte offset an S7 address holds (24 bits of bit address)
MAX_BYTE = (1 << 21) - 1


class Area(IntEnum):
    """S7comm area codes (the value is the code on the wire)."""

    I = 0x81  # noqa: E741 (inputs, the plant's own letter)
    Q = 0x82
    M = 0x83
    DB = 0x84
    C = 0x1C
    T = 0x1D

    @property
    def per_element(self) -> bool:
        """Timers and counters are addressed by number, 2 bytes each, not by byte."""
        return self in (Area.T, Area.C)


@dataclass(frozen=True, slots=True)
class S7Type:
    """An S7 data type: its size on the PLC and the type it is published as."""

    name: str
    size: int  # bytes; strings: for the declared length 0 (see S7Address.size)
    published: DataType
    integer: bool = False
    signed: bool = False


_T = S7Type
#: every S7 type a tag can have, by name
S7_TYPES: dict[str, S7Type] = {t.name: t for t in (
    _T("BOOL", 1, DataType.BOOL),
    _T("BYTE", 1, DataType.UINT16, integer=True),
    _T("USINT", 1, DataType.UINT16, integer=True),
    _T("SINT", 1, DataType.INT16, integer=True, signed=True),
    _T("CHAR", 1, DataType.STRING),
    _T("WORD", 2, DataType.UINT16, integer=True),
    _T("UINT", 2, DataType.UINT16, integer=True),
    _T("INT", 2, DataType.INT16, integer=True, signed=True),
    _T("DWORD", 4, DataType.UINT32, integer=True),
    _T("UDINT", 4, DataType.UINT32, integer=True),
    _T("DINT", 4, DataType.INT32, integer=True, signed=True),
    _T("REAL", 4, DataType.FLOAT32),
    _T("LWORD", 8, DataType.UINT64, integer=True),
    _T("ULINT", 8, DataType.UINT64, integer=True),
    _T("LINT", 8, DataType.INT64, integer=True, signed=True),
    _T("LREAL", 8, DataType.FLOAT64),
    _T("STRING", 2, DataType.STRING),  # + declared length
    _T("WSTRING", 4, DataType.STRING),  # + 2 * declared length
    _T("DATE_AND_TIME", 8, DataType.STRING),
    _T("S5TIME", 2, DataType.FLOAT64),
    _T("COUNTER", 2, DataType.UINT16, integer=True),
)}
_ALIASES = {"DT": "DATE_AND_TIME", "TIMER": "S5TIME"}
#: size letter -> bytes, and the type it means without ``:TYPE``
_SIZE_LETTERS = {"X": (1, "BOOL"), "B": (1, "BYTE"), "W": (2, "WORD"), "D": (4, "DWORD")}
_AREA_LETTERS = {"M": Area.M, "F": Area.M, "I": Area.I, "E": Area.I, "Q": Area.Q, "A": Area.Q,
                 "T": Area.T, "C": Area.C, "Z": Area.C, "V": Area.DB}
STRING_DEFAULT = 254
STRING_MAX = 254
WSTRING_MAX = 16382

_RE = re.compile(
    r"""^%?(?:
        DB(?P<db>\d+)\.DB(?P<dbsize>[XBWD]?)(?P<dboff>\d+)
      | (?P<area>[MFIEQAVTCZ])(?P<size>[XBWD]?)(?P<off>\d+)
    )(?:\.(?P<bit>\d+))?(?::(?P<type>[A-Z_][A-Z0-9_]*)(?:[\[(](?P<len>\d+)[\])])?)?$""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class S7Address:
    """Where a tag lives and what it is: area, DB number, byte (or timer/counter number),
    bit, type and, for strings, the declared length."""

    area: Area
    db: int
    start: int
    type: S7Type
    bit: int | None = None
    length: int = 0  # declared characters of a STRING/WSTRING

    @property
    def size(self) -> int:
        """Bytes the value takes on the PLC (a STRING[n] n+2, a WSTRING[n] 2n+4)."""
        if self.type.name == "STRING":
            return 2 + self.length
        if self.type.name == "WSTRING":
            return 4 + 2 * self.length
        return self.type.size

    @property
    def units(self) -> int:
        """Size in the area's units: bytes, or timers/counters (one each)."""
        return 1 if self.area.per_element else self.size

    def text(self) -> str:
        """The canonical address (``DB1.DBD4:REAL``, ``MW10:INT``, ``I0.1``, ``T5``)."""
        where = f"DB{self.db}.DB" if self.area is Area.DB else self.area.name
        if self.area.per_element:
            default = "S5TIME" if self.area is Area.T else "COUNTER"
            kind = "" if self.type.name == default else f":{self.type.name}"
            return f"{where}{self.start}{kind}"
        letter = {1: "B", 2: "W", 4: "D"}.get(self.type.size, "")
        if self.type.name == "BOOL":
            return f"{where}{'X' if self.area is Area.DB else ''}{self.start}.{self.bit}"
        if self.type.name in ("STRING", "WSTRING"):
            return f"{where}{self.start}:{self.type.name}[{self.length}]"
        if self.type.name in ("DATE_AND_TIME",) or self.type.size == 8:
            letter = ""
        return f"{where}{letter}{self.start}:{self.type.name}"


def _len_text(length: str | None) -> str:
    return f"[{length}]" if length is not None else ""


def parse_address(text: str) -> S7Address:
    """The address ``text`` means; ValueError says what is wrong with it, in plain words."""
    if not isinstance(text, str):
        raise ValueError("an S7 address is text such as 'DB1.DBD4:REAL', 'MW10:INT' or 'I0.1'")
    match = _RE.match(text.strip().upper())
    if match is None:
        raise ValueError(
            f"{text!r} is not an S7 address: write e.g. 'DB1.DBD4:REAL', 'DB1.DBX0.1', "
            "'MW10:INT', 'I0.1', 'QB0', 'VW100:INT', 'T5' or 'C3' (see drivers/s7/README.md)"
        )
    g = match.groupdict()
    if g["db"] is not None:
        area, db, size, offset = Area.DB, int(g["db"]), g["dbsize"], int(g["dboff"])
        if not 1 <= db <= 65535:
            raise ValueError(f"{text!r}: DB numbers run from 1 to 65535")
    else:
        letter = g["area"]
        area, db, size, offset = _AREA_LETTERS[letter], 0, g["size"], int(g["off"])
        if letter == "V":
            db = 1  # the V memory of an S7-200 SMART is DB1 on the wire
    prefix = f"DB{db}.DB" if g["db"] is not None else g["area"]
    bit = int(g["bit"]) if g["bit"] is not None else None
    type_name = _ALIASES.get(g["type"] or "", g["type"] or "")
    if area.per_element:
        if size or bit is not None:
            raise ValueError(f"{text!r}: a timer or counter is named by its number alone "
                             f"({area.name}5)")
        default = "S5TIME" if area is Area.T else "COUNTER"
        type_name = type_name or default
        if type_name not in (default, "WORD", "INT"):
            raise ValueError(f"{text!r}: a {'timer' if area is Area.T else 'counter'} reads as "
                             f"{default} or as its raw WORD")
        if offset > 65535:
            raise ValueError(f"{text!r}: timer and counter numbers run to 65535")
        return S7Address(area, 0, offset, S7_TYPES[type_name])
    if type_name and type_name not in S7_TYPES:
        names = [n for n in S7_TYPES if n not in ("S5TIME", "COUNTER")]
        close = closest(g["type"], [*names, *_ALIASES])
        hint = f"did you mean {_ALIASES.get(close, close)!r}? " if close else ""
        raise ValueError(f"{text!r}: unknown type {g['type']!r}; {hint}S7 types are "
                         f"{', '.join(names)}")
    if type_name in ("S5TIME", "COUNTER"):
        raise ValueError(f"{text!r}: {type_name} is the type of timers (T) and counters (C)")
    if bit is not None:
        if size not in ("", "X"):
            raise ValueError(f"{text!r}: a bit address has the size letter X or none "
                             f"({prefix}X{offset}.{bit})")
        if type_name not in ("", "BOOL"):
            raise ValueError(f"{text!r}: an address with .bit is a BOOL, not {type_name}")
        if bit > 7:
            raise ValueError(f"{text!r}: bit {bit}: a byte has bits 0 to 7")
        type_name, size = "BOOL", "X"
    elif size == "X":
        raise ValueError(f"{text!r}: a bit address needs its bit number ({prefix}X{offset}.0)")
    if not type_name:
        if not size:
            raise ValueError(f"{text!r}: say the size (X, B, W, D) or the type "
                             f"(e.g. ':REAL', ':LREAL', ':STRING[20]')")
        type_name = _SIZE_LETTERS[size][1]
    s7type = S7_TYPES[type_name]
    if type_name == "BOOL" and bit is None:
        raise ValueError(f"{text!r}: a BOOL needs its bit (e.g. {text.split(':')[0]}.0)")
    fixed = type_name not in ("STRING", "WSTRING", "DATE_AND_TIME") and s7type.size <= 4
    if size and size != "X" and not fixed:
        raise ValueError(f"{text!r}: write a {type_name} without a size letter "
                         f"({prefix}{offset}:{g['type']}{_len_text(g['len'])})")
    if size and size != "X" and _SIZE_LETTERS[size][0] != s7type.size:
        raise ValueError(
            f"{text!r}: a {type_name} takes {s7type.size} byte{'s' if s7type.size > 1 else ''} "
            f"but the size letter {size} names {_SIZE_LETTERS[size][0]}")
    length = 0
    if type_name in ("STRING", "WSTRING"):
        limit = STRING_MAX if type_name == "STRING" else WSTRING_MAX
        length = int(g["len"]) if g["len"] is not None else STRING_DEFAULT
        if not 1 <= length <= limit:
            raise ValueError(f"{text!r}: a {type_name} holds 1 to {limit} characters")
    elif g["len"] is not None:
        raise ValueError(f"{text!r}: only STRING and WSTRING take a length in brackets")
    address = S7Address(area, db, offset, s7type, bit, length)
    if offset + address.size - 1 > MAX_BYTE:
        raise ValueError(f"{text!r}: byte offsets run to {MAX_BYTE}")
    return address
