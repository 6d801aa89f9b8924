"""``chenxing-gateway tail``: live tag values from a running gateway's local API."""

from __future__ import annotations

import fnmatch
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click
from rich.console import Console, JustifyMethod
from rich.live import Live
from rich.table import Table

from gateway import exit_codes
from gateway.cli.config_option import config_option
from gateway.config.loader import load_config
from gateway.config.models import GatewayConfig
from gateway.config.secrets import resolve_secret
from gateway.errors import ConfigError

_WILDCARD_BINDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def api_url(config: GatewayConfig) -> str:
    """Base URL of the gateway's local API from ``http.bind`` and ``http.port``."""
    host = _WILDCARD_BINDS.get(config.http.bind, config.http.bind)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.http.port}"


def fetch_tags(base_url: str, token: str | None, timeout: float = 5.0) -> list[dict[str, Any]]:
    """GET ``/api/tags``; raises :class:`OSError` with a readable reason."""
    request = urllib.request.Request(base_url.rstrip("/") + "/api/tags")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise OSError(f"{base_url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise OSError(f"{base_url}: {exc.reason} (is the gateway running?)") from None
    except ValueError as exc:  # not JSON: some other server on that port
        raise OSError(f"{base_url}: the answer is not JSON ({exc})") from None
    tags = body.get("tags") if isinstance(body, dict) else None
    if not isinstance(tags, list):
        raise OSError(f"{base_url}: the answer has no tag list (is it a chenxing gateway?)")
    return tags


def select(tags: list[dict[str, Any]], patterns: tuple[str, ...]) -> list[dict[str, Any]]:
    """Tags whose path matches any glob pattern (all when there are none)."""
    if not patterns:
        return tags
    return [t for t in tags if any(fnmatch.fnmatchcase(t["tag"], p) for p in patterns)]


def _value_text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _age_text(ts_ns: int, now_ns: int) -> str:
    if ts_ns <= 0:
        return "-"
    age = max(0.0, (now_ns - ts_ns) / 1e9)
    return f"{age:.1f}s" if age < 120 else f"{age / 60:.0f}m"


_QUALITY_STYLE = {"good": "green", "bad": "red", "uncertain": "yellow", "stale": "yellow"}


def render_table(tags: list[dict[str, Any]], now_ns: int | None = None) -> Table:
    """One rich table: tag, value, unit, quality, age."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    table = Table(title=f"{len(tags)} tags", expand=False)
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("tag", "left"), ("value", "right"), ("unit", "left"), ("quality", "left"),
        ("age", "right"))  # fmt: skip
    for column, justify in columns:
        table.add_column(column, justify=justify)
    for t in tags:
        quality = str(t.get("quality", ""))
        table.add_row(
            str(t["tag"]), _value_text(t.get("value")), str(t.get("unit") or ""),
            f"[{_QUALITY_STYLE.get(quality, 'white')}]{quality}[/]",
            _age_text(int(t.get("ts_ns") or 0), now_ns),
        )
    return table


@click.command()
@config_option("the running gateway's YAML file (http.bind, http.port, http.token)")
@click.option("--tag", "patterns", multiple=True, metavar="PATTERN",
              help="glob on tag paths, e.g. 'meter-1.*' (repeatable)")
@click.option("--once", is_flag=True, help="print one table and exit")
@click.option("--interval", type=float, default=1.0, show_default=True,
              help="seconds between refreshes")
@click.option("--url", default=None, help="the local API's base URL (default: from the config)")
def tail(config_path: str, patterns: tuple[str, ...], once: bool, interval: float,
         url: str | None) -> None:
    """Live tag values with quality and age from a running gateway."""
    try:
        config = load_config(config_path)
        token = (resolve_secret(config.http.token, Path(config_path).resolve().parent)
                 if config.http.token is not None else None)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(exit_codes.CONFIG_INVALID) from None
    base = url or api_url(config)
    console = Console()
    try:
        if once:
            console.print(render_table(select(fetch_tags(base, token), patterns)))
            return
        with Live(console=console, auto_refresh=False) as live:
            while True:
                live.update(render_table(select(fetch_tags(base, token), patterns)),
                            refresh=True)
                time.sleep(interval)
    except OSError as exc:
        click.echo(f"cannot read tags: {exc}", err=True)
        raise SystemExit(exit_codes.RUNTIME_FAILURE) from None
    except KeyboardInterrupt:
        return
