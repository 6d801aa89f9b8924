"""Reading the audit trail: newest first, filtered by time, kind and user, in pages.

Lines are read from ``audit.log`` and its rotated files (``.1``, ``.2`` ...), newest
first. Each line's ``seq`` orders them; a page ends with a ``cursor`` (the last ``seq``
returned) and the next page is everything older. Lines written before seq numbers
existed get negative ones, counted from the newest such line, so they page the same
way. A line that is not JSON (cut by a kill) is skipped and counted as ``damaged``.
"""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.audit.log import DEFAULT_FILES, rotated_paths

#: the largest page the API and the CLI hand out at once
MAX_PAGE = 1000
_AGO = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(s|m|h|d)")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_when(text: str, now_ms: int) -> int:
    """A time as ms since the epoch, from ms since the epoch (``1718000000000``), ISO 8601
    (``2025-06-10T08:00``, UTC unless it says otherwise) or an age (``90s``, ``15m``,
    ``2h``, ``7d``: that long before ``now_ms``). ValueError otherwise."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    ago = _AGO.fullmatch(text)
    if ago:
        return now_ms - int(float(ago.group(1)) * _UNIT_MS[ago.group(2)])
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a time: {text[:40]!r} (ms since the epoch, ISO 8601 like "
                         "2025-06-10T08:00Z, or an age like 15m, 2h, 7d)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """What to read. Times are ms since the epoch, ``since`` inclusive, ``until``
    exclusive; ``kinds`` are ``event`` values; ``before``: a page's cursor."""

    since_ms: int | None = None
    until_ms: int | None = None
    kinds: frozenset[str] = frozenset()
    user: str | None = None
    before: int | None = None
    limit: int = 100

    def matches(self, entry: dict[str, Any]) -> bool:
        ts = entry.get("ts")
        if self.since_ms is not None and not (isinstance(ts, int) and ts >= self.since_ms):
            return False
        if self.until_ms is not None and not (isinstance(ts, int) and ts < self.until_ms):
            return False
        if self.kinds and entry.get("event") not in self.kinds:
            return False
        return self.user is None or entry.get("user") == self.user


@dataclass(slots=True)
class AuditPage:
    """Matching lines newest first; ``cursor``: pass it as ``before`` for the next page
    (None: there is none)."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    cursor: int | None = None
    damaged: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"entries": self.entries, "cursor": self.cursor, "damaged": self.damaged}


def read_audit(path: Path, query: AuditQuery, files: int = DEFAULT_FILES) -> AuditPage:
    """One page of the audit trail at ``path`` (blocking file reads: call it in a thread)."""
    limit = max(1, min(query.limit, MAX_PAGE))
    page = AuditPage()
    for entry in _newest_first(path, files, page):
        seq = entry["seq"]
        if query.before is not None and seq >= query.before:
            continue
        # older lines follow; a clock stepped back can leave a few out of order, so the
        # scan ends only on a line that is an hour older than asked
        if query.since_ms is not None and seq > 0 and isinstance(entry.get("ts"), int) \
                and entry["ts"] < query.since_ms - 3_600_000:
            break
        if not query.matches(entry):
            continue
        if len(page.entries) == limit:
            page.cursor = page.entries[-1]["seq"]
            break
        page.entries.append(entry)
    return page


def _newest_first(path: Path, files: int, page: AuditPage) -> Iterator[dict[str, Any]]:
    legacy = 0
    for file in rotated_paths(path, files):
        try:
            if not stat.S_ISREG(file.stat().st_mode):
                continue  # a device or a pipe (/dev/full in a test): nothing to read back
            data = file.read_bytes()
        except FileNotFoundError:
            continue
        for line in reversed(data.split(b"\n")):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                page.damaged += 1
                continue
            if not isinstance(entry, dict):
                page.damaged += 1
                continue
            if not isinstance(entry.get("seq"), int) or isinstance(entry.get("seq"), bool):
                legacy += 1
                entry["seq"] = -legacy
            yield entry
