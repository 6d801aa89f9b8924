"""``chenxing-ingest``: the brain-side reference reader (brain_reader/README.md).

A separate deployable: the edge gateway's command (``chenxing-gateway``) does not include
it, and nothing in the gateway imports this package.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import click

from gateway import exit_codes
from gateway.errors import ConfigError
from gateway.logsetup import setup_logging

log = logging.getLogger(__name__)


def _secret(env: str | None, file: str | None, option: str) -> dict[str, str] | None:
    if env and file:
        raise click.UsageError(f"give --{option}-env or --{option}-file, not both")
    if env:
        return {"env": env}
    return {"file": file} if file else None


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
              help="YAML file with the options below (command-line options win)")
@click.option("--broker", "brokers", multiple=True, metavar="URL",
              help="mqtt://host:1883 or mqtts://host:8883; repeat for failover")
@click.option("--group", help="shared-subscription group (readers in one group split the data)")
@click.option("--client-id", help="MQTT client id (default: chenxing-ingest-<random>)")
@click.option("--username")
@click.option("--password-env", metavar="VAR")
@click.option("--password-file", type=click.Path(dir_okay=False))
@click.option("--format", "formats", multiple=True, type=click.Choice(["json", "sparkplug"]),
              help="contracts to read (default both)")
@click.option("--topic-root", help="JSON contract topic root (default chenxing/v1)")
@click.option("--sparkplug-group", help="Sparkplug group id (default + = all)")
@click.option("--influx-url", help="InfluxDB v2 write API, e.g. http://influxdb:8086")
@click.option("--bucket")
@click.option("--org")
@click.option("--token-env", metavar="VAR", help="environment variable holding the API token")
@click.option("--token-file", type=click.Path(dir_okay=False))
@click.option("--precision", type=click.Choice(["s", "ms", "us", "ns"]))
@click.option("--measurement", help="measurement template, default {device}")
@click.option("--batch-size", type=int)
@click.option("--flush-interval", help="e.g. 1s, 500ms")
@click.option("--sequence-check/--no-sequence-check", default=None,
              help="count gaps and duplicates (default on; see brain_reader/README.md)")
@click.option("--rebirth/--no-rebirth", default=None,
              help="ask Sparkplug edge nodes for a rebirth on unknown aliases (default on)")
@click.option("--report-interval", help="log the counters this often (default 10s)")
@click.option("--primary-host", "primary_host_id", metavar="HOST_ID",
              help="act as this Sparkplug primary host (publish STATE)")
@click.option("--state-dir", help="folder of the catalog (default ingest-state)")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True),
              help="stop after this many seconds (default: until SIGTERM/SIGINT)")
@click.option("--json", "as_json", is_flag=True, help="print the final counters as JSON")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
              default="INFO")
def ingest(ctx: click.Context, /, config_path: str | None, brokers: tuple[str, ...],
           formats: tuple[str, ...], password_env: str | None, password_file: str | None,
           token_env: str | None, token_file: str | None, duration: float | None,
           as_json: bool, log_level: str,
           influx_url: str | None, bucket: str | None, org: str | None, precision: str | None,
           measurement: str | None, batch_size: int | None, flush_interval: str | None,
           **options: Any) -> None:
    """Read gateway telemetry (JSON v1 and Sparkplug B) from MQTT and write it to an
    InfluxDB v2 write API; count gaps, duplicates and unknown aliases; keep the catalog.
    Several readers with the same --group share the work."""
    from brain_reader.config import load_ingest_config

    if ctx.invoked_subcommand is not None:
        ctx.obj = config_path
        return
    overrides: dict[str, Any] = {
        **options,
        "brokers": list(brokers) or None,
        "formats": list(formats) or None,
        "password": _secret(password_env, password_file, "password"),
        "influxdb": {
            "url": influx_url, "bucket": bucket, "org": org, "precision": precision,
            "measurement": measurement, "batch_size": batch_size,
            "flush_interval": flush_interval, "token": _secret(token_env, token_file, "token"),
        },
    }  # fmt: skip
    path = Path(config_path) if config_path else None
    try:
        config = load_ingest_config(path, overrides)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(exit_codes.CONFIG_INVALID)
    setup_logging(log_level, "text")
    if config.influxdb is None:
        log.warning("no InfluxDB given (--influx-url/--bucket): points are only counted")
    base_dir = path.resolve().parent if path else Path.cwd()
    code, counters = asyncio.run(_run(config, base_dir, duration))
    if counters is not None:
        click.echo(json.dumps(counters) if as_json else
                   " ".join(f"{k}={v}" for k, v in counters.items() if k != "streams"))
    sys.exit(code)


async def _run(config: Any, base_dir: Path, duration: float | None
               ) -> tuple[int, dict[str, Any] | None]:  # fmt: skip
    from brain_reader.reader import IngestReader

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if duration is not None:
        loop.call_later(duration, stop.set)
    try:
        reader = IngestReader(config, base_dir)
        counters = await reader.run(stop)
    except ConfigError as exc:
        log.error("%s", exc)
        return exit_codes.CONFIG_INVALID, None
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return exit_codes.RUNTIME_FAILURE, None
    return exit_codes.OK, {**counters.as_dict(), "streams": reader.streams()}


@ingest.group()
@click.option("--state-dir", help="the reader's state folder (default: from -c, or ingest-state)")
@click.pass_context
def catalog(ctx: click.Context, state_dir: str | None) -> None:
    """The data catalog the readers keep from births (STATE_DIR/catalog.sqlite)."""
    from brain_reader.catalog import Catalog
    from brain_reader.config import load_ingest_config

    config_path = ctx.obj
    try:
        config = load_ingest_config(Path(config_path) if config_path else None,
                                    {"state_dir": state_dir})  # fmt: skip
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(exit_codes.CONFIG_INVALID)
    base = Path(config_path).resolve().parent if config_path else Path.cwd()
    path = base / config.state_dir / "catalog.sqlite"
    if not path.exists():
        click.echo(f"no catalog at {path}", err=True)
        sys.exit(exit_codes.CONFIG_INVALID)
    ctx.obj = Catalog(path, config.grading)
    ctx.call_on_close(ctx.obj.close)


@catalog.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def catalog_list(cat: Any, as_json: bool) -> None:
    """Gateways: contract, plant, line, tags, first and last seen."""
    rows = cat.gateways()
    counts: dict[str, int] = {}
    for tag in cat.tags():
        counts[tag["gateway"]] = counts.get(tag["gateway"], 0) + int(tag["present"])
    for row in rows:
        row["tags"] = counts.get(row["gateway"], 0)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
        return
    for row in rows:
        click.echo(f"{row['gateway']}  {row['contract']}  tags={row['tags']}  births="
                   f"{row['births']}  first={_iso(row['first_seen'])}  "
                   f"last={_iso(row['last_seen'])}")


@catalog.command("show")
@click.argument("gateway")
@click.pass_obj
def catalog_show(cat: Any, gateway: str) -> None:
    """One gateway (site/line/gateway or group/edge_node): devices, tags (restricted ones
    too: this is the operator's view), birth history. JSON."""
    found = cat.show(gateway)
    if found is None:
        click.echo(f"no gateway {gateway!r} in the catalog", err=True)
        sys.exit(1)
    click.echo(json.dumps(found, ensure_ascii=False, indent=1))


@catalog.command("export")
@click.option("--format", "fmt", type=click.Choice(["json", "csv", "aas"]), default="json")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="file (default stdout)")
@click.pass_obj
def catalog_export(cat: Any, fmt: str, output: str | None) -> None:
    """The public export (restricted tags left out): JSON, CSV, or AAS submodels."""
    from brain_reader.catalog_export import export

    try:
        text = export(cat, fmt)
    except ImportError as exc:
        click.echo(f"the AAS export needs the brain extra (pip install "
                   f"'chenxing-edge[brain]'): {exc}", err=True)  # fmt: skip
        sys.exit(1)
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


def _iso(ms: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).isoformat(timespec="seconds")


def main() -> None:
    """The ``chenxing-ingest`` console script."""
    ingest()


if __name__ == "__main__":
    main()
