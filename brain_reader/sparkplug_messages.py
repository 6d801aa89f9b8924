"""Sparkplug B messages into points: births define the aliases of an edge node and its
devices, data messages are resolved by alias, seq is checked per session, and data the
reader cannot resolve (an unknown alias, or no birth seen yet: the reader started after
it) triggers a rebirth request (NCMD ``Node Control/Rebirth``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from brain_reader.counters import STREAM_COUNTS, IngestCounters
from brain_reader.points import PointEncoder, tag_type
from brain_reader.sequences import SeqOutcome, SparkplugSequence
from gateway.errors import SparkplugDecodeError
from gateway.northbound.sparkplug import sparkplug_b_pb2 as pb
from gateway.northbound.sparkplug.datatypes import quality_of
from gateway.northbound.sparkplug.decode import (
    SparkplugTopic,
    decode_payload,
    parse_topic,
    resolve_datatype,
)
from gateway.repeated_log import RepeatedKinds

log = logging.getLogger(__name__)

REBIRTH = "Node Control/Rebirth"


def quality_code(properties: dict[str, Any]) -> int:
    """The store's quality code (0 good, 1 uncertain, 2 bad, 3 stale) of a metric, from its
    ``Quality`` property (see :func:`~gateway.northbound.sparkplug.datatypes.quality_of`)."""
    return int(quality_of(properties))


@dataclass(slots=True)
class MetricDef:
    name: str
    datatype: str | None


@dataclass(slots=True)
class EdgeNode:
    bdseq: int | None = None
    born: bool = False
    online: bool = False
    seq: SparkplugSequence = field(default_factory=SparkplugSequence)
    aliases: dict[int, MetricDef] = field(default_factory=dict)
    device_aliases: dict[str, dict[int, MetricDef]] = field(default_factory=dict)
    last_rebirth_request: float = float("-inf")
    #: this node's stream: messages, gaps, duplicates (handed over with its commits)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STREAM_COUNTS, 0))

    def export(self) -> dict[str, Any]:
        """What another reader needs to carry on this node's sequence (not its aliases:
        every reader learns those from the births)."""
        return {"bdseq": self.bdseq, "born": self.born, "online": self.online,
                "seq": self.seq.export(), "counts": dict(self.counts)}  # fmt: skip

    def restore(self, state: dict[str, Any]) -> None:
        """``state`` from :meth:`export` (JSON from the broker: checked, bad parts ignored)."""
        bdseq = state.get("bdseq")
        self.bdseq = bdseq if isinstance(bdseq, int) else None
        self.born = state.get("born") is True
        self.online = state.get("online") is True
        self.seq.restore(state.get("seq"))
        counts = state.get("counts")
        if isinstance(counts, dict):
            for name in STREAM_COUNTS:
                value = counts.get(name)
                if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                    self.counts[name] = value


def rebirth_request() -> bytes:
    """The NCMD payload asking an edge node to publish its births again."""
    payload = pb.Payload(timestamp=int(time.time() * 1000))
    payload.metrics.add(name=REBIRTH, datatype=pb.Boolean, boolean_value=True)
    return payload.SerializeToString()


class SparkplugIngest:
    def __init__(
        self,
        encoder: PointEncoder,
        counters: IngestCounters,
        sequence_check: bool,
        request_rebirth: Callable[[str, bytes], None] | None,
        rebirth_holdoff: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        on_birth: Callable[[SparkplugTopic, dict[str, Any]], None] | None = None,
    ) -> None:
        """``request_rebirth(topic, payload)`` publishes an NCMD (None: never ask);
        ``on_birth(topic, payload)`` sees every NBIRTH and DBIRTH (the catalog)."""
        self.on_birth = on_birth
        self.encoder = encoder
        self.counters = counters
        self.sequence_check = sequence_check
        self.request_rebirth = request_rebirth
        self.rebirth_holdoff = rebirth_holdoff
        self.clock = clock
        self.nodes: dict[tuple[str, str], EdgeNode] = {}
        # per message, driven by whoever publishes: the first of each kind, then summaries
        self._undecodable_log = RepeatedKinds(log, "undecodable Sparkplug message")
        self._gap_log = RepeatedKinds(log, "Sparkplug sequence gap")  # per edge node
        self._alias_log = RepeatedKinds(log, "metrics with unknown aliases")  # per node

    def _decode(self, topic_text: str, data: bytes
                ) -> tuple[SparkplugTopic, dict[str, Any]] | None:  # fmt: skip
        topic = parse_topic(topic_text)
        if topic is None or topic.is_state:
            return None
        try:
            return topic, decode_payload(data)
        except SparkplugDecodeError as exc:
            self.counters.undecodable += 1
            self._undecodable_log.failure(f"on {topic_text}: {exc}", type(exc).__name__)
            return None

    def learn(self, topic_text: str, data: bytes) -> None:
        """A birth of an edge node another reader writes: its aliases (and the catalog),
        no points, no sequence."""
        decoded = self._decode(topic_text, data)
        if decoded is None:
            return
        topic, payload = decoded
        node = self.nodes.setdefault((topic.group_id, topic.edge_node_id), EdgeNode())
        if topic.message_type == "NBIRTH":
            self._node_aliases(node, payload)
        elif topic.message_type == "DBIRTH" and topic.device_id is not None:
            node.device_aliases[topic.device_id] = self._aliases(payload)
        if self.on_birth is not None and topic.message_type in ("NBIRTH", "DBIRTH"):
            self.on_birth(topic, payload)

    def born(self, group: str, edge: str) -> bool:
        """Whether an NBIRTH of this edge node was seen (its aliases are known)."""
        node = self.nodes.get((group, edge))
        return node is not None and node.born

    def handle(self, topic_text: str, data: bytes, check_sequence: bool = True,
               learn_births: bool = True) -> list[str]:  # fmt: skip
        """Points of a message; ``check_sequence`` False for a message another reader
        already counted; ``learn_births`` False when :meth:`learn` saw the birth already."""
        decoded = self._decode(topic_text, data)
        if decoded is None:
            return []
        topic, payload = decoded
        node = self.nodes.setdefault((topic.group_id, topic.edge_node_id), EdgeNode())
        kind = topic.message_type
        if check_sequence:
            node.counts["messages"] += 1
        if kind in ("NBIRTH", "DBIRTH") and learn_births and self.on_birth is not None:
            self.on_birth(topic, payload)
        if kind == "NBIRTH":
            return self._nbirth(topic, node, payload, check_sequence)
        if kind == "NDEATH":
            if check_sequence:
                self._ndeath(topic, node, payload)
            return []
        if check_sequence:
            self._sequence(topic, node, payload.get("seq"))
        if kind == "DBIRTH":
            return self._dbirth(topic, node, payload)
        if kind == "DDEATH":
            self.counters.deaths += 1
            return []
        if kind in ("NDATA", "DDATA"):
            self.counters.data_messages += 1
            return self._data(topic, node, payload)
        return []

    # --- births and deaths -------------------------------------------------------------
    @staticmethod
    def _aliases(payload: dict[str, Any]) -> dict[int, MetricDef]:
        return {m["alias"]: MetricDef(m["name"], m["datatype"]) for m in payload["metrics"]
                if m["name"] is not None and m["alias"] is not None}  # fmt: skip

    def _node_aliases(self, node: EdgeNode, payload: dict[str, Any]) -> None:
        node.born = True
        node.aliases = self._aliases(payload)
        node.device_aliases = {}

    def _nbirth(self, topic: SparkplugTopic, node: EdgeNode, payload: dict[str, Any],
                check_sequence: bool = True) -> list[str]:  # fmt: skip
        self.counters.births += 1
        self._node_aliases(node, payload)
        if check_sequence:
            node.online = True
            bdseq = [m["value"] for m in payload["metrics"] if m["name"] == "bdSeq"]
            if bdseq:
                node.bdseq = bdseq[0]
            node.seq.start_session(payload.get("seq") or 0)
        log.info("NBIRTH of %s/%s (bdSeq %s): %d aliases", topic.group_id,
                 topic.edge_node_id, node.bdseq, len(node.aliases))  # fmt: skip
        return self._points(topic, node.aliases, payload, topic.edge_node_id, birth=True)

    def _dbirth(self, topic: SparkplugTopic, node: EdgeNode, payload: dict[str, Any]) -> list[str]:
        self.counters.births += 1
        assert topic.device_id is not None
        aliases = node.device_aliases[topic.device_id] = self._aliases(payload)
        return self._points(topic, aliases, payload, topic.device_id, birth=True)

    def _ndeath(self, topic: SparkplugTopic, node: EdgeNode, payload: dict[str, Any]) -> None:
        self.counters.deaths += 1
        bdseq = next((m["value"] for m in payload["metrics"] if m["name"] == "bdSeq"), None)
        if node.bdseq is not None and bdseq is not None and bdseq != node.bdseq:
            log.info("NDEATH of %s/%s with bdSeq %s is for an older session (now %s); ignored",
                     topic.group_id, topic.edge_node_id, bdseq, node.bdseq)  # fmt: skip
            return
        node.online = False
        node.seq.end_session()

    def sum_up_logs(self, force: bool = False) -> None:
        for repeated in (self._undecodable_log, self._gap_log, self._alias_log):
            repeated.due(force)

    # --- data ----------------------------------------------------------------------------
    def _sequence(self, topic: SparkplugTopic, node: EdgeNode, seq: int | None) -> None:
        if not self.sequence_check or seq is None or not node.born:
            return
        result = node.seq.observe(seq)
        if result.outcome is SeqOutcome.DUPLICATE:
            self.counters.duplicates += 1
            node.counts["duplicates"] += 1
        elif result.outcome is SeqOutcome.GAP:
            self.counters.gaps += result.skipped
            node.counts["gaps"] += result.skipped
            node_name = f"{topic.group_id}/{topic.edge_node_id}"
            self._gap_log.failure(f"{node_name}: seq {seq}: {result.skipped} messages missing",
                                  node_name)  # fmt: skip

    def _data(self, topic: SparkplugTopic, node: EdgeNode, payload: dict[str, Any]) -> list[str]:
        if topic.device_id is None:
            aliases, device = node.aliases, topic.edge_node_id
        else:
            aliases, device = node.device_aliases.get(topic.device_id, {}), topic.device_id
        return self._points(topic, aliases, payload, device, node)

    def _points(
        self,
        topic: SparkplugTopic,
        aliases: dict[int, MetricDef],
        payload: dict[str, Any],
        device: str,
        node: EdgeNode | None = None,
        birth: bool = False,
    ) -> list[str]:
        """Points of the metrics. A birth's null value means "not read yet", not a sample:
        it is not written."""
        lines = []
        unknown = 0
        default_ts = payload.get("timestamp") or int(time.time() * 1000)
        for metric in payload["metrics"]:
            name, datatype = metric["name"], metric["datatype"]
            if metric["alias"] is not None and (name is None or datatype is None):
                known = aliases.get(metric["alias"])
                if known is None:
                    if name is None:
                        unknown += 1
                        continue
                else:
                    name, datatype = name or known.name, datatype or known.datatype
            if name is None or name == "bdSeq" or name.startswith(("Node Control/",
                                                                     "Properties/")):
                continue
            if metric["is_historical"]:
                self.counters.historical += 1
            if birth and metric["is_null"]:
                continue
            value = None if metric["is_null"] else resolve_datatype(metric["value"], datatype)
            series = {"group": topic.group_id, "gateway": topic.edge_node_id,
                      "device": device, "tag": name}  # fmt: skip
            lines.append(self.encoder.line(series, value, quality_code(metric["properties"]),
                                           metric["timestamp"] or default_ts,
                                           tag_type(datatype)))  # fmt: skip
        if unknown:
            self.counters.unknown_aliases += unknown
            where = f"{topic.group_id}/{topic.edge_node_id}" + (
                f"/{topic.device_id}" if topic.device_id else "")
            self._alias_log.failure(f"{where}: {unknown} (no birth seen)", where)
            if node is not None:
                self._ask_rebirth(topic, node)
        return lines

    def ask_rebirth(self, group: str, edge: str) -> None:
        """Data of an edge node whose NBIRTH this reader has not seen (it started later)."""
        node = self.nodes.setdefault((group, edge), EdgeNode())
        self._ask_rebirth(SparkplugTopic("spBv1.0", group, "NDATA", edge), node)

    def _ask_rebirth(self, topic: SparkplugTopic, node: EdgeNode) -> None:
        now = self.clock()
        if self.request_rebirth is None or now - node.last_rebirth_request < self.rebirth_holdoff:
            return
        node.last_rebirth_request = now
        self.counters.rebirths_requested += 1
        ncmd = f"spBv1.0/{topic.group_id}/NCMD/{topic.edge_node_id}"
        log.info("asking %s/%s for a rebirth (%s)", topic.group_id, topic.edge_node_id, ncmd)
        self.request_rebirth(ncmd, rebirth_request())
