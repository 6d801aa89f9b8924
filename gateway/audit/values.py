"""Values as JSON can carry them, for audit lines and command answers."""

from __future__ import annotations

import math
from typing import Any


def json_safe(value: Any) -> Any:
    """A value as sent, as JSON can carry it: a number JSON cannot hold (infinity, NaN, or
    a JSON number beyond float64 kept as its text) becomes its text, inside lists and dicts
    too; any other object its ``str``."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return str(value)
