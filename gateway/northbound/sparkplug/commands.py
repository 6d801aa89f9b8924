"""NCMD and DCMD payloads as :class:`~gateway.commands.Command` writes.

The writes then take the same path as JSON commands (writable check, type, range,
rate, read-back, audit). A metric is addressed by name or by the alias of the last
birth. ``Node Control/Rebirth`` is handled by the edge node and never becomes a write.
A value is read as sent: signed integers as Sparkplug 3.0's two's complement in their
wire field (sign-extended: Int16 -2 is ``int_value`` 0xFFFFFFFE), and it must fit the
datatype it declares (or, without one, the tag's birth datatype): an Int16 of 40000 is
refused quoting 40000, never wrapped to -25536.
Sparkplug commands carry no id: the id is derived from the topic, the payload
timestamp and a digest of the payload, so an exact redelivery is answered, not
written twice.
"""

from __future__ import annotations

import hashlib
from typing import Any

from google.protobuf.message import DecodeError

from gateway.commands.deploy import (
    CONFIG_APPLY,
    MODEL_DEPLOY,
    DeployRequest,
    Operation,
    checked_request,
)
from gateway.commands.parse import Command, CommandValue, WriteRequest
from gateway.errors import MalformedCommand, SparkplugDecodeError
from gateway.northbound.sparkplug import sparkplug_b_pb2 as pb
from gateway.northbound.sparkplug.decode import (
    datatype_name,
    decode_payload,
    parse_topic,
    property_set_to_dict,
)
from gateway.northbound.sparkplug.payloads import (
    CONFIG_APPLY as CONFIG_APPLY_METRIC,
)
from gateway.northbound.sparkplug.payloads import (
    MODEL_DEPLOY as MODEL_DEPLOY_METRIC,
)
from gateway.northbound.sparkplug.payloads import REBIRTH, SparkplugPayloads

MAX_PAYLOAD_BYTES = 64 * 1024


def command_id(topic: str, payload: bytes, timestamp: int | None) -> str:
    parsed = parse_topic(topic)
    where = topic if parsed is None else (
        f"{parsed.message_type}/{parsed.device_id or parsed.edge_node_id}"
    )
    digest = hashlib.sha1(payload, usedforsecurity=False).hexdigest()[:10]
    return f"{where}@{timestamp if timestamp is not None else '-'}#{digest}"


def is_rebirth(metric: dict[str, Any], contract: SparkplugPayloads) -> bool:
    return metric["name"] == REBIRTH or (
        metric["name"] is None and metric["alias"] == contract.node_aliases[REBIRTH]
    )


class SparkplugCommandParser:
    """``parse(topic, payload)`` for :class:`~gateway.commands.CommandExecutor`."""

    def __init__(self, contract: SparkplugPayloads, max_writes: int) -> None:
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
        wire = pb.Payload()
        wire.ParseFromString(payload)  # decoded above: the raw fields of each metric
        raw_metrics = [r for r, m in zip(wire.metrics, body["metrics"], strict=True)
                       if not is_rebirth(m, self.contract)]  # fmt: skip
        writes = tuple(
            self._write(device, m, r, cid) for m, r in zip(metrics, raw_metrics, strict=True)
        )
        return Command(cid, writes)

    def _write(self, device: str | None, metric: dict[str, Any], raw: pb.Payload.Metric,
               cid: str) -> WriteRequest:  # fmt: skip
        catalog = self.contract.catalog
        name, alias = metric["name"], metric["alias"]
        if device is None:  # NCMD: node metrics are not writable tags; the executor says so
            label = name if name is not None else f"alias {alias}"
            return WriteRequest(label, _value(metric, raw, None, cid))
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
            datatype = int(self.contract.datatypes[tag.id])
        return WriteRequest(path, _value(metric, raw, datatype, cid))


#: the range each integer DataType holds, and the wire field it travels in
_INTEGER_TYPES: dict[int, tuple[int, int, str]] = {
    pb.Int8: (-(2**7), 2**7 - 1, "int_value"),
    pb.Int16: (-(2**15), 2**15 - 1, "int_value"),
    pb.Int32: (-(2**31), 2**31 - 1, "int_value"),
    pb.Int64: (-(2**63), 2**63 - 1, "long_value"),
    pb.UInt8: (0, 2**8 - 1, "int_value"),
    pb.UInt16: (0, 2**16 - 1, "int_value"),
    pb.UInt32: (0, 2**32 - 1, "int_value"),
    pb.UInt64: (0, 2**64 - 1, "long_value"),
}
_OTHER_TYPES: dict[int, str] = {
    pb.Float: "float_value", pb.Double: "double_value", pb.Boolean: "boolean_value",
    pb.String: "string_value", pb.Text: "string_value",
}  # fmt: skip


