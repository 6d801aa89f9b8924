"""Line-protocol points for the reader, in the same layout as the gateway's InfluxDB sink:
measurement from a template, tags gateway/site/line/device/tag, fields value (or text, int
for int64 and uint for uint64 tags, exact) and quality (0 good, 1 uncertain, 2 bad,
3 stale)."""

from __future__ import annotations

from typing import Any

from gateway.influxdb.line_protocol import PRECISION_NS, field_kind, point, series_prefix
from gateway.types import DataType

#: a JSON birth's ``type`` (the gateway's type names) or a Sparkplug DataType name -> the tag
#: type that chooses the field; one dict lookup per metric (an Enum lookup that misses raises
#: and catches a ValueError: for Sparkplug's Float and Double that was most of the decode)
_TAG_TYPES: dict[str, DataType] = {
    **{t.value: t for t in DataType},
    "Int64": DataType.INT64,
    "UInt64": DataType.UINT64,
    "String": DataType.STRING,
}


def tag_type(name: str | None) -> DataType | None:
    """A tag type from a JSON birth's ``type`` or a Sparkplug DataType name (None when it
    says nothing that matters to the field: Sparkplug's floats and bools, unknown names)."""
    return None if name is None else _TAG_TYPES.get(name)


class PointEncoder:
    def __init__(self, measurement: str, precision: str, unsigned: bool = True) -> None:
        self.measurement = measurement
        self.unsigned = unsigned
        self._ms_to_unit = PRECISION_NS["ms"] / PRECISION_NS[precision]
        self._prefixes: dict[tuple[tuple[str, str], ...], str] = {}

    def line(self, series: dict[str, str], value: Any, quality: int, ts_ms: int,
             datatype: DataType | None = None) -> str:  # fmt: skip
        """``series``: gateway, site, line, device, tag (and for Sparkplug group);
        ``datatype`` the tag's type when known (64-bit integers get an exact field)."""
        key = tuple(series.items())
        prefix = self._prefixes.get(key)
        if prefix is None:
            name = self.measurement.format(
                device=series.get("device", ""), gateway=series.get("gateway", ""),
                site=series.get("site", ""), line=series.get("line", ""),
            )  # fmt: skip
            prefix = self._prefixes[key] = series_prefix(name, series)
        kind = field_kind(datatype, self.unsigned)
        return point(prefix, value, quality, int(ts_ms * self._ms_to_unit), kind)
