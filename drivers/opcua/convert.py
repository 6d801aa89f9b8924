"""OPC UA values, status codes and timestamps <-> the gateway's samples (no I/O here).

- Status codes: the top two bits give the severity: ``00`` Good -> GOOD, ``01``
  Uncertain -> UNCERTAIN, ``10``/``11`` Bad -> BAD (:func:`qualities`, vectorised).
- Values (:func:`sample_value`): numbers and bools -> float (bools 0.0/1.0), except
  integers for ``int64``/``uint64`` tags, which stay exact Python ints,
  DateTime -> seconds since the epoch (float), strings -> str for ``string``
  tags. Arrays: a tag with ``index`` takes that element; a ``string`` tag without
  ``index`` gets the whole array as JSON text; a numeric tag without ``index``
  on an array is a type error (BAD).
- Writes (:func:`to_variant`): the raw value is converted to the node's variant
  type, with range and integer checks, before anything is sent.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from drivers.opcua.asyncua_adapter import ua
from drivers.opcua.config import OpcUaTagConfig
from gateway.errors import ConversionError
from gateway.types import DataType

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)

_INT_RANGES: dict[ua.VariantType, tuple[int, int]] = {
    ua.VariantType.SByte: (-(2**7), 2**7 - 1),
    ua.VariantType.Byte: (0, 2**8 - 1),
    ua.VariantType.Int16: (-(2**15), 2**15 - 1),
    ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-(2**31), 2**31 - 1),
    ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (-(2**63), 2**63 - 1),
    ua.VariantType.UInt64: (0, 2**64 - 1),
}
_FLOAT32_MAX = 3.4028234663852886e38


def qualities(status_codes: list[int]) -> npt.NDArray[np.uint8]:
    """OPC UA status codes -> Quality values: Good 0, Uncertain 1, Bad 2 (the enum's values)."""
    severity = np.asarray(status_codes, dtype=np.uint32) >> 30
    qualities: npt.NDArray[np.uint8] = np.minimum(severity, 2).astype(np.uint8)
    return qualities


def timestamp_ns(value: dt.datetime | None, default_ns: int) -> int:
    """A DataValue timestamp (UTC) as ns since the epoch; ``default_ns`` when absent."""
    if value is None:
        return default_ns
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    if value <= _EPOCH:  # the OPC UA "no time" (1601) or nonsense
        return default_ns
    return (value - _EPOCH) // _MICROSECOND * 1000


def _scalar(value: Any, tag: OpcUaTagConfig) -> float | int | str:
    if tag.type is DataType.STRING:
        if isinstance(value, ua.LocalizedText):
            return value.Text or ""
        if isinstance(value, dt.datetime):
            return value.isoformat()
        return value if isinstance(value, str) else str(value)
    if tag.type.is_wide_integer and isinstance(value, int) and not isinstance(value, bool):
        return value  # exact: float64 would round above 2**53
    if isinstance(value, bool | int | float):
        return float(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        seconds: float = (value - _EPOCH) / dt.timedelta(seconds=1)
        return seconds
    raise ConversionError(
        "type_mismatch", f"{tag.name}: a {type(value).__name__} value does not fit type "
        f"{tag.type.value}"
    )


def sample_value(value: Any, tag: OpcUaTagConfig) -> float | int | str:
    """The sample value of ``tag`` from a node's value (see the module docstring)."""
    if value is None:
        raise ConversionError("null_value", f"{tag.name}: the node has no value (null)")
    if isinstance(value, list):
        if tag.index is None:
            if tag.type is DataType.STRING:
                return json.dumps(value, default=_json_default, separators=(",", ":"))
            raise ConversionError(
                "array_without_index",
                f"{tag.name}: the node holds an array; give 'index' or use type string (JSON)",
            )
        if tag.index >= len(value):
            raise ConversionError(
                "index_out_of_range",
                f"{tag.name}: index {tag.index} is past the array's {len(value)} elements",
            )
        value = value[tag.index]
        if value is None:
            raise ConversionError("null_value", f"{tag.name}: the element is null")
    elif tag.index is not None:
        raise ConversionError("type_mismatch", f"{tag.name}: 'index' given but the node is scalar")
    return _scalar(value, tag)


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def to_variant(value: float | int | bool | str, vtype: ua.VariantType, name: str) -> ua.Variant:
    """A raw write value converted to ``vtype``; :class:`ConversionError` when it does not fit."""
    if vtype is ua.VariantType.Boolean:
        if isinstance(value, str) or value not in (0, 1):
            raise ConversionError("write_value", f"{name}: a Boolean takes true/false or 0/1")
        return ua.Variant(bool(value), vtype)
    if vtype in (ua.VariantType.String, ua.VariantType.LocalizedText):
        text = value if isinstance(value, str) else str(value)
        return ua.Variant(text if vtype is ua.VariantType.String else ua.LocalizedText(text), vtype)
    if isinstance(value, str):
        raise ConversionError("write_value", f"{name}: the node takes a number, not text")
    if vtype in _INT_RANGES and isinstance(value, int) and not isinstance(value, bool):
        lo, hi = _INT_RANGES[vtype]  # an int is checked and sent exactly, never via float
        if not lo <= value <= hi:
            raise ConversionError("write_value", f"{name}: {value} is outside {vtype.name}")
        return ua.Variant(value, vtype)
    number = float(value)
    if not math.isfinite(number) and vtype not in (ua.VariantType.Float, ua.VariantType.Double):
        raise ConversionError("write_value", f"{name}: {number} is not a finite number")
    if vtype in _INT_RANGES:
        lo, hi = _INT_RANGES[vtype]
        rounded = round(number)
        if not math.isfinite(number) or abs(number - rounded) > 1e-9 * max(1.0, abs(number)):
            raise ConversionError("write_value", f"{name}: {vtype.name} takes whole numbers")
        if not lo <= rounded <= hi:
            raise ConversionError("write_value", f"{name}: {rounded} is outside {vtype.name}")
        return ua.Variant(int(rounded), vtype)
    if vtype is ua.VariantType.Float:
        if math.isfinite(number) and abs(number) > _FLOAT32_MAX:
            raise ConversionError("write_value", f"{name}: {number} is too large for a Float")
        return ua.Variant(number, vtype)
    if vtype is ua.VariantType.Double:
        return ua.Variant(number, vtype)
    if vtype is ua.VariantType.DateTime:
        return ua.Variant(_EPOCH + dt.timedelta(seconds=number), vtype)
    raise ConversionError("write_value", f"{name}: writing {vtype.name} nodes is not supported")
