"""What ``chenxing-gateway watch`` shows: the messages of any gateway on a broker, decoded
with the reader's own decoders (JSON contract and Sparkplug B, aliases resolved from the
births), as values and events a person reads, filtered by device and tag.

The reader's ingest classes turn a message into points through an encoder; here the
encoder keeps each point as a :class:`WatchedValue` instead of writing line protocol, so
the decoding (alias tables per edge node and device, datatypes, quality, 64-bit integers
exact) is the same as what the brain stores.
"""

from __future__ import annotations

import datetime
import fnmatch
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from brain_reader.counters import IngestCounters
from brain_reader.json_messages import JsonIngest
from brain_reader.points import PointEncoder
from brain_reader.sparkplug_messages import SparkplugIngest
from gateway import json_input
from gateway.northbound.sparkplug.decode import parse_topic
from gateway.types import QUALITY_NAMES, DataType

SPARKPLUG_KINDS = ("NBIRTH", "DBIRTH", "NDEATH", "DDEATH", "NDATA", "DDATA")
JSON_KINDS = ("birth", "death", "data", "event")


@dataclass(frozen=True, slots=True)
class WatchedValue:
    """One value of one message: where from, which tag, what and how good."""

    #: "data", or "birth" for the values a Sparkplug birth carries
    kind: str
    #: the publisher: site/line/gateway (JSON) or group/edge node (Sparkplug)
    source: str
    device: str
    tag: str
    value: Any
    quality: str
    ts_ms: int

    @property
    def path(self) -> str:
        return f"{self.device}.{self.tag}" if self.device else self.tag

    def as_dict(self) -> dict[str, Any]:
        """For a JSON line: the value as JSON has it (NaN and infinities as text)."""
        value = self.value
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        elif isinstance(value, bytes):
            value = value.hex()
        return {"ts": self.ts_ms, "time": _iso(self.ts_ms), "kind": self.kind,
                "source": self.source, "device": self.device, "tag": self.tag,
                "value": value, "quality": self.quality}  # fmt: skip


@dataclass(frozen=True, slots=True)
class WatchedMessage:
    """A decoded message: its kind (birth, death, data), publisher, device and the values
    that passed the filter (``total``: before it)."""

    kind: str
    source: str
    device: str
    values: list[WatchedValue]
    total: int
    #: a JSON event's body (a model alarm raised or cleared)
    event: dict[str, Any] | None = None


class _Keep(PointEncoder):
    """The ingest's encoder, keeping points instead of writing line protocol."""

    def __init__(self) -> None:
        super().__init__("{device}", "ms")
        self.kept: list[tuple[dict[str, str], Any, int, int]] = []

    def line(self, series: dict[str, str], value: Any, quality: int, ts_ms: int,
             datatype: DataType | None = None) -> str:  # fmt: skip
        self.kept.append((series, value, quality, ts_ms))
        return ""


@dataclass(frozen=True, slots=True)
class TagFilter:
    """Device and tag globs (``press-*``, ``*.Melt*``); none given: everything passes.
    A tag pattern matches the tag's name or its ``device.tag`` path."""

    devices: Sequence[str] = ()
    tags: Sequence[str] = ()

    def device_passes(self, device: str) -> bool:
        return not self.devices or any(fnmatch.fnmatchcase(device, p) for p in self.devices)

    def passes(self, value: WatchedValue) -> bool:
        if not self.device_passes(value.device):
            return False
        return not self.tags or any(fnmatch.fnmatchcase(value.tag, p)
                                    or fnmatch.fnmatchcase(value.path, p) for p in self.tags)


