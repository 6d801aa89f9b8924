"""Checks of one write against the tag's configuration, and engineering -> raw conversion.

A write is allowed only for a tag the config marks ``writable``; the value must have
the tag's type and lie inside its ``range`` (in engineering units, as the brain sees
it). The raw value for the driver is ``(value - offset) / scale``; integer tags need
an integral raw value inside the type's limits. Everything is checked on the value as
sent, in exact arithmetic (Python ints and fractions, never float64 for integers): a
value is never wrapped or rounded into range, and every reason quotes it as sent.
"""

from __future__ import annotations

import math
from fractions import Fraction

from gateway.commands.parse import CommandValue, NonFiniteNumber
from gateway.errors import WriteRefused
from gateway.tags import TagInfo
from gateway.types import INTEGER_RANGES, DataType

#: raw values closer than this (relative) to an integer are rounded to it (0.1 scaling)
_INTEGRAL_TOLERANCE = 1e-6

INTEGER_LIMITS = INTEGER_RANGES

RawValue = float | int | bool | str
#: longer integers are quoted shortened in reasons (a JSON int may have any length)
_QUOTE_DIGITS = 40


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
    if isinstance(value, NonFiniteNumber):
        raise WriteRefused(f"{path}: {value.text} is not a finite number")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WriteRefused(f"{path} is a numeric tag ({source.value}): the value must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise WriteRefused(f"{path}: {quote(value)} is not a finite number")
    if cfg.range is not None:
        low, high = cfg.range
        if not low <= value <= high:  # int and float compare exactly in Python
            raise WriteRefused(f"{path}: {quote(value)} is outside the range [{low}, {high}]")
    raw = (Fraction(value) - Fraction(cfg.offset)) / Fraction(cfg.scale)
    limits = INTEGER_LIMITS.get(source)
    if limits is not None:
        nearest = round(raw)
        if abs(raw - nearest) > _INTEGRAL_TOLERANCE * max(Fraction(1), abs(raw)):
            raise WriteRefused(
                f"{path} is an integer tag ({source.value}): {quote(value)} is not a multiple "
                f"of its scale {cfg.scale}"
            )
        if not limits[0] <= nearest <= limits[1]:
            scaled = "" if cfg.scale == 1 and cfg.offset == 0 else f" (raw {quote(nearest)})"
            raise WriteRefused(
                f"{path}: {quote(value)}{scaled} does not fit {source.value} "
                f"({limits[0]}..{limits[1]})"
            )
        return int(nearest)
    raw_float = float(raw)
    if source is DataType.FLOAT32 and abs(raw_float) > 3.4028234663852886e38:
        raise WriteRefused(f"{path}: {quote(value)} does not fit float32 (raw {raw_float})")
    return raw_float


def quote(value: object) -> str:
    """A value as sent, for a reason: numbers as written, a very long int shortened."""
    if isinstance(value, int) and not isinstance(value, bool):
        digits = str(value)
        if len(digits.lstrip("-")) > _QUOTE_DIGITS:
            return f"{digits[:16]}…{digits[-6:]} ({len(digits.lstrip('-'))} digits)"
        return digits
    return repr(value) if isinstance(value, float) else str(value)


def matches(tag: TagInfo, raw_written: RawValue, raw_read: object) -> bool:
    """True when a read-back raw value equals the written one: integers exactly, floats to
    float32 precision."""
    if isinstance(raw_written, str):
        return raw_read == raw_written
    if isinstance(raw_written, bool):
        return isinstance(raw_read, int | float) and bool(raw_read) == raw_written
    if not isinstance(raw_read, int | float) or isinstance(raw_read, bool):
        return False
    if isinstance(raw_written, int) and (isinstance(raw_read, int) or abs(raw_written) > 2**53):
        return raw_read == raw_written
    return abs(float(raw_read) - raw_written) <= 1e-6 * max(1.0, abs(raw_written))
