"""Sparkplug B messages as the recorder's births, deaths, data messages and samples.

Keeps the aliases of every NBIRTH and DBIRTH so that alias-only DDATA metrics get their
tag path ``{device}.{metric name}`` and NDATA metrics their name; quality comes from the
``Quality`` property (good when absent) and ``qualityDetail``.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import SparkplugDecodeError
from gateway.northbound.sparkplug.datatypes import quality_of
from gateway.northbound.sparkplug.decode import decode_payload, parse_topic, resolve_datatype


class SparkplugDecoder:
    def __init__(self) -> None:
        self._aliases: dict[tuple[str, int], tuple[str, str | None]] = {}

    def decode(self, topic: str, payload: bytes) -> tuple[str, dict[str, Any]] | None:
        """(kind, body) with kind birth, death, data or other; None when not Sparkplug
        (or a data message without timestamps).

        A data body has the JSON contract's ``seq`` and column ``samples`` (tag, value,
        ts, q), so the recorder treats both contracts alike."""
        parsed = parse_topic(topic)
        if parsed is None or parsed.is_state:
            return None
        try:
            body = decode_payload(payload)
        except SparkplugDecodeError:
            return None
        body = {**body, "type": parsed.message_type, "device": parsed.device_id}
        kind = parsed.message_type
        device = parsed.device_id or ""
        if kind in ("NBIRTH", "DBIRTH"):  # node metrics under device "", tags under theirs
            for m in body["metrics"]:
                if m["alias"] is not None:
                    self._aliases[(device, m["alias"])] = (m["name"], m["datatype"])
        if kind == "NBIRTH":
            return "birth", body
        if kind == "NDEATH":
            return "death", body
        if kind not in ("DDATA", "NDATA"):
            return "other", body
        tags, values, stamps, qualities = [], [], [], []
        for m in body["metrics"]:
            name, datatype = self._aliases.get((device, m["alias"]), (m["name"], None))
            tags.append(f"{device}.{name}" if device else str(name))
            values.append(resolve_datatype(m["value"], datatype))
            stamp = m["timestamp"] or body["timestamp"]
            if stamp is None:  # neither metric nor payload timestamp: not a valid DATA
                return None
            stamps.append(stamp)
            qualities.append(quality_of(m["properties"]).name.lower())
        body["samples"] = {"tag": tags, "value": values, "ts": stamps, "q": qualities}
        return "data", body
