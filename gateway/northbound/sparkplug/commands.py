"""NCMD and DCMD payloads as :class:`~gateway.commands.Command` writes.

The writes then take the same path as JSON commands (writable check, type, range,
rate, read-back, audit). A metric is addressed by name or by the alias of the last
birth. ``Node Control/Rebirth`` is handled by the edge node and never becomes a write.
Sparkplug commands carry no id: the id is derived from the topic, the payload
timestamp and a digest of the payload, so an exact redelivery is answered, not
written twice.
"""

from __future__ import annotations

import hashlib
from typing import Any

from gateway.commands.parse import Command, CommandValue, MalformedCommand, WriteRequest
from gateway.northbound.sparkplug import sparkplug_b_pb2 as pb
from gateway.northbound.sparkplug.contract import REBIRTH, SparkplugContract
from gateway.northbound.sparkplug.decode import (
    SparkplugDecodeError,
    decode_payload,
    parse_topic,
    resolve_datatype,
)

MAX_PAYLOAD_BYTES = 64 * 1024


def command_id(topic: str, payload: bytes, timestamp: int | None) -> str:
    parsed = parse_topic(topic)
    where = topic if parsed is None else (
        f"{parsed.message_type}/{parsed.device_id or parsed.edge_node_id}"
    )
    digest = hashlib.sha1(payload, usedforsecurity=False).hexdigest()[:10]
    return f"{where}@{timestamp if timestamp is not None else '-'}#{digest}"


def is_rebirth(metric: dict[str, Any], contract: SparkplugContract) -> bool:
    return metric["name"] == REBIRTH or (
        metric["name"] is None and metric["alias"] == contract.node_aliases[REBIRTH]
    )


class SparkplugCommandParser:
    """``parse(topic, payload)`` for :class:`~gateway.commands.CommandExecutor`."""

    def __init__(self, contract: SparkplugContract, max_writes: int) -> None:
        self.contract = contract
        self.max_writes = max_writes

    def __call__(self, topic: str, payload: bytes) -> Command:
        parsed = parse_topic(topic)
        if parsed is None or parsed.message_type not in ("NCMD", "DCMD"):
            raise MalformedCommand(f"not a Sparkplug command topic: {topic}")
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise MalformedCommand(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}",
                                   command_id(topic, payload, None))  # fmt: skip
        try:
            body = decode_payload(payload)
        except SparkplugDecodeError as exc:
            raise MalformedCommand(str(exc), command_id(topic, payload, None)) from None
        cid = command_id(topic, payload, body["timestamp"])
        metrics = [m for m in body["metrics"] if not is_rebirth(m, self.contract)]
        if not metrics:
            raise MalformedCommand("no metric to write", cid)
        if len(metrics) > self.max_writes:
            raise MalformedCommand(f"{len(metrics)} writes in one command; at most "
                                   f"{self.max_writes}", cid)  # fmt: skip
        device = parsed.device_id
        writes = tuple(self._write(device, m, cid) for m in metrics)
        return Command(cid, writes)

    def _write(self, device: str | None, metric: dict[str, Any], cid: str) -> WriteRequest:
        catalog = self.contract.catalog
        name, alias = metric["name"], metric["alias"]
        if device is None:  # NCMD: node metrics are not writable tags; the executor says so
            label = name if name is not None else f"alias {alias}"
            return WriteRequest(label, _value(metric, None, cid))
        if name is not None:
            path = f"{device}.{name}"
        elif alias is not None and 1 <= alias <= len(catalog) and (
            catalog[alias - 1].device == device
        ):
            path = catalog[alias - 1].path
        else:
            path = f"{device}.alias {alias}"
        tag = catalog.get(path)
        datatype = None
        if tag is not None:
            datatype = pb.DataType.Name(int(self.contract.datatypes[tag.id]))
        return WriteRequest(path, _value(metric, datatype, cid))


def _value(metric: dict[str, Any], datatype: str | None, cid: str) -> CommandValue:
    value = metric["value"]
    if value is None:
        raise MalformedCommand(f"metric {metric['name'] or metric['alias']} has no value", cid)
    if not isinstance(value, bool | int | float | str):
        raise MalformedCommand(
            f"metric {metric['name'] or metric['alias']}: unsupported value {value!r}", cid
        )
    return resolve_datatype(value, metric["datatype"] or datatype)  # type: ignore[no-any-return]
