"""Outcomes of commands, as answered on ``cmd-result`` and written to the audit log."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

WriteStatus = Literal["accepted", "rejected", "failed"]
CommandStatus = Literal["accepted", "rejected", "failed"]


@dataclass(slots=True)
class WriteOutcome:
    """One write: ``accepted`` (written, and verified when asked), ``rejected`` (not
    executed: a check failed) or ``failed`` (the device refused or did not confirm)."""

    tag: str
    value: Any
    status: WriteStatus = "rejected"
    reason: str | None = None
    verified: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "value": json_safe(self.value),
            "status": self.status,
            "reason": self.reason,
            "verified": self.verified,
        }


@dataclass(slots=True)
class CommandResult:
    """The answer to one command. ``status`` is ``accepted`` when every write was,
    ``rejected`` when nothing was executed, ``failed`` when some write failed."""

    id: str | None
    status: CommandStatus
    reason: str | None = None
    results: list[WriteOutcome] = field(default_factory=list)
    duplicate: bool = False


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
