"""Which publisher a message comes from, from its topic alone (no payload decoded).

A *stream* is everything one publisher sends that carries one sequence: a JSON gateway's
data messages (``json/{site}/{line}/{gateway}``), or every message of a Sparkplug edge
node and its devices (``spb/{group}/{edge_node}``: one ``seq`` spans NBIRTH, DBIRTH,
NDATA, DDATA and DDEATH). Streams are what readers of a group divide between them, and
what the allow-list names.
"""

from __future__ import annotations

from dataclasses import dataclass

from brain_reader.config import AllowList

SPARKPLUG_BIRTHS = frozenset({"NBIRTH", "DBIRTH"})


@dataclass(frozen=True, slots=True)
class Origin:
    #: the stream id (None: a message outside any stream, e.g. a JSON birth)
    stream: str | None
    #: what the allow-list matches: site/line/gateway or group/edge_node
    publisher: str
    contract: str  # "json" or "sparkplug"
    #: JSON birth/death or Sparkplug NBIRTH/DBIRTH: every reader learns from it
    birth: bool
    kind: str


def origin(topic: str, topic_root: str) -> Origin | None:
    """The stream and publisher of a contract topic; None for any other topic."""
    parts = topic.split("/")
    if parts[0] == "spBv1.0":
        if len(parts) < 4 or parts[1] == "STATE":
            return None
        group, kind, edge = parts[1], parts[2], parts[3]
        return Origin(f"spb/{group}/{edge}", f"{group}/{edge}", "sparkplug",
                      kind in SPARKPLUG_BIRTHS, kind)  # fmt: skip
    root = topic_root.rstrip("/").split("/")
    if len(parts) != len(root) + 4 or parts[: len(root)] != root:
        return None
    site, line, gateway, kind = parts[len(root):]
    publisher = f"{site}/{line}/{gateway}"
    if kind == "data":
        return Origin(f"json/{publisher}", publisher, "json", False, kind)
    return Origin(None, publisher, "json", kind in ("birth", "death"), kind)


class Allowed:
    """The allow-list (None: everyone): ``+`` matches one level."""

    def __init__(self, allow: AllowList | None) -> None:
        self._allow = allow
        self._known: dict[tuple[str, str], bool] = {}

    def __call__(self, where: Origin) -> bool:
        if self._allow is None:
            return True
        key = (where.contract, where.publisher)
        known = self._known.get(key)
        if known is None:
            patterns = self._allow.gateways if where.contract == "json" else self._allow.edge_nodes
            parts = where.publisher.split("/")
            known = any(
                all(p in ("+", x) for p, x in zip(pattern.split("/"), parts, strict=True))
                for pattern in patterns
            )
            if len(self._known) < 100_000:  # bounded: whoever publishes chooses the names
                self._known[key] = known
        return known
