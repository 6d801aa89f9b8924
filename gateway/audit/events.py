"""Audit lines that other parts of the gateway write through one function each, so that
every writer of a kind of event writes the same fields.

Config changes (the live config work calls these): :func:`record_config_change` with the
old and new YAML text (the line carries a unified diff), :func:`record_rollback`,
:func:`record_deployment` for models and bundles from the brain.
"""

from __future__ import annotations

import difflib
from typing import Any, Protocol

#: a diff longer than this is cut (the line says so): the audit log stays readable
MAX_DIFF_CHARS = 64 * 1024


class AuditWriter(Protocol):
    def record(self, event: str, **fields: Any) -> int | None: ...


def config_diff(old_text: str, new_text: str, old_name: str = "before",
                new_name: str = "after") -> tuple[str, bool]:
    """A unified diff of two config texts, and whether it was cut at :data:`MAX_DIFF_CHARS`."""
    lines = difflib.unified_diff(old_text.splitlines(keepends=True),
                                 new_text.splitlines(keepends=True), old_name, new_name, n=2)
    diff = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    if len(diff) <= MAX_DIFF_CHARS:
        return diff, False
    return diff[:MAX_DIFF_CHARS], True


def record_config_change(audit: AuditWriter, *, author: str, via: str, outcome: str,
                         old_text: str, new_text: str, version: int | None = None,
                         parent: int | None = None, reason: str | None = None,
                         **extra: Any) -> int | None:
    """A config change: ``author`` (a user, ``brain`` or ``file``), ``via`` (``api``,
    ``mqtt``, ``sighup``, ``cli``), ``outcome`` (``applied``, ``refused``,
    ``rolled_back``...), the new ``version`` and its ``parent``, and the diff."""
    diff, cut = config_diff(old_text, new_text,
                            f"v{parent}" if parent is not None else "before",
                            f"v{version}" if version is not None else "after")
    return audit.record("config", user=author, via=via, outcome=outcome, version=version,
                        parent=parent, reason=reason, diff=diff, diff_cut=cut or None, **extra)


def record_rollback(audit: AuditWriter, *, author: str, from_version: int, to_version: int,
                    reason: str, automatic: bool, **extra: Any) -> int | None:
    """A return to an earlier config: by itself (``automatic``: devices did not come up,
    the broker session was lost) or asked for (``config rollback``)."""
    return audit.record("rollback", user=author, from_version=from_version,
                        to_version=to_version, reason=reason, automatic=automatic, **extra)


def record_deployment(audit: AuditWriter, *, author: str, via: str, kind: str, name: str,
                      version: str | None, outcome: str, reason: str | None = None,
                      sha256: str | None = None, **extra: Any) -> int | None:
    """A model package, config bundle or firmware image deployed (or refused): ``kind``
    ``model``/``bundle``; ``outcome`` ``deployed``, ``shadow``, ``refused``,
    ``rolled_back``; ``reason`` says why (a bad signature, a replayed version...)."""
    return audit.record("deploy", user=author, via=via, kind=kind, name=name, version=version,
                        outcome=outcome, reason=reason, sha256=sha256, **extra)
