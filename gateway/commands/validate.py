"""Checks of one write against the tag's configuration, and engineering -> raw conversion.

A write is allowed only for a tag the config marks ``writable``; the value must have
the tag's type and lie inside its ``range`` (in engineering units, as the brain sees
it). The raw value for the driver is ``(value - offset) / scale``; integer tags need
an integral raw value inside the type's limits.
"""

from __future__ import annotations

import math

from gateway.commands.parse import CommandValue
from gateway.tags import TagInfo
from gateway.types import INTEGER_RANGES, DataType

#: raw values closer than this (relative) to an integer are rounded to it (0.1 scaling)
_INTEGRAL_TOLERANCE = 1e-6

INTEGER_LIMITS = INTEGER_RANGES

RawValue = float | bool | str


class WriteRefused(Exception):
    """A write fails a check; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def to_raw(tag: TagInfo | None, path: str, value: CommandValue) -> RawValue:
    """The raw value to hand the driver, or :class:`WriteRefused` with the reason."""
    if tag is None:
        raise WriteRefused(f"unknown tag {path!r}")
    cfg = tag.config
    if not cfg.writable:
        raise WriteRefused(f"{path} is not writable")
    source = cfg.type
    if source is DataType.BOOL:
        if not isinstance(value, bool):
            raise WriteRefused(f"{path} is a bool tag: the value must be true or false")
        return value
    if source is DataType.STRING:
        if not isinstance(value, str):
            raise WriteRefused(f"{path} is a string tag: the value must be a string")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WriteRefused(f"{path} is a numeric tag ({source.value}): the value must be a number")
    if not math.isfinite(value):
        raise WriteRefused(f"{path}: the value must be finite")
    if cfg.range is not None:
        low, high = cfg.range
        if not low <= value <= high:
            raise WriteRefused(f"{path}: {value} is outside the range [{low}, {high}]")
    raw = (float(value) - cfg.offset) / cfg.scale
    limits = INTEGER_LIMITS.get(source)
    if limits is not None:
        nearest = round(raw)
        if abs(raw - nearest) > _INTEGRAL_TOLERANCE * max(1.0, abs(raw)):
            raise WriteRefused(
                f"{path} is an integer tag ({source.value}): {value} is not a multiple of "
                f"its scale {cfg.scale}"
            )
        if not limits[0] <= nearest <= limits[1]:
            raise WriteRefused(f"{path}: raw value {nearest} does not fit {source.value}")
        return float(nearest)
    if source is DataType.FLOAT32 and abs(raw) > 3.4028234663852886e38:
        raise WriteRefused(f"{path}: raw value {raw} does not fit float32")
    return raw


def matches(tag: TagInfo, raw_written: RawValue, raw_read: object) -> bool:
    """True when a read-back raw value equals the written one (float32 precision)."""
    if isinstance(raw_written, str):
        return raw_read == raw_written
    if isinstance(raw_written, bool):
        return isinstance(raw_read, int | float) and bool(raw_read) == raw_written
    if not isinstance(raw_read, int | float) or isinstance(raw_read, bool):
        return False
    return abs(float(raw_read) - raw_written) <= 1e-6 * max(1.0, abs(raw_written))
