"""InfluxDB line protocol: escaping and the encoding of sample batches.

One point per sample: ``{measurement},gateway=…,site=…,line=…,tag={tag} value=…,quality=…i {ts}``.
``value`` is a float for numeric and bool tags (bools as 1.0/0.0), ``text`` a string for
string tags, ``int`` an integer (``…i``) for int64 tags and ``uint`` an unsigned integer
(``…u``) for uint64 tags: float64 would round those above 2**53 (an all-ones "not
available" marker would become a plausible 1.8447e19). Each kind has a field key of its
own because InfluxDB fixes one type per field key in a measurement. A NaN (a bad
sample) has no value field. ``quality`` is the integer code of
:class:`gateway.types.Quality`: 0 good, 1 uncertain, 2 bad, 3 stale.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from gateway.tags import TagCatalog
from gateway.types import DataType, SampleBatch

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


class FieldKind(enum.Enum):
    """Which field carries a sample's value."""

    FLOAT = "value"
    INT = "int"
    UINT = "uint"
    TEXT = "text"


_INT64_MAX = 2**63 - 1


def field_kind(datatype: DataType | None, unsigned: bool = True) -> FieldKind:
    """The field of a tag of ``datatype`` (None: not known, decided per value). Without
    ``unsigned`` (a target that refuses the ``u`` suffix) uint64 is written as ``int``."""
    if datatype is DataType.STRING:
        return FieldKind.TEXT
    if datatype is DataType.INT64:
        return FieldKind.INT
    if datatype is DataType.UINT64:
        return FieldKind.UINT if unsigned else FieldKind.INT
    return FieldKind.FLOAT


def field_value(value: Any, kind: FieldKind = FieldKind.FLOAT) -> str | None:
    """The field set's value part (``value=…``, ``int=…i``, ``uint=…u`` or ``text=…``) for
    one Python value; None when there is none (missing, NaN, infinite). An int that float64
    cannot hold exactly is never written as a float, whatever ``kind`` says."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "value=1.0" if value else "value=0.0"
    if isinstance(value, int) and (kind is not FieldKind.FLOAT or abs(value) > 2**53):
        return _integer_field(value, kind)
    if kind in (FieldKind.INT, FieldKind.UINT) and isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            return None  # no whole number: no value in an integer series (quality says why)
        return _integer_field(int(value), kind)
    if isinstance(value, int | float):
        number = float(value)
        return f"value={number!r}" if math.isfinite(number) else None
    return f"text={string_field(str(value))}"


def _integer_field(value: int, kind: FieldKind) -> str:
    """An exact integer field: ``uint=…u`` when allowed and needed, else ``int=…i``; a
    value no 64-bit integer field holds goes, exact, as digits in ``text``."""
    if kind is FieldKind.UINT and value >= 0:
        return f"uint={value}u" if value <= 2**64 - 1 else f"text=\"{value}\""
    if -_INT64_MAX - 1 <= value <= _INT64_MAX:
        return f"int={value}i"
    return f"text=\"{value}\""


def point(prefix: str, value: Any, quality: int, ts: int, kind: FieldKind = FieldKind.FLOAT
          ) -> str:  # fmt: skip
    fields = field_value(value, kind)
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
        unsigned: bool = True,
    ) -> None:
        """``identity``: gateway, site and line, used as tags and in the measurement name;
        ``unsigned``: the target accepts ``…u`` fields (uint64 tags)."""
        self.divisor = PRECISION_NS[precision]
        self._measurement = measurement
        self._identity = dict(identity)
        self._unsigned = unsigned
        self.revise(catalog)

    def revise(self, catalog: TagCatalog) -> None:
        """Series of every tag id (at start, and after a live config change)."""
        measurement, identity, unsigned = self._measurement, self._identity, self._unsigned
        self.kinds = [field_kind(t.type, unsigned) for t in catalog.slots]
        self.prefixes = [
            series_prefix(
                measurement.format(device=t.device, **identity),
                {**identity, "device": t.device, "tag": t.name},
            )
            for t in catalog.slots
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
        prefixes, kinds = self.prefixes, self.kinds
        return [
            point(prefixes[i], v, q, t, kinds[i])
            for i, v, q, t in zip(ids, values, quality, ts, strict=True)
        ]
