"""``chenxing-gateway spool stats|peek|purge``: look into and empty the disk spool.

``stats`` and ``peek`` only read (SQLite's WAL lets them read while a gateway
writes). ``purge`` takes the spool's lock file (``<spool>.lock``, an exclusive
``flock`` that a running gateway holds for its lifetime), so it refuses to run
while a gateway uses the spool; what it deletes is counted as dropped with the
reason ``purged`` and reported in the gateway's next birth and /metrics.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import click

from gateway import exit_codes
from gateway.cli.config_option import config_option
from gateway.config.loader import load_config
from gateway.errors import ConfigError, SpoolLocked
from gateway.northbound.payload_log import payload_dir
from gateway.northbound.spool import acquire_lock, add_drops, connect, lock_path, read_drops

_CONFIG_OPTION = config_option("gateway YAML file (the spool is northbound.spool.path)")


def _spool_path(config_path: str) -> Path:
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(exit_codes.CONFIG_INVALID)
    spool = config.northbound.spool
    if not spool.enabled:
        click.echo(f"{config_path}: northbound.spool.enabled is false (in-memory outbox)", err=True)
    return spool.resolved_path(config.gateway.state_dir)


def _open_for_reading(path: Path) -> sqlite3.Connection | None:
    if not path.exists():
        return None
    db = sqlite3.connect(path, timeout=5.0)
    db.execute("PRAGMA query_only = 1")
    return db


def _holder(path: Path) -> str | None:
    """``pid N`` of the gateway that last took the lock, if that process is alive."""
    try:
        text = lock_path(path).read_text(encoding="utf-8").strip()
        pid = int(text.split()[-1])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return text


def _segment_files(path: Path) -> list[Path]:
    """The spool's payload segment files (large payloads live outside SQLite)."""
    folder = payload_dir(path)
    return sorted(folder.glob("*.seg")) if folder.is_dir() else []


def _age(put_ns: int, now_ns: int) -> str:
    s = max(0.0, (now_ns - put_ns) / 1e9)
    if s < 120:
        return f"{s:.1f}s"
    if s < 7200:
        return f"{s / 60:.1f}m"
    return f"{s / 3600:.1f}h"


def spool_stats(path: Path) -> dict[str, Any]:
    """What the spool file at ``path`` holds (empty figures when there is no file)."""
    result: dict[str, Any] = {
        "path": str(path),
        "exists": path.exists(),
        "held_by": _holder(path),
        "messages": 0,
        "bytes": 0,
        "samples": 0,
        "oldest_age_s": 0.0,
        "seq_first": None,
        "seq_last": None,
        "file_bytes": 0,
        "dropped": {},
    }
    db = _open_for_reading(path)
    if db is None:
        return result
    with db:
        count, size, samples, oldest, first, last = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(samples), 0), MIN(put_ns),"
            " MIN(seq), MAX(seq) FROM message"
        ).fetchone()
        drops = read_drops(db)
    db.close()
    result.update(
        messages=count,
        bytes=size,
        samples=samples,
        oldest_age_s=0.0 if oldest is None else round((time.time_ns() - oldest) / 1e9, 3),
        seq_first=first,
        seq_last=last,
        file_bytes=sum(
            p.stat().st_size
            for p in (path, path.with_name(path.name + "-wal"), *_segment_files(path))
            if p.exists()
        ),
        dropped={r: {"messages": c.messages, "samples": c.samples} for r, c in drops.items()},
    )
    return result


@click.group("spool")
def spool_group() -> None:
    """Inspect or empty the disk spool (store-and-forward of outbound messages)."""


@spool_group.command("stats")
@_CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="print the figures as JSON")
def stats(config_path: str, as_json: bool) -> None:
    """Messages, bytes, age, sequence range and drops by reason."""
    figures = spool_stats(_spool_path(config_path))
    if as_json:
        click.echo(json.dumps(figures))
        return
    if not figures["exists"]:
        click.echo(f"spool {figures['path']}: no file yet (empty)")
        return
    held = figures["held_by"]
    click.echo(f"spool      {figures['path']} ({'in use by ' + held if held else 'not in use'})")
    click.echo(f"messages   {figures['messages']} ({figures['samples']} samples)")
    click.echo(f"bytes      {figures['bytes']} (file {figures['file_bytes']})")
    if figures["messages"]:
        click.echo(f"oldest     {figures['oldest_age_s']:.1f} s ago")
    else:
        click.echo("oldest     - (no message waits)")
    if figures["seq_first"] is not None:
        click.echo(f"seq        {figures['seq_first']} .. {figures['seq_last']}")
    for reason, count in figures["dropped"].items():
        click.echo(f"dropped    {reason}: {count['messages']} messages, "
                   f"{count['samples']} samples")  # fmt: skip


@spool_group.command("peek")
@_CONFIG_OPTION
@click.option("-n", "count", type=click.IntRange(min=1), default=10, show_default=True,
              help="how many of the oldest messages")  # fmt: skip
def peek(config_path: str, count: int) -> None:
    """The oldest messages: id, seq, topic, size, samples, age. Read only."""
    path = _spool_path(config_path)
    db = _open_for_reading(path)
    if db is None:
        click.echo(f"spool {path}: no file yet (empty)")
        return
    with db:
        rows = db.execute(
            "SELECT id, seq, topic, size, samples, put_ns FROM message ORDER BY id LIMIT ?",
            (count,),
        ).fetchall()
    db.close()
    if not rows:
        click.echo(f"spool {path}: empty")
        return
    now = time.time_ns()
    click.echo(f"{'id':>10} {'seq':>12} {'bytes':>8} {'samples':>7} {'age':>8}  topic")
    for msg_id, seq, topic, size, samples, put_ns in rows:
        seq_text = "-" if seq is None else str(seq)
        click.echo(f"{msg_id:>10} {seq_text:>12} {size:>8} {samples:>7} "
                   f"{_age(put_ns, now):>8}  {topic}")  # fmt: skip


@spool_group.command("purge")
@_CONFIG_OPTION
@click.option("--yes", is_flag=True, help="do not ask; required when stdin is not a terminal")
def purge(config_path: str, yes: bool) -> None:
    """Delete every message in the spool (counted as dropped: purged). Not while a gateway runs."""
    path = _spool_path(config_path)
    if not path.exists():
        click.echo(f"spool {path}: no file, nothing to purge")
        return
    if not yes:
        if not sys.stdin.isatty():
            click.echo("refusing to purge without --yes (stdin is not a terminal)", err=True)
            sys.exit(exit_codes.USAGE)
        figures = spool_stats(path)
        click.confirm(
            f"delete {figures['messages']} messages ({figures['samples']} samples) "
            f"from {path}?",
            abort=True,
        )
    try:
        lock = acquire_lock(path)
    except SpoolLocked as exc:
        click.echo(f"refusing to purge: {exc} (stop the gateway first)", err=True)
        sys.exit(exit_codes.RUNTIME_FAILURE)
    try:
        db = connect(path)
        db.execute("BEGIN IMMEDIATE")
        count, samples = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(samples), 0) FROM message"
        ).fetchone()
        db.execute("DELETE FROM message")
        if count:
            add_drops(db, "purged", count, samples)
        db.execute("COMMIT")
        db.execute("VACUUM")  # give the disk space back
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        for segment in _segment_files(path):  # no row points to them any more
            segment.unlink()
    finally:
        lock.close()
    click.echo(f"purged {count} messages ({samples} samples) from {path}")
