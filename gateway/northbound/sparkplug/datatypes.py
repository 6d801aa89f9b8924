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

#: the Sparkplug "Quality" property convention (0 bad, 192 good, 500 stale); uncertain
#: has no Sparkplug code and uses OPC's 64
QUALITY_CODE: dict[Quality, int] = {
    Quality.GOOD: 192,
    Quality.UNCERTAIN: 64,
    Quality.BAD: 0,
    Quality.STALE: 500,
}

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
