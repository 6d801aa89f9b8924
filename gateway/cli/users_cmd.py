"""``chenxing-gateway users add|list|remove|passwd|role``: the local API's users.

They live in the user store (``http.auth.users_file``, default ``{state_dir}/users.json``,
0600) that a running gateway re-reads when it changes: a user added here can log in at
once, and one removed or given a new password or role loses every session at once.
Passwords are typed twice without echo, or read from standard input with
``--password-stdin`` (one line, for scripts). Every change is audited (``user`` lines,
``via: cli``, ``user``: the operating-system account that ran it).
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

import click

from gateway import exit_codes
from gateway.access import PasswordPolicy, Role, UserStore, hash_password
from gateway.access.roles import ROLE_NAMES
from gateway.access.users import User
from gateway.audit import AuditLog
from gateway.config.loader import load_config
from gateway.config.models import GatewayConfig
from gateway.errors import ConfigError, PasswordRejected, UserRefused, UserStoreError

_CONFIG_OPTION = click.option(
    "-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False),
    help="gateway YAML file (the store is http.auth.users_file)",
)  # fmt: skip
_STDIN_OPTION = click.option(
    "--password-stdin", is_flag=True,
    help="read the password from standard input (one line) instead of asking twice")


@dataclass(frozen=True, slots=True)
class _Context:
    store: UserStore
    audit: AuditLog
    policy: PasswordPolicy


def config_or_exit(config_path: str) -> GatewayConfig:
    """The config, or its errors printed and exit code 1."""
    try:
        return load_config(config_path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(exit_codes.CONFIG_INVALID)


def _context(config_path: str) -> _Context:
    config = config_or_exit(config_path)
    store = UserStore(config.http.resolved_users_file(config.gateway.state_dir))
    audit = AuditLog(config.audit_path(), config.audit.max_bytes, config.audit.files)
    return _Context(store, audit, PasswordPolicy(config.http.auth.min_password_length))


def _refused(message: str) -> NoReturn:
    click.echo(f"refused: {message}", err=True)
    sys.exit(exit_codes.REFUSED)


def _os_user() -> str:
    try:
        return f"os:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry for the uid (a container)
        return "os:?"


def _new_password(name: str, policy: PasswordPolicy, from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt(f"new password for {name}", hide_input=True,
                                confirmation_prompt=True)
    try:
        policy.check(name, password)
    except PasswordRejected as exc:
        _refused(str(exc))
    return password


@click.group("users")
def users() -> None:
    """The local API's users: viewer, operator, admin (docs/security.md)."""


@users.command("add")
@_CONFIG_OPTION
@click.argument("name")
@click.option("--role", type=click.Choice(ROLE_NAMES), required=True,
              help="viewer: read; operator: also writes and firmware; admin: also config, "
                   "users and the audit trail")
@_STDIN_OPTION
def users_add(config_path: str, name: str, role: str, password_stdin: bool) -> None:
    """Add a user with a role and a password."""
    ctx = _context(config_path)
    _change(ctx, "add", name, lambda: ctx.store.add(
        name, Role.named(role), hash_password(_new_password(name, ctx.policy, password_stdin))))


@users.command("list")
@_CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="one JSON object per user")
def users_list(config_path: str, as_json: bool) -> None:
    """List the users and their roles (never a password or its hash)."""
    ctx = _context(config_path)
    try:
        found = ctx.store.users()
    except UserStoreError as exc:
        _refused(str(exc))
    if as_json:
        for user in sorted(found.values(), key=lambda u: u.name):
            click.echo(json.dumps(user.public()))
        return
    if not found:
        click.echo(f"no users in {ctx.store.path} (add one: users add NAME --role admin)")
        return
    from datetime import UTC, datetime

    click.echo(f"{'user':<32} {'role':<9} password or role changed (UTC)")
    for user in sorted(found.values(), key=lambda u: u.name):
        changed = datetime.fromtimestamp(user.changed_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")
        click.echo(f"{user.name:<32} {user.role.label:<9} {changed}")


@users.command("remove")
@_CONFIG_OPTION
@click.argument("name")
def users_remove(config_path: str, name: str) -> None:
    """Remove a user (their sessions end at once)."""
    ctx = _context(config_path)
    _change(ctx, "remove", name, lambda: ctx.store.remove(name))


@users.command("passwd")
@_CONFIG_OPTION
@click.argument("name")
@_STDIN_OPTION
def users_passwd(config_path: str, name: str, password_stdin: bool) -> None:
    """Set a user's password (their sessions end at once)."""
    ctx = _context(config_path)
    try:
        if ctx.store.get(name) is None:
            _refused(f"no user {name[:40]!r}")
    except UserStoreError as exc:
        _refused(str(exc))
    _change(ctx, "passwd", name, lambda: ctx.store.set_password(
        name, hash_password(_new_password(name, ctx.policy, password_stdin))))


@users.command("role")
@_CONFIG_OPTION
@click.argument("name")
@click.argument("role", type=click.Choice(ROLE_NAMES))
def users_role(config_path: str, name: str, role: str) -> None:
    """Give a user another role (their sessions end at once)."""
    ctx = _context(config_path)
    _change(ctx, "role", name, lambda: ctx.store.set_role(name, Role.named(role)))


def _change(ctx: _Context, action: str, name: str, change: Callable[[], User]) -> None:
    actor = _os_user()
    try:
        user = change()
    except (UserRefused, UserStoreError) as exc:
        ctx.audit.record("user", user=actor, via="cli", action=action, target=name[:64],
                         outcome="refused", reason=str(exc))
        ctx.audit.close()
        _refused(str(exc))
    ctx.audit.record("user", user=actor, via="cli", action=action, target=user.name,
                     outcome="ok", role=user.role.label)
    ctx.audit.close()
    done = {"add": "added", "remove": "removed", "passwd": "password set for",
            "role": "role set for"}[action]
    click.echo(f"{done} {user.name} ({user.role.label}) in {ctx.store.path}")
