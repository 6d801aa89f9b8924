"""Tags -> read requests: as few as DL/T 645 allows, pure.

DL/T 645 reads one data identifier per request, so each identifier of each meter is
read once: tags that take values out of one identifier's data (a maximum demand and its
time) share its request, and two tags naming one value share it too. With block reads
(``blocks``: the table's :attr:`~drivers.dlt645.table.Table.blocks`), identifiers of one
block (phases A, B, C; total and tariffs) that two or more tags need are read with one
request of the block's identifier (``0201FF00``), whose answer holds them one after the
other. Requests keep the order of their first tag in the config.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from drivers.dlt645.codec import DI_BYTES, MAX_DATA, Version
from drivers.dlt645.table import DataIdentifier
from gateway.errors import PlanError


@dataclass(frozen=True, slots=True)
class TagRead:
    """One tag of a request: its index in the device's tags and where its value is."""

    index: int
    name: str
    identifier: DataIdentifier
    #: where the value starts in the answer's data (its identifier's place in a block,
    #: plus its offset in the identifier's data)
    at: int

    @property
    def end(self) -> int:
        return self.at + self.identifier.format.size


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One read: a meter, a data identifier (or a block's), the tags its answer feeds."""

    meter: str
    di: str
    members: tuple[TagRead, ...]
    #: data bytes the answer must carry for every member
    need: int = 0
    #: the identifier's data length when the table knows it (the answer must match); None
    #: for a block (a meter answers as many tariffs as it has) or an unknown identifier
    record: int | None = None
    #: a block read (its identifier ends in FF or F)
    block: bool = False

    def describe(self) -> str:
        names = ", ".join(m.name for m in self.members)
        kind = "block" if self.block else "DI"
        return f"meter {self.meter} {kind} {self.di} ({names})"


@dataclass(frozen=True, slots=True)
class TagSpec:
    """What the planner needs of a tag."""

    index: int
    name: str
    meter: str
    identifier: DataIdentifier


def plan_requests(tags: Sequence[TagSpec], version: Version,
                  blocks: Mapping[str, tuple[str, int]] | None = None,
                  single: Collection[tuple[str, str]] = ()) -> list[ReadRequest]:
    """The requests reading ``tags``: one per (meter, identifier), or per (meter, block)
    for identifiers of ``blocks`` when two or more of a block's are needed; ``single``:
    (meter, block identifier) pairs read one identifier at a time (the meter refused
    the block)."""
    limit = MAX_DATA - DI_BYTES[version]
    for tag in tags:
        if tag.identifier.end > limit:
            raise PlanError(f"tag {tag.name!r}: its value ends at byte {tag.identifier.end} "
                            f"of the data, past the {limit} bytes an answer can carry")
    in_block: dict[tuple[str, str], set[str]] = {}
    if blocks:
        for tag in tags:
            found = blocks.get(tag.identifier.di)
            if found is not None and (tag.meter, found[0]) not in single:
                in_block.setdefault((tag.meter, found[0]), set()).add(tag.identifier.di)
    groups: dict[tuple[str, str], list[TagRead]] = {}
    is_block: set[tuple[str, str]] = set()
    for tag in tags:
        ident = tag.identifier
        found = blocks.get(ident.di) if blocks else None
        if found is not None and len(in_block.get((tag.meter, found[0]), ())) >= 2:
            key = (tag.meter, found[0])
            is_block.add(key)
            read = TagRead(tag.index, tag.name, ident, found[1] + ident.offset)
        else:
            key = (tag.meter, ident.di)
            read = TagRead(tag.index, tag.name, ident, ident.offset)
        groups.setdefault(key, []).append(read)
    requests = []
    for (meter, di), members in groups.items():
        block = (meter, di) in is_block
        need = max(m.end for m in members)
        if need > limit:
            raise PlanError(f"block {di}: {need} bytes, past the {limit} an answer can carry")
        requests.append(ReadRequest(meter, di, tuple(members), need,
                                    None if block else members[0].identifier.record, block))
    return requests
