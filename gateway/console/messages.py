"""The console's Messages tab: the last messages the gateway published, decoded for people
(Sparkplug B aliases resolved to tag paths, JSON samples as tag = value), like a debug
sidebar.

While a browser looks (a request in the last :data:`LOOKED_S`), the publisher hands each
message it sends to :meth:`MessageLog.watch` (one deque append on the hot path: the payload
is kept as the bytes already built, and decoded only when a browser asks); when nobody has
looked for that long the log lets go of the publisher and of what it kept. What is kept is
bounded twice: at most ``capacity`` messages and ``max_bytes`` of payload, the oldest going
first.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.errors import GatewayError
from gateway.northbound.message import OutboundMessage

if TYPE_CHECKING:
    from gateway.runtime.gateway import Gateway

#: samples shown per message (the rest counted)
SHOWN_SAMPLES = 50
#: seconds after the last request during which the messages published are kept
LOOKED_S = 60.0


@dataclass(frozen=True, slots=True)
class _Sent:
    seq: int
    ts_ms: int
    message: OutboundMessage


class MessageLog:
    def __init__(self, gateway: Gateway, capacity: int = 200,
                 max_bytes: int = 4 * 1024 * 1024) -> None:
        self.gateway = gateway
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._ring: deque[_Sent] = deque()
        self._bytes = 0
        self.seq = 0
        #: time.monotonic() of the last request (-inf: never)
        self.asked_at = float("-inf")

    def follow(self) -> None:
        """Once a tick: watch the publisher while someone looks, let go when nobody does."""
        nb = self.gateway.northbound
        if nb is None:
            return
        looking = time.monotonic() - self.asked_at < LOOKED_S
        if looking and self.watch not in nb.watchers:
            nb.watchers.append(self.watch)
        elif not looking and self.watch in nb.watchers:
            nb.watchers.remove(self.watch)
            self._ring.clear()
            self._bytes = 0

    def watch(self, message: OutboundMessage) -> None:
        """The publisher sent ``message`` (called on the event loop, for every message)."""
        self.seq += 1
        self._ring.append(_Sent(self.seq, time.time_ns() // 1_000_000, message))
        self._bytes += len(message.payload)
        while self._ring and (len(self._ring) > self.capacity or self._bytes > self.max_bytes):
            self._bytes -= len(self._ring.popleft().message.payload)

    def since(self, seq: int, text: str = "") -> list[dict[str, Any]]:
        """The messages after ``seq``, decoded, oldest first; with ``text``, only those whose
        topic or a sample's tag contains it (and only those samples)."""
        self.asked_at = time.monotonic()
        out = []
        needle = text.lower()
        for sent in [s for s in self._ring if s.seq > seq]:
            entry = self.decode(sent)
            if needle and needle not in entry["topic"].lower():
                entry["samples"] = [s for s in entry["samples"] if needle in s["tag"].lower()]
                if not entry["samples"]:
                    continue
            entry["shown"] = min(len(entry["samples"]), SHOWN_SAMPLES)
            entry["samples"] = entry["samples"][:SHOWN_SAMPLES]
            out.append(entry)
        return out

    def decode(self, sent: _Sent) -> dict[str, Any]:
        # here, not at import: a gateway on the JSON contract needs protobuf (2.3 MiB of RSS,
        # 40 ms) only once someone looks at Sparkplug messages (issue 21)
        from gateway.northbound.sparkplug.decode import decode_payload, parse_topic

        m = sent.message
        entry: dict[str, Any] = {"seq": sent.seq, "ts_ms": sent.ts_ms, "topic": m.topic,
                                 "kind": m.kind, "bytes": len(m.payload), "msg_seq": m.seq,
                                 "samples": [], "note": None}
        try:
            if parse_topic(m.topic) is not None:
                decoded = decode_payload(m.payload)
                entry["samples"] = self._sparkplug(decoded["metrics"])
                if entry["msg_seq"] is None:
                    entry["msg_seq"] = decoded["seq"]
            else:
                entry["samples"], entry["note"] = _json_samples(m.payload)
        except (GatewayError, ValueError, UnicodeDecodeError) as exc:
            entry["note"] = f"not decoded: {exc}"[:200]
        return entry

    def _sparkplug(self, metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
        catalog = self.gateway.catalog
        out = []
        for metric in metrics:
            name, alias = metric["name"], metric["alias"]
            if name is None and alias is not None and 1 <= alias <= len(catalog):
                name = catalog[alias - 1].path  # the alias of a tag is its id + 1
            out.append({"tag": name or f"alias {alias}", "value": _plain(metric["value"])})
        return out


def _json_samples(payload: bytes) -> tuple[list[dict[str, Any]], str | None]:
    body = json.loads(payload.decode("utf-8"))
    samples = body.get("samples") if isinstance(body, dict) else None
    if isinstance(samples, dict) and isinstance(samples.get("tag"), list):
        values = samples.get("value") or []
        return [{"tag": str(t), "value": _plain(v)} for t, v in zip(
            samples["tag"], values, strict=False)], None
    return [], json.dumps(body, default=str)[:300]


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)
