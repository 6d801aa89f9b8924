"""Outcomes of commands, as answered on ``cmd-result`` and written to the audit log."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.audit.values import json_safe

__all__ = ["CommandResult", "WriteOutcome", "json_safe"]

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
    #: what a management command adds to its answer (``config/apply``, ``model/deploy``:
    #: ``op``, the resulting ``version`` and the details): extra keys of the answer
    extra: dict[str, Any] = field(default_factory=dict)

    def answer_fields(self) -> dict[str, Any]:
        """The answer's keys, as both contracts publish them (the JSON ``cmd-result``
        without its header, Sparkplug's ``Node Control/Last Command Result``)."""
        body: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "reason": self.reason,
            "results": [o.as_dict() for o in self.results],
        }
        if self.duplicate:
            body["duplicate"] = True
        body.update(json_safe(self.extra))
        return body
