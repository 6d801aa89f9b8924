"""Core types shared by drivers, the pipeline and the northbound.

A *sample batch* is what one poll or one notification burst produced. It is
column-oriented: tag ids, values, timestamps and qualities are parallel NumPy
arrays so that scaling, deadband filtering and encoding work on whole batches.
"""

from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt


class Quality(enum.IntEnum):
    """Sample quality. The integer values are part of the wire contract."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2
    STALE = 3


#: the qualities as NumPy scalars, for the hot path: an array compared with an IntEnum
#: member takes ~19 µs (the member is converted each time), with one of these ~3 µs
GOOD_CODE, UNCERTAIN_CODE, BAD_CODE, STALE_CODE = (np.uint8(q) for q in Quality)

QUALITY_NAMES: tuple[str, ...] = tuple(q.name.lower() for q in Quality)
#: object array for vectorised code -> name lookups (``QUALITY_NAME_ARRAY[q]``)
QUALITY_NAME_ARRAY = np.array(QUALITY_NAMES, dtype=object)


class DataType(enum.StrEnum):
    """Data type of a tag as published (after scaling)."""

    BOOL = "bool"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"

    @property
    def is_numeric(self) -> bool:
        return self is not DataType.STRING

    @property
    def is_wide_integer(self) -> bool:
        """An integer that float64 cannot hold exactly (above 2**53): it travels as a
        Python int, never as a float."""
        return self in (DataType.INT64, DataType.UINT64)

    @property
    def is_object(self) -> bool:
        """Values travel as Python objects in a batch (an object array): strings, and
        64-bit integers as exact ints."""
        return self in (DataType.STRING, DataType.INT64, DataType.UINT64)


#: the values each integer type can hold (inclusive)
INTEGER_RANGES: dict[DataType, tuple[int, int]] = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
    DataType.INT64: (-(2**63), 2**63 - 1),
    DataType.UINT64: (0, 2**64 - 1),
}


class Classification(enum.StrEnum):
    """Data-registration class of a tag, sent in the birth catalog."""

    PUBLIC = "public"
    INTERNAL = "internal"
    RESTRICTED = "restricted"


def _int_objects(values: list[int]) -> np.ndarray:
    """An object array of Python ints (``np.array(ints, dtype=object)`` would make a 2-D
    array of a nested list; this never does)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def now_ns() -> int:
    """Wall-clock time in nanoseconds since the Unix epoch (UTC)."""
    return time.time_ns()


#: the largest integer magnitude below which float64 holds every integer exactly
_FLOAT_EXACT = 2**53

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
#: which samples of a batch: a mask, row numbers or a slice
Rows = npt.NDArray[np.bool_] | npt.NDArray[np.integer[Any]] | slice


@dataclass(slots=True)
class SampleBatch:
    """Parallel arrays: ``tag_ids[i]`` had ``values[i]`` at ``ts_ns[i]`` with ``quality[i]``.

    ``values`` is float64 for numeric tags (bools as 0.0/1.0, NaN where the
    quality is bad). It is an object array when a batch carries strings or values of
    ``int64``/``uint64`` tags: those are Python ints, exact over the whole 64-bit range
    (float64 would round them above 2**53 and turn 2**64-1 into 2**64).
    """

    tag_ids: npt.NDArray[np.int32]
    values: np.ndarray
    ts_ns: npt.NDArray[np.int64]
    quality: npt.NDArray[np.uint8]

    def __post_init__(self) -> None:
        n = len(self.tag_ids)
        if not (len(self.values) == len(self.ts_ns) == len(self.quality) == n):
            raise ValueError(
                "SampleBatch arrays differ in length: "
                f"tag_ids={n} values={len(self.values)} "
                f"ts_ns={len(self.ts_ns)} quality={len(self.quality)}"
            )

    def __len__(self) -> int:
        return len(self.tag_ids)

    @classmethod
    def empty(cls) -> SampleBatch:
        return cls(
            np.empty(0, np.int32),
            np.empty(0, np.float64),
            np.empty(0, np.int64),
            np.empty(0, np.uint8),
        )

    @classmethod
    def of(
        cls,
        tag_ids: npt.ArrayLike,
        values: npt.ArrayLike,
        ts_ns: int | npt.ArrayLike,
        quality: Quality | npt.ArrayLike = Quality.GOOD,
    ) -> SampleBatch:
        """Build a batch, broadcasting a scalar timestamp or quality. Integers that float64
        cannot hold exactly are kept as Python ints (an object array)."""
        ids = np.asarray(tag_ids, dtype=np.int32)
        vals = np.asarray(values)
        if vals.dtype.kind in "iu" and vals.size and (
            int(vals.max()) > _FLOAT_EXACT or int(vals.min()) < -_FLOAT_EXACT
        ):
            vals = _int_objects(vals.tolist())
        elif vals.dtype.kind in "biuf":
            vals = vals.astype(np.float64, copy=False)
        n = len(ids)
        ts = np.broadcast_to(np.asarray(ts_ns, dtype=np.int64), (n,)).copy()
        q = np.broadcast_to(np.asarray(quality, dtype=np.uint8), (n,)).copy()
        return cls(ids, vals, ts, q)

    @classmethod
    def concat(cls, batches: list[SampleBatch]) -> SampleBatch:
        batches = [b for b in batches if len(b)]
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        kinds = {b.values.dtype.kind for b in batches}
        values = np.concatenate(
            [b.values.astype(object) for b in batches]
            if "O" in kinds
            else [b.values for b in batches]
        )
        return cls(
            np.concatenate([b.tag_ids for b in batches]),
            values,
            np.concatenate([b.ts_ns for b in batches]),
            np.concatenate([b.quality for b in batches]),
        )

    def select(self, rows: Rows) -> SampleBatch:
        """The samples at ``rows``: a mask, row numbers or a slice."""
        return SampleBatch(
            self.tag_ids[rows], self.values[rows], self.ts_ns[rows], self.quality[rows]
        )


def exact_integer(value: object) -> int | None:
    """``value`` as an exact int: ints as they are, whole floats converted exactly; None for
    anything else (missing, NaN, a fraction, text)."""
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return int(number) if math.isfinite(number) and number.is_integer() else None
    return None


def as_float(values: np.ndarray) -> np.ndarray:
    """Numbers as float64; anything that is no number (None for a bad sample, text) is NaN."""
    if values.dtype != object:
        return values.astype(np.float64, copy=False)
    return np.array(
        [float(v) if isinstance(v, int | float | np.number) else np.nan for v in values.tolist()],
        dtype=np.float64,
    )
