"""Decode Sparkplug B 3.0 topics and payloads into plain Python values.

Stable API shared by the gateway's tests, the HIL recorder and the brain-side
reader (`chenxing-ingest`): :func:`parse_topic` and :func:`decode_payload`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from gateway import json_input
from gateway.errors import SparkplugDecodeError
from gateway.northbound.sparkplug import sparkplug_b_pb2 as pb

NAMESPACE = "spBv1.0"
MESSAGE_TYPES = frozenset(
    {"NBIRTH", "NDEATH", "DBIRTH", "DDEATH", "NDATA", "DDATA", "NCMD", "DCMD", "STATE"}
)
DEVICE_MESSAGE_TYPES = frozenset({"DBIRTH", "DDEATH", "DDATA", "DCMD"})


@dataclass(frozen=True, slots=True)
class SparkplugTopic:
    """One parsed Sparkplug topic.

    For a STATE topic (``spBv1.0/STATE/{host_id}``) ``message_type`` is ``"STATE"``,
    ``edge_node_id`` is the primary host id and ``group_id`` is empty.
    """

    namespace: str
    group_id: str
    message_type: str
    edge_node_id: str
    device_id: str | None = None

    @property
    def is_state(self) -> bool:
        return self.message_type == "STATE"

    @property
    def host_id(self) -> str | None:
        return self.edge_node_id if self.is_state else None


def parse_topic(topic: str) -> SparkplugTopic | None:
    """The parts of a Sparkplug B topic, or None when ``topic`` is not one."""
    parts = topic.split("/")
    if not parts or parts[0] != NAMESPACE:
        return None
    if len(parts) == 3 and parts[1] == "STATE" and parts[2]:
        return SparkplugTopic(NAMESPACE, "", "STATE", parts[2])
    if len(parts) not in (4, 5) or not all(parts):
        return None
    _, group_id, message_type, edge_node_id, *rest = parts
    if message_type not in MESSAGE_TYPES or message_type == "STATE":
        return None
    device_id = rest[0] if rest else None
    if (device_id is not None) != (message_type in DEVICE_MESSAGE_TYPES):
        return None
    return SparkplugTopic(NAMESPACE, group_id, message_type, edge_node_id, device_id)


def decode_state(data: bytes) -> dict[str, Any]:
    """A 3.0 STATE payload: ``{"online": bool, "timestamp": ms}``."""
    try:
        state = json_input.loads(data)
    except ValueError as exc:  # not UTF-8, not JSON, nested too deeply
        raise SparkplugDecodeError(f"STATE payload is not JSON: {exc}") from exc
    if not isinstance(state, dict) or not isinstance(state.get("online"), bool):
        raise SparkplugDecodeError("STATE payload lacks a boolean 'online'")
    return state


def decode_payload(data: bytes) -> dict[str, Any]:
    """A Sparkplug B payload as a dict.

    Keys: ``timestamp`` (ms or None), ``seq`` (or None), ``uuid``, ``body`` and
    ``metrics``: a list of dicts with ``name`` (None when sent by alias only),
    ``alias``, ``timestamp``, ``datatype`` (the DataType name, e.g. ``"Double"``),
    ``value`` (None when null), ``is_historical``, ``is_transient``, ``is_null``
    and ``properties`` (name -> plain value).
    """
    payload = pb.Payload()
    try:
        payload.ParseFromString(data)
    except DecodeError as exc:
        raise SparkplugDecodeError(f"not a Sparkplug B payload: {exc}") from exc
    return {
        "timestamp": payload.timestamp if payload.HasField("timestamp") else None,
        "seq": payload.seq if payload.HasField("seq") else None,
        "uuid": payload.uuid if payload.HasField("uuid") else None,
        "body": payload.body if payload.HasField("body") else None,
        "metrics": [metric_to_dict(metric) for metric in payload.metrics],
    }


def datatype_name(datatype: int) -> str:
    try:
        return pb.DataType.Name(datatype)
    except ValueError:
        return f"Unknown({datatype})"


def metric_to_dict(metric: pb.Payload.Metric) -> dict[str, Any]:
    datatype = metric.datatype if metric.HasField("datatype") else 0
    is_null = metric.is_null or metric.WhichOneof("value") is None
    return {
        "name": metric.name if metric.HasField("name") else None,
        "alias": metric.alias if metric.HasField("alias") else None,
        "timestamp": metric.timestamp if metric.HasField("timestamp") else None,
        "datatype": datatype_name(datatype) if metric.HasField("datatype") else None,
        "value": None if is_null else typed_value(metric, datatype),
        "is_historical": metric.is_historical,
        "is_transient": metric.is_transient,
        "is_null": is_null,
        "properties": property_set_to_dict(metric.properties)
        if metric.HasField("properties")
        else {},
    }


_SIGNED_BITS: dict[int, int] = {pb.Int8: 8, pb.Int16: 16, pb.Int32: 32, pb.Int64: 64}
#: the wire field a signed type travels in: int_value (uint32) or long_value (uint64)
_FIELD_BITS = {8: 32, 16: 32, 32: 32, 64: 64}


def _signed(raw: int, bits: int) -> int:
    """A signed integer of ``bits`` from its unsigned wire field. Sparkplug 3.0 sends it as
    two's complement in the field (sign-extended: Int16 -2 is 0xFFFFFFFE); some encoders
    use the type's width instead (0xFFFE), which is accepted too. A field value that is
    neither is returned as the field's signed value, out of the type's range as sent:
    never truncated to the width (0x100 as Int8 is 256, not 0)."""
    field = _FIELD_BITS[bits]
    raw &= (1 << field) - 1
    if bits < field and raw < 1 << bits:  # the type's width
        return raw - (1 << bits) if raw >= 1 << (bits - 1) else raw
    return raw - (1 << field) if raw >= 1 << (field - 1) else raw


def typed_value(holder: Any, datatype: int) -> Any:
    """The value of a Metric or PropertyValue, signed integers restored per DataType.

    A DataType of 0 (alias-only data messages carry none) returns the raw field value;
    :func:`resolve_datatype` can fix it up once the birth is known.
    """
    field = holder.WhichOneof("value")
    if field is None:
        return None
    raw = getattr(holder, field)
    if field == "propertyset_value":
        return property_set_to_dict(raw)
    if field == "propertysets_value":
        return [property_set_to_dict(ps) for ps in raw.propertyset]
    if field in ("dataset_value", "template_value", "extension_value"):
        return _message_summary(raw)
    bits = _SIGNED_BITS.get(datatype)
    if bits is not None and field in ("int_value", "long_value"):
        return _signed(raw, bits)
    return raw


def resolve_datatype(value: Any, datatype: str | None) -> Any:
    """Restore a signed integer from an alias-only data metric given its birth datatype."""
    if not isinstance(value, int) or isinstance(value, bool) or datatype is None:
        return value
    bits = {"Int8": 8, "Int16": 16, "Int32": 32, "Int64": 64}.get(datatype)
    return _signed(value, bits) if bits else value


def property_set_to_dict(props: pb.Payload.PropertySet) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in zip(props.keys, props.values, strict=False):
        out[key] = None if value.is_null else typed_value(value, value.type)
    return out


def _message_summary(message: Any) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(message, preserving_proto_field_name=True)
