"""``chenxing-gateway audit show``: the audit trail, newest first, filtered.

Reads the audit log and its rotated files (``audit.path``) directly, so it works with the
gateway stopped; reading needs the gateway's account (the files are 0600).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click

from gateway import exit_codes
from gateway.audit import AuditQuery, read_audit
from gateway.audit.reader import MAX_PAGE, parse_when
from gateway.cli.users_cmd import config_or_exit
from gateway.types import now_ns

#: shown first in a line's summary, in this order; the rest follow by name
_FIRST = ("outcome", "via", "addr", "id", "device", "tag", "value", "target", "action",
          "role", "version", "reason")


@click.group("audit")
def audit() -> None:
    """The audit trail: logins, writes, firmware, users, config changes (docs/security.md)."""


@audit.command("show")
@click.option("-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="gateway YAML file (the log is audit.path)")
@click.option("--since", help="from this time: ms since the epoch, ISO 8601 "
              "(2025-06-10T08:00Z) or an age (15m, 2h, 7d)")
@click.option("--until", help="before this time (same forms)")
@click.option("--kind", "kinds", multiple=True,
              help="only these events (repeat, or commas): login, logout, denied, user, cmd, "
                   "write, firmware, config, rollback, deploy, rebirth")
@click.option("--user", help="only lines of this user")
@click.option("-n", "--limit", type=click.IntRange(1, None), default=50, show_default=True,
              help="at most this many lines")
@click.option("--json", "as_json", is_flag=True, help="the lines as JSON, one per line")
def audit_show(config_path: str, since: str | None, until: str | None, kinds: tuple[str, ...],
               user: str | None, limit: int, as_json: bool) -> None:
    """Show the newest audit lines that match, newest first."""
    config = config_or_exit(config_path)
    now_ms = now_ns() // 1_000_000
    try:
        since_ms = None if since is None else parse_when(since, now_ms)
        until_ms = None if until is None else parse_when(until, now_ms)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    path = config.audit_path()
    wanted = frozenset(k.strip() for kind in kinds for k in kind.split(",") if k.strip())
    entries: list[dict[str, Any]] = []
    damaged = 0
    before = None
    try:
        while len(entries) < limit:
            page = read_audit(path, AuditQuery(since_ms, until_ms, wanted, user, before,
                                               min(MAX_PAGE, limit - len(entries))),
                              config.audit.files)
            entries += page.entries
            damaged += page.damaged
            if page.cursor is None:
                break
            before = page.cursor
    except OSError as exc:
        click.echo(f"cannot read the audit log {path}: {exc.strerror}", err=True)
        sys.exit(exit_codes.REFUSED)
    for entry in entries:
        click.echo(json.dumps(entry) if as_json else summary(entry))
    if not entries and not as_json:
        click.echo(f"no matching lines in {path}", err=True)
    if damaged:
        click.echo(f"{damaged} damaged line(s) skipped (cut by a kill)", err=True)


def summary(entry: dict[str, Any]) -> str:
    """One audit line for people: time (UTC), seq, event, user, then the fields."""
    ts = entry.get("ts")
    when = datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S") \
        if isinstance(ts, int) else "?"
    rest = {k: v for k, v in entry.items() if k not in ("ts", "seq", "event", "user")
            and v is not None}
    keys = [k for k in _FIRST if k in rest] + sorted(k for k in rest if k not in _FIRST)
    fields = " ".join(f"{k}={_short(rest[k])}" for k in keys)
    who = entry.get("user") or "-"
    return f"{when}  #{entry.get('seq')}  {entry.get('event'):<8} {who:<16} {fields}"


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    if "\n" in text:  # a config diff: its size, not its lines (see --json)
        return f"<{text.count(chr(10))} lines>"
    return text if len(text) <= 80 else text[:77] + "..."
