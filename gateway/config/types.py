"""Reusable field types for the configuration models: durations, secrets, names."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any) -> Any:
    """Accept seconds as a number or a string such as ``250ms``, ``5s``, ``2m``, ``1h``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '500ms', '5s', '2m'")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if not match:
            raise ValueError(
                f"invalid duration {value!r}: "
                "use a number of seconds or e.g. '500ms', '5s', '2m', '1h'"
            )
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return value


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$")
_UNIT_BYTES = {None: 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9,
               "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}  # fmt: skip


def parse_size(value: Any) -> Any:
    """Accept bytes as an integer or a string such as ``512MiB``, ``2GB``, ``64KiB``."""
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or a string like '256MiB', '1GB'")
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if not match:
            raise ValueError(
                f"invalid size {value!r}: use a number of bytes or e.g. '64KiB', '256MiB', '2GB'"
            )
        return int(float(match.group(1)) * _UNIT_BYTES[match.group(2)])
    return value


#: bytes, written in YAML as ``268435456``, ``"256MiB"`` or ``"1GB"``
ByteSize = Annotated[
    int,
    BeforeValidator(parse_size),
    Field(gt=0),
    WithJsonSchema({"anyOf": [
        {"type": "integer", "exclusiveMinimum": 0},
        {"type": "string", "pattern": _SIZE_RE.pattern},
    ]}),
]

#: seconds, written in YAML as ``5``, ``0.5``, ``"500ms"``, ``"2m"``
Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]

#: names used in topics and tag paths: no dots (the device/tag separator), no MQTT wildcards
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]*$", max_length=64)]
TagName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-/]*$", max_length=128)]


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, values are not coerced silently.

    Validators are built on first use (``defer_build``), not at import: the gateway imports
    every driver's config models, and validates a file with the drivers it names only
    (``gateway.config.loader``), so a Modbus gateway does not hold the others' (~5 MiB)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              defer_build=True)


class SecretRef(StrictModel):
    """Where a secret comes from: an environment variable or a file. Never inline."""

    env: str | None = Field(default=None, description="name of an environment variable")
    file: Path | None = Field(default=None, description="path of a file holding the secret")

    @model_validator(mode="before")
    @classmethod
    def _no_inline(cls, data: Any) -> Any:
        if isinstance(data, str | int | float):
            raise ValueError(
                "inline secrets are not allowed: write {env: VARIABLE} or {file: /path/to/secret}"
            )
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("a secret names exactly one of 'env' or 'file'")
        return self

    def describe(self) -> str:
        return f"env:{self.env}" if self.env else f"file:{self.file}"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
