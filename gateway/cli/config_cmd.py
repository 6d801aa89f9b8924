"""``chenxing-gateway config history|show|diff|rollback``: the versioned config store.

The store is ``{state_dir}/config`` of the config file given with ``-c`` (only
``gateway.state_dir`` is read from it, so a file with errors elsewhere still finds its
store). Reading needs no running gateway. ``rollback`` writes the chosen version's text to
the config file and, when a gateway runs with that store, asks it to apply the file
(SIGHUP) and waits for the outcome: the change goes through the same stages as any other
(validate, connect test, apply, watch, automatic rollback).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from gateway import exit_codes
from gateway.config.store import ConfigStore, ConfigVersion, write_config_file
from gateway.errors import ConfigStoreError, ConfigVersionUnknown

_CONFIG = click.option("-c", "--config", "config_path", required=True,
                       type=click.Path(dir_okay=False, exists=True),
                       help="the gateway's YAML file")
_STATE_DIR = click.option("--state-dir", type=click.Path(file_okay=False), default=None,
                          help="the gateway's state folder (default: gateway.state_dir of "
                               "the config file)")


def state_dir_of(config_path: Path) -> Path:
    """``gateway.state_dir`` of a config file, relative to its folder (default ``var``),
    read without validating the rest of the file."""
    from gateway.config.yaml_model import parse_yaml

    folder = config_path.resolve().parent
    data: Any = None
    with contextlib.suppress(OSError, UnicodeDecodeError):
        data = parse_yaml(config_path.read_text(encoding="utf-8"), str(config_path)).data
    gateway = data.get("gateway") if isinstance(data, dict) else None
    raw = gateway.get("state_dir") if isinstance(gateway, dict) else None
    state = Path(raw) if isinstance(raw, str) and raw else Path("var")
    return state if state.is_absolute() else folder / state


def _store(config_path: str, state_dir: str | None) -> ConfigStore:
    state = Path(state_dir) if state_dir else state_dir_of(Path(config_path))
    return ConfigStore(state / "config")


def _fail(exc: ConfigStoreError) -> NoReturn:
    click.echo(f"error: {exc}", err=True)
    code = exit_codes.USAGE if isinstance(exc, ConfigVersionUnknown) else \
        exit_codes.RUNTIME_FAILURE
    sys.exit(code)


def _line(record: ConfigVersion) -> str:
    extra = ""
    if record.restores is not None:
        extra += f" (restores v{record.restores})"
    if record.reason:
        extra += f" ({record.reason})"
    return (f"v{record.version:<5} {record.time}  {record.status:<11} {record.author} "
            f"[{record.source}]  {record.summary}{extra}")


@click.command("history")
@_CONFIG
@_STATE_DIR
@click.option("-n", "--last", type=int, default=None, help="only the last N versions")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per version")
def history(config_path: str, state_dir: str | None, last: int | None, as_json: bool) -> None:
    """List the config versions kept, oldest first; the last one runs."""
    store = _store(config_path, state_dir)
    try:
        records = store.history(last)
    except ConfigStoreError as exc:
        _fail(exc)
    if not records:
        click.echo(f"no config versions in {store.folder} (the gateway records one when it "
                   "starts)", err=True)
    for record in records:
        click.echo(json.dumps(record.as_dict()) if as_json else _line(record))


@click.command("show")
@_CONFIG
@_STATE_DIR
@click.argument("version", type=int, required=False)
@click.option("--record", is_flag=True, help="the version's record (JSON) instead of its text")
def show(config_path: str, state_dir: str | None, version: int | None, record: bool) -> None:
    """Print the text of a config version (default: the one running)."""
    store = _store(config_path, state_dir)
    try:
        number = version if version is not None else _current(store).version
        if record:
            click.echo(json.dumps(store.get(number).as_dict(), indent=1))
        else:
            click.echo(store.text(number), nl=False)
    except ConfigStoreError as exc:
        _fail(exc)


@click.command("diff")
@_CONFIG
@_STATE_DIR
@click.argument("version", type=int, required=False)
@click.argument("other", type=int, required=False)
def diff(config_path: str, state_dir: str | None, version: int | None,
         other: int | None) -> None:
    """The diff of VERSION to its parent (default: the version running); with OTHER, from
    VERSION to OTHER."""
    store = _store(config_path, state_dir)
    try:
        number = version if version is not None else _current(store).version
        text = store.diff(number) if other is None else store.diff_between(number, other)
    except ConfigStoreError as exc:
        _fail(exc)
    click.echo(text, nl=False)


@click.command("rollback")
@_CONFIG
@_STATE_DIR
@click.argument("version", type=int, required=False)
@click.option("--author", default=None, help="who asks (default: the user name)")
@click.option("--wait", "wait_s", type=float, default=60.0, show_default=True,
              help="seconds to wait for the running gateway's outcome")
def rollback(config_path: str, state_dir: str | None, version: int | None,
             author: str | None, wait_s: float) -> None:
    """Bring back the text of VERSION (default: the parent of the version running).

    The config file gets that text; a running gateway applies it as a new version (and
    rolls it back by itself if its devices do not come up), one that is stopped records it
    when it starts.
    """
    store = _store(config_path, state_dir)
    path = Path(config_path)
    try:
        current = _current(store)
        target = version if version is not None else current.parent
        if target is None:
            raise ConfigStoreError(f"version {current.version} has no parent to go back to")
        text = store.text(target)
    except ConfigStoreError as exc:
        _fail(exc)
    who = author or _user()
    pid = store.holder()
    store.leave_author(who, "cli", text)
    before = store.last_result()
    write_config_file(path, text)
    if pid is None:
        click.echo(f"{path} now holds the text of version {target}; no gateway runs with "
                   f"{store.folder}: it is recorded when the gateway starts")
        return
    os.kill(pid, signal.SIGHUP)
    click.echo(f"{path} now holds the text of version {target}; gateway pid {pid} asked to "
               "apply it", err=True)
    outcome = _wait_outcome(store, before[0] if before else None, wait_s)
    if outcome is None:
        click.echo(f"no outcome within {wait_s:g}s: see the gateway's log and "
                   f"'chenxing-gateway config history -c {config_path}'", err=True)
        sys.exit(exit_codes.CHANGE_REFUSED)
    click.echo(json.dumps(outcome, indent=1))
    if outcome.get("outcome") not in ("applied", "unchanged"):
        sys.exit(exit_codes.CHANGE_REFUSED)


def _current(store: ConfigStore) -> ConfigVersion:
    current = store.current()
    if current is None:
        raise ConfigVersionUnknown(f"no config versions in {store.folder} (the gateway "
                                   "records one when it starts)")
    return current


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "cli"


def _wait_outcome(store: ConfigStore, before: int | None, wait_s: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        last = store.last_result()
        if last is not None and last[0] != before:
            return last[1]
        time.sleep(0.1)
    return None


def register(group: click.Group) -> None:
    """Add the commands to ``chenxing-gateway config``."""
    for command in (history, show, diff, rollback):
        group.add_command(command)