class WatchDecoder:
    """Topic and payload in, :class:`WatchedMessage` out (None: not a telemetry message).
    ``request_rebirth(topic, payload)`` publishes an NCMD when Sparkplug data comes with
    aliases no birth explained (the watcher started after it); None: never ask."""

    def __init__(self, topic_root: str, selected: TagFilter,
                 request_rebirth: Callable[[str, bytes], None] | None = None) -> None:
        self.topic_root = topic_root.rstrip("/")
        self.filter = selected
        self.counters = IngestCounters()
        self._keep = _Keep()
        self._json = JsonIngest(self._keep, self.counters, sequence_check=False)
        self._sparkplug = SparkplugIngest(self._keep, self.counters, sequence_check=False,
                                          request_rebirth=request_rebirth)  # fmt: skip

    @property
    def unknown_aliases(self) -> int:
        """Values dropped so far because their alias came before any birth."""
        return self.counters.unknown_aliases

    def subscriptions(self, formats: Sequence[str]) -> tuple[tuple[str, int], ...]:
        """The topics of the birth, death and data messages of ``formats`` (QoS 1)."""
        subs: list[tuple[str, int]] = []
        if "json" in formats:
            subs += [(f"{self.topic_root}/+/+/+/{kind}", 1) for kind in JSON_KINDS]
        if "sparkplug" in formats:
            subs += [(f"spBv1.0/+/{kind}/#", 1) for kind in SPARKPLUG_KINDS]
        return tuple(subs)

    def handle(self, topic: str, payload: bytes) -> WatchedMessage | None:
        self._keep.kept.clear()
        sparkplug = parse_topic(topic)
        if sparkplug is not None:
            if sparkplug.is_state:
                return None
            self._sparkplug.handle(topic, payload, check_sequence=False)
            kind = {"NBIRTH": "birth", "DBIRTH": "birth", "NDEATH": "death",
                    "DDEATH": "death"}.get(sparkplug.message_type, "data")  # fmt: skip
            source = f"{sparkplug.group_id}/{sparkplug.edge_node_id}"
            device = sparkplug.device_id or ""
        elif topic.startswith(self.topic_root + "/"):
            parts = topic[len(self.topic_root) + 1:].split("/")
            if len(parts) != 4 or parts[3] not in JSON_KINDS:
                return None
            kind, source, device = parts[3], "/".join(parts[:3]), ""
            if kind == "event":
                return WatchedMessage(kind, source, device, [], 0, _event(payload))
            self._json.handle(topic, payload, check_sequence=False)
        else:
            return None
        values = [self._value(kind, source, *point) for point in self._keep.kept]
        self._keep.kept.clear()
        shown = [v for v in values if self.filter.passes(v)]
        return WatchedMessage(kind, source, device, shown, len(values))

    @staticmethod
    def _value(kind: str, source: str, series: dict[str, str], value: Any, quality: int,
               ts_ms: int) -> WatchedValue:  # fmt: skip
        name = QUALITY_NAMES[quality] if 0 <= quality < len(QUALITY_NAMES) else str(quality)
        return WatchedValue(kind, source, series.get("device", ""), series.get("tag", ""),
                            value, name, int(ts_ms))  # fmt: skip


def _event(payload: bytes) -> dict[str, Any]:
    try:
        body = json_input.loads(payload)
    except ValueError as exc:
        return {"undecodable": str(exc)}
    return body if isinstance(body, dict) else {"undecodable": "not a JSON object"}


def _iso(ts_ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ts_ms / 1000, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def value_text(value: Any) -> str:
    """A value as a person reads it in a column."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def line_of(value: WatchedValue, with_source: bool) -> str:
    """One console line: time, (publisher,) tag path, value, quality (when not good)."""
    moment = datetime.datetime.fromtimestamp(value.ts_ms / 1000)
    when = moment.strftime("%H:%M:%S.") + f"{value.ts_ms % 1000:03d}"
    source = f"{value.source}  " if with_source else ""
    quality = "" if value.quality == "good" else f"  [{value.quality}]"
    birth = "  (birth)" if value.kind == "birth" else ""
    return f"{when}  {source}{value.path:<32} {value_text(value.value):>14}{quality}{birth}"
