"""Our tag types and qualities as Sparkplug B DataTypes, values and quality codes."""

from __future__ import annotations

from typing import Any

from gateway.northbound.sparkplug import sparkplug_b_pb2 as pb
from gateway.types import DataType, Quality

#: tag type (as published) -> Sparkplug DataType
SPARKPLUG_TYPE: dict[DataType, int] = {
    DataType.BOOL: pb.Boolean,
    DataType.INT16: pb.Int16,
    DataType.UINT16: pb.UInt16,
    DataType.INT32: pb.Int32,
    DataType.UINT32: pb.UInt32,
    DataType.INT64: pb.Int64,
    DataType.UINT64: pb.UInt64,
    DataType.FLOAT32: pb.Float,
    DataType.FLOAT64: pb.Double,
    DataType.STRING: pb.String,
}

#: the ``Quality`` property: Sparkplug 3.0 defines 0 (bad), 192 (good) and 500 (stale)
#: only. Uncertain has no code of its own: it is sent as 0, the conservative choice (a
#: host that knows only the specification will not take the value for good), with
#: ``QUALITY_DETAIL`` saying which it is.
QUALITY_CODE: dict[Quality, int] = {
    Quality.GOOD: 192,
    Quality.UNCERTAIN: 0,
    Quality.BAD: 0,
    Quality.STALE: 500,
}
#: String property beside ``Quality`` for the qualities the specification has no code for
QUALITY_DETAIL = "qualityDetail"
QUALITY_DETAILS: dict[Quality, str] = {Quality.UNCERTAIN: "uncertain"}
#: the Quality code earlier gateway versions sent for uncertain (OPC's); still understood
_LEGACY_UNCERTAIN = 64


def add_quality(props: Any, quality: Quality) -> None:
    """The ``Quality`` property of a metric (and ``qualityDetail`` for uncertain)."""
    add_property(props, "Quality", pb.Int32, QUALITY_CODE[quality])
    detail = QUALITY_DETAILS.get(quality)
    if detail is not None:
        add_property(props, QUALITY_DETAIL, pb.String, detail)


def quality_of(properties: dict[str, Any]) -> Quality:
    """A metric's quality from its decoded properties: ``Quality`` 192 good, 500 stale, 0
    bad, or uncertain when ``qualityDetail`` says so (or the legacy code 64); absent:
    good. A ``Quality`` that is no integer says nothing good about the value: bad."""
    raw = properties.get("Quality")
    if raw is None:
        return Quality.GOOD
    if not isinstance(raw, int) or isinstance(raw, bool):
        return Quality.BAD
    if raw == 500:
        return Quality.STALE
    if raw >= 192:
        return Quality.GOOD
    if properties.get(QUALITY_DETAIL) == "uncertain" or raw >= _LEGACY_UNCERTAIN:
        return Quality.UNCERTAIN
    return Quality.BAD


_INT32_FIELD = frozenset({pb.Int8, pb.Int16, pb.Int32, pb.UInt8, pb.UInt16, pb.UInt32})
_INT64_FIELD = frozenset({pb.Int64, pb.UInt64, pb.DateTime})


def set_value(holder: Any, datatype: int, value: Any) -> None:
    """Put ``value`` in the field its DataType uses; None (or NaN) becomes ``is_null``.

    ``holder`` is a Metric or a PropertyValue. Signed integers are stored as two's
    complement in the unsigned wire field, as Sparkplug 3.0 requires.
    """
    if value is None or (isinstance(value, float) and value != value):
        holder.is_null = True
        return
    if datatype in _INT32_FIELD:
        holder.int_value = int(value) & 0xFFFFFFFF
    elif datatype in _INT64_FIELD:
        holder.long_value = int(value) & 0xFFFFFFFFFFFFFFFF
    elif datatype == pb.Float:
        holder.float_value = float(value)
    elif datatype == pb.Double:
        holder.double_value = float(value)
    elif datatype == pb.Boolean:
        holder.boolean_value = bool(value)
    elif datatype in (pb.String, pb.Text, pb.UUID):
        holder.string_value = str(value)
    else:
        raise ValueError(f"unsupported Sparkplug datatype {datatype}")


def add_property(props: pb.Payload.PropertySet, key: str, datatype: int, value: Any) -> None:
    props.keys.append(key)
    prop = props.values.add()
    prop.type = datatype
    set_value(prop, datatype, value)
