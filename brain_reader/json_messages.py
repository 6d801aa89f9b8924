"""JSON contract v1 messages (docs/contract-json.md) into points, births into a catalog."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from brain_reader.counters import STREAM_COUNTS, IngestCounters
from brain_reader.points import PointEncoder, tag_type
from brain_reader.sequences import JsonSequence, SeqOutcome
from gateway import json_input
from gateway.repeated_log import RepeatedKinds
from gateway.types import QUALITY_NAMES

log = logging.getLogger(__name__)

GatewayKey = tuple[str, str, str]  # site, line, gateway
_QUALITY_CODE = {name: code for code, name in enumerate(QUALITY_NAMES)}
#: what a message of the wrong shape raises (OverflowError: ``int(Infinity)``)
_MALFORMED = (ValueError, KeyError, TypeError, OverflowError)


class JsonIngest:
    def __init__(self, encoder: PointEncoder, counters: IngestCounters, sequence_check: bool,
                 on_birth: Callable[[GatewayKey, dict[str, Any]], None] | None = None,
                 ) -> None:  # fmt: skip
        """``on_birth(gateway, body)`` sees every birth (the catalog)."""
        self.on_birth = on_birth
        #: per gateway: messages, gaps, late, duplicates (handed over with its commits)
        self.stream_counts: dict[GatewayKey, dict[str, int]] = {}
        self.encoder = encoder
        self.counters = counters
        self.sequence_check = sequence_check
        #: per gateway (site, line, id): tag path -> catalog entry from its last birth (its
        #: ``type`` picks the exact field of 64-bit integers)
        self.catalogs: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
        self.sequences: dict[tuple[str, str, str], JsonSequence] = {}
        self.sessions: dict[tuple[str, str, str], object] = {}
        # per message, driven by whoever publishes: the first of each kind, then summaries
        self._undecodable_log = RepeatedKinds(log, "undecodable message")  # per error type
        self._gap_log = RepeatedKinds(log, "sequence gap")  # per gateway
        #: the allow-list goes by topic: a body must name the topic's gateway
        self._foreign_log = RepeatedKinds(log, "message naming another gateway")

    def handle(self, topic: str, payload: bytes, publisher: str | None = None,
               check_sequence: bool = True) -> list[str]:  # fmt: skip
        """Points of a message. ``publisher`` (site/line/gateway of the topic): a body
        naming another gateway is refused as undecodable (the allow-list goes by topic);
        ``check_sequence`` False for a message another reader already counted."""
        try:
            body = json_input.loads(payload)
            kind = body["type"]
            if body.get("v") != 1:
                raise ValueError(f"contract version {body.get('v')!r}, expected 1")
            key = (str(body["site"]), str(body["line"]), str(body["gateway"]))
            if publisher is not None and "/".join(key) != publisher:
                self.counters.refused += 1
                self._foreign_log.failure(f"on {topic}: the body names gateway "
                                          f"{'/'.join(key)}; refused", publisher)  # fmt: skip
                return []
            tags = (body.get("tags") or []) if kind == "birth" else []
            if not isinstance(tags, list):
                raise TypeError(f"birth tags are a {type(tags).__name__}, expected a list")
        except _MALFORMED as exc:
            self._undecodable(topic, exc)
            return []
        if kind == "birth":
            self.counters.births += 1
            self.catalogs[key] = {  # by tag path, device.name
                t["tag"]: t for t in tags if isinstance(t, dict) and isinstance(t.get("tag"), str)
            }
            log.info("birth of gateway %s/%s/%s: %d tags", *key, len(self.catalogs[key]))
            if self.on_birth is not None:
                self.on_birth(key, body)
            return []
        if kind == "death":
            self.counters.deaths += 1
            log.info("death of gateway %s/%s/%s: %s", *key, body.get("reason"))
            return []
        if kind != "data":
            return []
        try:
            lines = self._data(key, body)
            seq = int(body["seq"]) if self.sequence_check else 0
        except _MALFORMED as exc:
            self._undecodable(topic, exc)
            return []
        self.counters.data_messages += 1
        if self.sequence_check and check_sequence:
            self._counts(key)["messages"] += 1
            self._sequence(key, seq, body.get("session"))
        return lines

    def _counts(self, key: GatewayKey) -> dict[str, int]:
        counts = self.stream_counts.get(key)
        if counts is None:
            counts = self.stream_counts[key] = dict.fromkeys(STREAM_COUNTS, 0)
        return counts

    def export(self, key: GatewayKey) -> dict[str, Any]:
        """What another reader needs to carry on this gateway's sequence."""
        tracker = self.sequences.get(key)
        session = self.sessions.get(key)
        return {"seq": tracker.export() if tracker else None,
                "session": session if isinstance(session, int | str) else None,
                "counts": dict(self._counts(key))}  # fmt: skip

    def restore(self, key: GatewayKey, state: dict[str, Any]) -> None:
        """``state`` from :meth:`export` (JSON from the broker: bad parts ignored)."""
        tracker = self.sequences[key] = JsonSequence()
        tracker.restore(state.get("seq"))
        self.sessions[key] = state.get("session")
        counts = self._counts(key)
        given = state.get("counts")
        if isinstance(given, dict):
            for name in STREAM_COUNTS:
                value = given.get(name)
                if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                    counts[name] = value

    def _data(self, key: tuple[str, str, str], body: dict[str, Any]) -> list[str]:
        site, line, gateway = key
        s = body["samples"]
        catalog = self.catalogs.get(key, {})
        lines = []
        for path, value, ts, q in zip(s["tag"], s["value"], s["ts"], s["q"], strict=True):
            device, _, tag = str(path).partition(".")
            series = {"gateway": gateway, "site": site, "line": line, "device": device, "tag": tag}
            entry = catalog.get(str(path), {})
            datatype = tag_type(entry.get("type")) if isinstance(entry, dict) else None
            lines.append(self.encoder.line(series, value, _QUALITY_CODE.get(q, 2), int(ts),
                                           datatype))  # fmt: skip
        return lines

    def _sequence(self, key: tuple[str, str, str], seq: int, session: object) -> None:
        tracker = self.sequences.setdefault(key, JsonSequence())
        if session != self.sessions.setdefault(key, session):
            self.sessions[key] = session
            if tracker.highest is not None and seq <= tracker.highest:
                # a gateway that lost its state (sequence.json) starts again lower
                log.warning("gateway %s/%s/%s restarted its sequence at %d (was %d)", *key,
                            seq, tracker.highest)  # fmt: skip
                self.counters.gaps -= tracker.missing
                tracker = self.sequences[key] = JsonSequence()
                self._counts(key)["gaps"] = 0
        before = tracker.missing
        result = tracker.observe(seq)
        counts = self._counts(key)
        if result.outcome is SeqOutcome.DUPLICATE:
            self.counters.duplicates += 1
            counts["duplicates"] += 1
            log.debug("duplicate seq %d from %s/%s/%s", seq, *key)
        elif result.outcome is SeqOutcome.LATE:
            self.counters.late += 1
            counts["late"] += 1
        elif result.outcome is SeqOutcome.GAP:
            gateway = "/".join(key)
            self._gap_log.failure(f"gateway {gateway}: seq {seq} after "
                                  f"{seq - result.skipped - 1}: {result.skipped} missing so far",
                                  gateway)  # fmt: skip
        self.counters.gaps += tracker.missing - before
        counts["gaps"] = tracker.missing

    def _undecodable(self, topic: str, exc: Exception) -> None:
        self.counters.undecodable += 1
        self._undecodable_log.failure(f"on {topic}: {exc}", type(exc).__name__)

    def sum_up_logs(self, force: bool = False) -> None:
        self._undecodable_log.due(force)
        self._gap_log.due(force)
        self._foreign_log.due(force)
