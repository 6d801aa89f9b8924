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

from gateway.cli import exit_codes
from gateway.errors import ConfigError
from gateway.logsetup import setup_logging

log = logging.getLogger(__name__)


def _secret(env: str | None, file: str | None, option: str) -> dict[str, str] | None:
    if env and file:
        raise click.UsageError(f"give --{option}-env or --{option}-file, not both")
    if env:
        return {"env": env}
    return {"file": file} if file else None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option("--duration", type=click.FloatRange(min=0, min_open=True),
              help="stop after this many seconds (default: until SIGTERM/SIGINT)")
@click.option("--json", "as_json", is_flag=True, help="print the final counters as JSON")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
              default="INFO")
def ingest(config_path: str | None, brokers: tuple[str, ...], formats: tuple[str, ...],
           password_env: str | None, password_file: str | None, token_env: str | None,
           token_file: str | None, duration: float | None, as_json: bool, log_level: str,
           influx_url: str | None, bucket: str | None, org: str | None, precision: str | None,
           measurement: str | None, batch_size: int | None, flush_interval: str | None,
           **options: Any) -> None:
    """Read gateway telemetry (JSON v1 and Sparkplug B) from MQTT with a shared
    subscription and write it to an InfluxDB v2 write API; count gaps, duplicates and
    unknown aliases."""
    from brain_reader.config import load_ingest_config

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
                   " ".join(f"{k}={v}" for k, v in counters.items()))  # fmt: skip
    sys.exit(code)


async def _run(config: Any, base_dir: Path, duration: float | None
               ) -> tuple[int, dict[str, int] | None]:  # fmt: skip
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
    return exit_codes.OK, counters.as_dict()


def main() -> None:
    """The ``chenxing-ingest`` console script."""
    ingest()


if __name__ == "__main__":
    main()
