"""Line-protocol points for the reader, in the same layout as the gateway's InfluxDB sink:
measurement from a template, tags gateway/site/line/device/tag, fields value (or text)
and quality (0 good, 1 uncertain, 2 bad, 3 stale)."""

from __future__ import annotations

from typing import Any

from gateway.influxdb.line_protocol import PRECISION_NS, point, series_prefix


class PointEncoder:
    def __init__(self, measurement: str, precision: str) -> None:
        self.measurement = measurement
        self._ms_to_unit = PRECISION_NS["ms"] / PRECISION_NS[precision]
        self._prefixes: dict[tuple[tuple[str, str], ...], str] = {}

    def line(self, series: dict[str, str], value: Any, quality: int, ts_ms: int) -> str:
        """``series``: gateway, site, line, device, tag (and for Sparkplug group)."""
        key = tuple(series.items())
        prefix = self._prefixes.get(key)
        if prefix is None:
            name = self.measurement.format(
                device=series.get("device", ""), gateway=series.get("gateway", ""),
                site=series.get("site", ""), line=series.get("line", ""),
            )  # fmt: skip
            prefix = self._prefixes[key] = series_prefix(name, series)
        return point(prefix, value, quality, int(ts_ms * self._ms_to_unit))
