"""Tag entries ready to paste into a config, as the discovery tools print them
(``browse --yaml``, ``scan --yaml``): one flow mapping per tag under a comment that says
where they came from, each with what was read as a trailing comment.

Names are made valid tag names (letters, digits, '_', '-', '/'; at most 128) and unique:
a name two entries share gets the part of its path that tells them apart.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

_NAME_MAX = 128


@dataclass(frozen=True, slots=True)
class TagEntry:
    """One tag: its keys in the order they are written, and a note (the value read)."""

    keys: dict[str, Any]
    note: str = ""
    #: the names around it (outermost first) that tell it from another entry of the same
    #: name, e.g. the OPC UA objects above a variable
    context: tuple[str, ...] = field(default=())


def tag_name(text: str) -> str:
    """``text`` as a valid tag name: other characters become '_', a leading one that is
    not a letter or digit is dropped (``Motor 1.Speed (rpm)`` -> ``Motor_1_Speed_rpm``)."""
    name = re.sub(r"[^A-Za-z0-9_\-/]+", "_", text).strip("_")
    name = re.sub(r"^[^A-Za-z0-9]+", "", name)
    return (name or "tag")[:_NAME_MAX]


def _unique(entries: Sequence[TagEntry]) -> list[str]:
    """Each entry's name, with as much of its context as makes it unique."""
    names = [tag_name(str(e.keys["name"])) for e in entries]
    for depth in range(1, 1 + max((len(e.context) for e in entries), default=0)):
        counts: dict[str, int] = {}
        for name in names:
            counts[name] = counts.get(name, 0) + 1
        if all(n == 1 for n in counts.values()):
            break
        names = [
            tag_name("_".join([*e.context[-depth:], str(e.keys["name"])]))
            if counts[names[i]] > 1 else names[i]
            for i, e in enumerate(entries)
        ]
    seen: dict[str, int] = {}
    out = []
    for name in names:  # still the same: number them
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}"[-_NAME_MAX:])
    return out


def render_tags(entries: Sequence[TagEntry], source: str) -> str:
    """The entries as YAML list items to paste under a device's ``tags:``."""
    lines = [f"# {source}",
             f"# {len(entries)} tag{'s' if len(entries) != 1 else ''}: paste under a device's "
             "'tags:' (indent to fit); rename as you like"]
    for name, entry in zip(_unique(entries), entries, strict=True):
        keys = {**entry.keys, "name": name}
        flow = yaml.safe_dump(keys, default_flow_style=True, sort_keys=False,
                              width=10**6, allow_unicode=True).strip()
        note = " ".join(entry.note.split())
        lines.append(f"- {flow}" + (f"  # {note}" if note else ""))
    return "\n".join(lines) + "\n"
