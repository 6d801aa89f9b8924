"""Tags -> read requests: one request per (meter, data identifier), pure.

DL/T 645 reads one data identifier per request, so the fewest requests read each
identifier of each meter once: tags that take values out of one identifier's data
(a maximum demand and its time) share its request, and two tags naming one value
share it too. Requests keep the order of their first tag in the config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from drivers.dlt645.codec import DI_BYTES, MAX_DATA, Version
from drivers.dlt645.table import DataIdentifier


class PlanError(ValueError):
    """Tags that no request can read (a value past the largest frame)."""


@dataclass(frozen=True, slots=True)
class TagRead:
    """One tag of a request: its index in the device's tags and where its value is."""

    index: int
    name: str
    identifier: DataIdentifier


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One read: a meter, a data identifier, the tags that take values from its answer."""

    meter: str
    di: str
    members: tuple[TagRead, ...]
    #: data bytes the answer must carry for every member
    need: int = 0
    #: the identifier's data length when the table knows it (the answer must match)
    record: int | None = None

    def describe(self) -> str:
        names = ", ".join(m.name for m in self.members)
        return f"meter {self.meter} DI {self.di} ({names})"


@dataclass(frozen=True, slots=True)
class TagSpec:
    """What the planner needs of a tag."""

    index: int
    name: str
    meter: str
    identifier: DataIdentifier


def plan_requests(tags: Sequence[TagSpec], version: Version) -> list[ReadRequest]:
    """The requests reading ``tags``: one per (meter, data identifier), in config order."""
    groups: dict[tuple[str, str], list[TagRead]] = {}
    limit = MAX_DATA - DI_BYTES[version]
    for tag in tags:
        ident = tag.identifier
        if ident.end > limit:
            raise PlanError(f"tag {tag.name!r}: its value ends at byte {ident.end} of the "
                            f"data, past the {limit} bytes an answer can carry")
        groups.setdefault((tag.meter, ident.di), []).append(
            TagRead(tag.index, tag.name, ident))
    return [ReadRequest(meter, di, tuple(members), max(m.identifier.end for m in members),
                        members[0].identifier.record)
            for (meter, di), members in groups.items()]
