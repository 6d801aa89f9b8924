"""InfluxDB line protocol: escaping and the encoding of sample batches.

One point per sample: ``{measurement},gateway=…,site=…,line=…,tag={tag} value=…,quality=…i {ts}``.
``value`` is a float for numeric and bool tags (bools as 1.0/0.0, so one measurement never
mixes field types), ``text`` a string for string tags; a NaN (a bad sample) has no value
field. ``quality`` is the integer code of :class:`gateway.types.Quality`: 0 good,
1 uncertain, 2 bad, 3 stale.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from gateway.tags import TagCatalog
from gateway.types import SampleBatch

#: nanoseconds per unit of each write precision
PRECISION_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}

_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n"})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n"})


def escape_key(text: str) -> str:
    """A tag key, tag value or field key."""
    return text.translate(_KEY_ESCAPES)


def escape_measurement(text: str) -> str:
    return text.translate(_MEASUREMENT_ESCAPES)


def string_field(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def series_prefix(measurement: str, tags: Mapping[str, str]) -> str:
    """``measurement,k=v,…`` with the tags sorted (InfluxDB's preferred order); empty tag
    values are left out (the protocol does not allow them)."""
    parts = [escape_measurement(measurement)]
    parts += [f"{escape_key(k)}={escape_key(v)}" for k, v in sorted(tags.items()) if v != ""]
    return ",".join(parts)


def field_value(value: Any) -> str | None:
    """The field set's ``value=…`` / ``text=…`` part for one Python value; None when there is
    none (missing, NaN, infinite)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "value=1.0" if value else "value=0.0"
    if isinstance(value, int | float):
        number = float(value)
        return f"value={number!r}" if math.isfinite(number) else None
    return f"text={string_field(str(value))}"


def point(prefix: str, value: Any, quality: int, ts: int) -> str:
    fields = field_value(value)
    quality_field = f"quality={quality}i"
    return f"{prefix} {fields},{quality_field} {ts}" if fields else f"{prefix} {quality_field} {ts}"


class BatchEncoder:
    """Encodes :class:`SampleBatch` es of one gateway; series prefixes are built once per tag."""

    def __init__(
        self,
        catalog: TagCatalog,
        measurement: str,
        identity: Mapping[str, str],
        precision: str,
    ) -> None:
        """``identity``: gateway, site and line, used as tags and in the measurement name."""
        self.divisor = PRECISION_NS[precision]
        self.prefixes = [
            series_prefix(
                measurement.format(device=t.device, **identity),
                {**identity, "device": t.device, "tag": t.name},
            )
            for t in catalog.tags
        ]

    def encode(self, batch: SampleBatch) -> list[str]:
        """One line per sample."""
        ids = batch.tag_ids.tolist()
        ts = (batch.ts_ns // self.divisor).tolist()
        quality = batch.quality.tolist()
        values: Iterable[Any]
        if batch.values.dtype == object:
            values = batch.values.tolist()
        else:
            values = np.asarray(batch.values, dtype=np.float64).tolist()
        prefixes = self.prefixes
        return [
            point(prefixes[i], v, q, t) for i, v, q, t in zip(ids, values, quality, ts, strict=True)
        ]
