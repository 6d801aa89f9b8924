"""The shipped tables of standard data identifiers (``tables/*.yaml``, see tables/README.md).

A tag names its data identifier by code (``di: "00010000"``) or by the table's name for
it (``di: energy.import.total``); the table gives the format, sign, unit and where in the
identifier's data the value sits. Identifiers the tables do not have are given with
their format in the tag (``format: XX.XX``).

The tables are read once, on first use, with the gateway's YAML reader: a broken table
is reported with its file, line and key.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from drivers.dlt645.codec import Format, Version
from gateway.config.types import StrictModel

TABLES = Path(__file__).resolve().parent / "tables"
_FILES = {2007: "dlt645_2007.yaml", 1997: "dlt645_1997.yaml"}


class _Entry(StrictModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
    di: str
    format: str
    unit: str = ""
    signed: bool = False
    offset: int = Field(default=0, ge=0, le=200)
    writable: bool = False
    range: tuple[int | float, int | float] | None = None
    description: str = ""

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        Format.parse(value)
        return value


class _TableFile(StrictModel):
    version: Literal[2007, 1997]
    identifiers: list[_Entry] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> _TableFile:
        size = 4 if self.version == 2007 else 2
        names: set[str] = set()
        for entry in self.identifiers:
            if len(entry.di) != size * 2 or any(c not in "0123456789ABCDEF" for c in entry.di):
                raise ValueError(f"{entry.name}: di {entry.di!r} is not {size * 2} hex digits")
            if entry.name in names:
                raise ValueError(f"{entry.name} is listed twice")
            names.add(entry.name)
            if entry.writable and entry.range is None:
                raise ValueError(f"{entry.name}: a writable identifier needs a range")
        return self


@dataclass(frozen=True, slots=True)
class DataIdentifier:
    """One value of a data identifier: where it is and how it reads."""

    di: str
    format: Format
    offset: int = 0
    name: str = ""
    unit: str = ""
    writable: bool = False
    range: tuple[int | float, int | float] | None = None
    description: str = ""
    #: bytes of the identifier's whole data (every value the table knows in it), or None
    #: for an identifier the table does not have
    record: int | None = None

    @property
    def end(self) -> int:
        return self.offset + self.format.size


@dataclass(frozen=True, slots=True)
class Table:
    """The data identifiers of one version of the standard, by name and by code."""

    version: Version
    by_name: dict[str, DataIdentifier]
    by_di: dict[str, tuple[DataIdentifier, ...]]
    #: identifier -> (the block it can be read in, where its data starts in the block's):
    #: 2007 ``0201FF00`` holds phases A, B, C of ``02010100``..``02010300``; 1997 ``B61F``
    #: holds ``B611``..``B613``
    blocks: dict[str, tuple[str, int]] = field(default_factory=dict)

    def lookup(self, key: str) -> DataIdentifier | None:
        """The entry named ``key``, or the first value of data identifier ``key``."""
        found = self.by_name.get(key)
        if found is not None:
            return found
        values = self.by_di.get(key.upper())
        return values[0] if values else None

    def names(self) -> list[str]:
        return sorted(self.by_name)


@cache
def table(version: Version) -> Table:
    """The shipped table of ``version`` (read once; a broken file raises ConfigError)."""
    from gateway.config.yaml_model import validate_yaml_text

    path = TABLES / _FILES[version]
    parsed = validate_yaml_text(_TableFile, path.read_text(encoding="utf-8"), str(path))
    if parsed.version != version:
        raise ValueError(f"{path} says version {parsed.version}, expected {version}")
    records: dict[str, int] = defaultdict(int)
    for entry in parsed.identifiers:
        records[entry.di] = max(records[entry.di],
                                entry.offset + Format.parse(entry.format).size)
    by_name: dict[str, DataIdentifier] = {}
    by_di: dict[str, list[DataIdentifier]] = defaultdict(list)
    for entry in parsed.identifiers:
        item = DataIdentifier(
            entry.di, Format.parse(entry.format, entry.signed), entry.offset, entry.name,
            entry.unit, entry.writable, entry.range, entry.description, records[entry.di])
        by_name[entry.name] = item
        by_di[entry.di].append(item)
    return Table(version, by_name, {di: tuple(v) for di, v in by_di.items()},
                 _blocks(version, records))


def _blocks(version: Version, records: dict[str, int]) -> dict[str, tuple[str, int]]:
    """Which identifiers read together as a block, and where each one's data starts.

    DL/T 645 reads a block by setting one byte of the identifier to FF (2007: DI1 for
    phases and tariffs, ``0201FF00``; DI0 for a list, ``028000FF``) or the last digit to
    F (1997: ``B61F``); the answer is the members' data one after the other from the
    first. Only energy, demand and instantaneous values (2007 DI3 00-02, 1997 9xxx, Axxx,
    Bxxx), where the standard defines blocks; a member is in a block only when every
    identifier before it in the block is in the table (its offset is then known).
    """
    found: dict[str, tuple[str, int]] = {}
    shapes: list[tuple[Callable[[str], str], Callable[[str], int]]]
    if version == 2007:
        shapes = [(lambda d: d[:4] + "FF" + d[6:], lambda d: int(d[4:6], 16)),
                  (lambda d: d[:6] + "FF", lambda d: int(d[6:], 16))]
        eligible = [d for d in records if d[:2] in ("00", "01", "02")]
    else:
        shapes = [(lambda d: d[:3] + "F", lambda d: int(d[3], 16))]
        eligible = [d for d in records if d[0] in "9AB"]
    for block_of, place in shapes:
        groups: dict[str, list[str]] = defaultdict(list)
        for di in eligible:
            if di not in found:
                groups[block_of(di)].append(di)
        for block, members in groups.items():
            members.sort(key=place)
            run = [members[0]]
            for di in members[1:]:
                if place(di) != place(run[-1]) + 1:
                    break
                run.append(di)
            if len(run) < 2:
                continue
            at = 0
            for di in run:
                found[di] = (block, at)
                at += records[di]
    return found