def _value(metric: dict[str, Any], raw: pb.Payload.Metric, tag_datatype: int | None,
           cid: str) -> CommandValue:  # fmt: skip
    """The value of a command metric as sent, checked against its declared DataType (or the
    tag's, when it declares none): :class:`MalformedCommand` when it does not fit."""
    label = metric["name"] or f"alias {metric['alias']}"
    field = raw.WhichOneof("value")
    if raw.is_null or field is None:
        raise MalformedCommand(f"metric {label} has no value", cid)
    declared = raw.datatype if raw.HasField("datatype") else None
    datatype = declared if declared is not None else tag_datatype
    wire = getattr(raw, field)
    if datatype is None:  # an unknown tag and no declared type: the executor refuses it
        return wire if isinstance(wire, bool | int | float | str) else str(wire)
    name = datatype_name(datatype)
    if datatype in _INTEGER_TYPES:
        low, high, expected = _INTEGER_TYPES[datatype]
        if field != expected:
            raise MalformedCommand(
                f"metric {label}: datatype {name} travels in {expected}, not {field}", cid)
        value = int(wire)
        if low < 0:  # signed: two's complement in the whole wire field, as sent
            bits = 32 if expected == "int_value" else 64
            value = value - (1 << bits) if value >= 1 << (bits - 1) else value
        if not low <= value <= high:
            raise MalformedCommand(
                f"metric {label}: {value} does not fit the datatype {name} ({low}..{high})", cid)
        return value
    expected = _OTHER_TYPES.get(datatype, "")
    if field != expected:
        raise MalformedCommand(
            f"metric {label}: datatype {name} is not writable here"
            if not expected else f"metric {label}: datatype {name} travels in {expected}, "
            f"not {field}", cid)  # fmt: skip
    return wire  # type: ignore[no-any-return]  # protobuf: the field named above holds one


#: the NCMD metrics that carry a signed bundle, and the operation each asks for
DEPLOY_METRICS: dict[str, Operation] = {CONFIG_APPLY_METRIC: CONFIG_APPLY,
                                        MODEL_DEPLOY_METRIC: MODEL_DEPLOY}
_BUNDLE_TYPES = (pb.Bytes, pb.File)


def _deploy_op(metric: pb.Payload.Metric, contract: SparkplugPayloads) -> Operation | None:
    if metric.HasField("name"):
        return DEPLOY_METRICS.get(metric.name)
    if metric.HasField("alias"):
        for name, op in DEPLOY_METRICS.items():
            if contract.node_aliases.get(name) == metric.alias:
                return op
    return None


def _ncmd(topic: str, payload: bytes) -> pb.Payload | None:
    """The NCMD's protobuf (bundles are length-delimited bytes: parsing copies them once)."""
    parsed = parse_topic(topic)
    if parsed is None or parsed.message_type != "NCMD" or parsed.device_id is not None:
        return None
    wire = pb.Payload()
    try:
        wire.ParseFromString(payload)
    except (DecodeError, RuntimeWarning, ValueError):
        return None
    return wire


def is_deploy_command(topic: str, payload: bytes, contract: SparkplugPayloads) -> bool:
    """An NCMD with a ``Node Control/Config Apply`` or ``Node Control/Model Deploy`` metric
    (by name, or by the alias of the last NBIRTH)."""
    if not payload:
        return False
    wire = _ncmd(topic, payload)
    return wire is not None and any(_deploy_op(m, contract) for m in wire.metrics)


def parse_deploy_command(topic: str, payload: bytes, contract: SparkplugPayloads,
                         max_bundle_bytes: int) -> DeployRequest:
    """The :class:`DeployRequest` an NCMD carries: one bundle metric of DataType Bytes or
    File, alone in its NCMD (a rebirth request beside it is handled by the edge node);
    optional metric properties ``id`` (String: the command's id, else one derived as for
    writes) and ``expected_version`` (an integer: config/apply's optimistic lock)."""
    wire = _ncmd(topic, payload)
    if wire is None:
        raise MalformedCommand("not a Sparkplug B NCMD payload", command_id(topic, payload, None))
    timestamp = wire.timestamp if wire.HasField("timestamp") else None
    cid = command_id(topic, payload, timestamp)
    deploys = [(m, _deploy_op(m, contract)) for m in wire.metrics]
    bundles = [(m, op) for m, op in deploys if op is not None]
    rebirth_alias = contract.node_aliases[REBIRTH]
    others = [m for m, op in deploys if op is None and not (
        m.name == REBIRTH or (not m.HasField("name") and m.alias == rebirth_alias))]
    if len(bundles) != 1 or others:
        raise MalformedCommand("a Node Control/Config Apply or Model Deploy metric travels "
                               "alone in its NCMD (one bundle, no writes)", cid)
    metric, op = bundles[0]
    assert op is not None
    props: dict[str, Any] = (property_set_to_dict(metric.properties)
                             if metric.HasField("properties") else {})
    given = props.get("id")
    if given is not None:
        if not isinstance(given, str) or not 0 < len(given) <= 128:
            raise MalformedCommand("property id must be a string of 1 to 128 characters", cid)
        cid = given
    unknown = sorted(set(props) - {"id", "expected_version"})
    if unknown:
        raise MalformedCommand(f"unknown propert{'ies' if len(unknown) > 1 else 'y'}: "
                               f"{', '.join(unknown)}", cid)
    expected = props.get("expected_version")
    if expected is not None and (op != CONFIG_APPLY or isinstance(expected, bool)
                                 or not isinstance(expected, int) or expected < 1):
        raise MalformedCommand("property expected_version must be a config version (an "
                               "integer from 1), on Config Apply only", cid)
    if metric.HasField("datatype") and metric.datatype not in _BUNDLE_TYPES:
        raise MalformedCommand(f"the bundle travels as DataType Bytes or File, not "
                               f"{datatype_name(metric.datatype)}", cid)
    if metric.WhichOneof("value") != "bytes_value":
        raise MalformedCommand("the metric holds no bytes (the signed bundle)", cid)
    return checked_request(cid, op, bytes(metric.bytes_value), expected, max_bundle_bytes)
