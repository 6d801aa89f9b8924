"""The ``-c/--config`` option of the commands that read the gateway's config file.

Without ``-c`` the file is ``$CHENXING_CONFIG`` or, when that is unset, the installed
gateway's ``/etc/chenxing/gateway.yaml`` (where the Debian package and docs/install.md
put it), so on an edge box ``chenxing-gateway check`` needs no arguments.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

DEFAULT_CONFIG = Path("/etc/chenxing/gateway.yaml")
CONFIG_ENV = "CHENXING_CONFIG"

F = TypeVar("F", bound=Callable[..., Any])


def default_config_path() -> Path:
    """``$CHENXING_CONFIG`` when set (and not empty), else ``/etc/chenxing/gateway.yaml``."""
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def _resolve(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    if value is not None:
        return value
    path = default_config_path()
    if not path.exists():
        source = f"${CONFIG_ENV}" if os.environ.get(CONFIG_ENV) else "the default"
        raise click.UsageError(
            f"no config file: {path} ({source} without -c) does not exist; give one with "
            f"-c FILE, or write a starter with: chenxing-gateway config init -o {path}", ctx)
    return str(path)


def config_option(help: str = "gateway YAML file") -> Callable[[F], F]:
    """``-c/--config FILE``, defaulting to ``$CHENXING_CONFIG`` or /etc/chenxing/gateway.yaml."""
    return click.option(
        "-c", "--config", "config_path", type=click.Path(dir_okay=False), default=None,
        callback=_resolve,
        help=f"{help} [default: ${CONFIG_ENV}, else {DEFAULT_CONFIG}]")
