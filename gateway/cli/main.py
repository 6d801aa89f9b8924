"""``chenxing-gateway``: run, validate, demo, config schema."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import click

from gateway import __version__, exit_codes
from gateway.cli.config_cmd import register as register_config
from gateway.cli.config_init_cmd import config_init
from gateway.cli.config_option import config_option
from gateway.cli.config_sample_cmd import config_sample
from gateway.cli.tools import DriverToolsGroup
from gateway.config.loader import ConfigDocument, load_config
from gateway.config.models import GatewayConfig
from gateway.errors import ConfigError
from gateway.logsetup import setup_logging
from gateway.plural import plural
from gateway.runtime.systemd_notify import SystemdNotifier
from gateway.shipped import shipped_root

if TYPE_CHECKING:
    from gateway.runtime.gateway import Gateway

log = logging.getLogger("gateway")

#: the shipped configs: the repository's config/ in a checkout, the package's copy installed
REPO_CONFIG_DIR = shipped_root() / "config"


@click.group(cls=DriverToolsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="chenxing-gateway")
def main() -> None:
    """chenxing-edge gateway: shop-floor devices in, MQTT telemetry out."""


@main.command()
@config_option()
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    default=None,
    help="overrides logging.level of the config",
)
def run(config_path: str, log_level: str | None) -> None:
    """Run the gateway until SIGTERM or SIGINT."""
    from gateway.config.loader import check_secrets, config_digest, load_config_file
    from gateway.runtime.memory import map_large_blocks_apart

    # no garbage collection while start-up builds what lives as long as the gateway (the
    # config, catalog and plans): each collection walked it all again and found nothing to
    # free (~0.7 s of a start at 100,000 tags); on again once it is frozen (see
    # _freeze_when_started)
    gc.disable()
    map_large_blocks_apart()  # freed large blocks leave the RSS (gateway/runtime/memory.py)
    digest = config_digest(config_path)  # before reading: a later edit differs from it
    try:
        document = load_config_file(config_path)
        check_secrets(document.config, Path(config_path))
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(exit_codes.CONFIG_INVALID)
    config = document.config
    # the data read is wanted only by a live change or the config API (read again then):
    # freed now, before the runtime is built in its place (~280 bytes a tag)
    document = document.without_data()
    # what reading it left in cycles (~500 objects at 200,000 tags) collected before the
    # event loop runs (nothing waits yet), the config moved out of the collector's sight
    gc.collect()
    gc.freeze()
    setup_logging(log_level or config.logging.level, config.logging.format,
                  config.logging.libraries)
    path = Path(config_path).resolve()
    sys.exit(asyncio.run(_run(config, path.parent, path, document, digest)))


async def _run(config: GatewayConfig, config_dir: Path, config_path: Path | None = None,
               document: ConfigDocument | None = None, digest: bytes | None = None) -> int:
    from gateway.runtime.gateway import Gateway

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    notifier = SystemdNotifier.from_environment()  # Type=notify: READY, WATCHDOG, STOPPING
    supervisor: asyncio.Task[None] | None = None
    try:
        # SIGHUP applies config_path again (unless it is as it was: digest); live changes
        # keep it and the store in step
        gateway = Gateway(config, config_dir, config_path, config_digest=digest,
                          document=document)
        if notifier is not None:
            supervisor = asyncio.create_task(notifier.supervise(
                gateway.started, stop, lambda: running_status(gateway)), name="systemd")
        frozen = asyncio.create_task(_freeze_when_started(gateway))
        try:
            await gateway.run(stop)
        finally:
            frozen.cancel()
            gc.enable()  # stopped before it started: collected as usual while stopping
    except ConfigError as exc:
        log.error("%s", exc)
        return exit_codes.CONFIG_INVALID
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return exit_codes.RUNTIME_FAILURE
    except Exception:
        log.exception("fatal error")
        return exit_codes.RUNTIME_FAILURE
    finally:
        if supervisor is not None:
            supervisor.cancel()
        if notifier is not None:
            notifier.close()
    return exit_codes.OK


def next_step(invoked_as: str) -> str:
    """The demo's last line: what to run next, with the command as the user typed it (a
    checkout's ``.venv/bin/chenxing-gateway``, or the one on PATH)."""
    command = invoked_as if "/" in invoked_as and not invoked_as.startswith("/") else \
        "chenxing-gateway"
    return (f"next: {command} config init -o gateway.yaml  # a config for your own devices; "
            f"then validate, check and run it (README: Configuration)")


def running_status(gateway: Gateway) -> str:
    """systemd's STATUS= line of a running gateway (``systemctl status`` shows it)."""
    return (f"running: {plural(len(gateway.runners), 'device')}, "
            f"{plural(len(gateway.catalog), 'tag')}; local API port {gateway.http_port}")


#: the longest wait for every device's first connect before the second freeze, s
CONNECT_STORM_WAIT = 120.0
#: the collector's third threshold until the second freeze: no automatic full collection
NO_FULL_COLLECTION = 1_000_000


async def _freeze_when_started(gateway: Gateway, check_every: float = 0.5) -> None:
    """Once built, move what start-up built (the config, the catalog, the drivers' plans:
    long-lived, hundreds of thousands of objects at 100,000 tags) out of the garbage
    collector's sight: a full collection then scans only what came later, and takes
    milliseconds instead of a stop-the-world pause of every poll (issue 21); and collect
    again from then on (``run`` turned the collector off for start-up).

    Then once more when every device has tried its first connect (or after
    :data:`CONNECT_STORM_WAIT`): each connection's client, transport and framers (about
    350 objects a Modbus TCP device) came after the first freeze and live as long; left in
    sight, 1,000 devices' 360,000 objects made each full collection a pause of 100-400 ms.
    Only the young generations are collected before it (a full collection would be that
    pause), and none of the oldest is made automatically until then (a full collection
    comes once a quarter as many objects as the oldest generation held after the last
    full one are waiting for it: with no full collection at the first freeze, that was
    soon, a pause of 0.1-0.3 s at 2,000 devices): cyclic garbage that reached the oldest
    meanwhile stays, a few objects at most.
    After each freeze the heap freed so far goes back to the system
    (:mod:`gateway.runtime.memory`)."""
    from gateway.runtime.device_runner import DeviceState
    from gateway.runtime.memory import give_back_freed_memory

    await gateway.built.wait()  # before the devices start
    # no collection first: one walked every object start-up made (800,000 at 2,000 devices
    # of 100 tags), a pause of ~0.3 s; the cycles start-up leaves after reading the config
    # (run collected those) are a few hundred objects (~200 at 200,000 tags), frozen too
    gc.freeze()
    thresholds = gc.get_threshold()
    # no full collection until the connections are frozen too: it would walk them all
    gc.set_threshold(thresholds[0], thresholds[1], NO_FULL_COLLECTION)
    try:
        gc.enable()  # off since start-up began (run)
        if log.isEnabledFor(logging.DEBUG):  # the count walks every frozen object: ~10 ms
            log.debug("%d start-up objects frozen out of garbage collection",
                      gc.get_freeze_count())
        await asyncio.to_thread(give_back_freed_memory)  # what reading the config freed
        await gateway.started.wait()  # the devices' runners are there
        for _ in range(int(CONNECT_STORM_WAIT / check_every)):  # a look now and then
            if all(r.stats.state is not DeviceState.STARTING for r in gateway.runners.values()):
                break
            await asyncio.sleep(check_every)
        gc.collect(1)
        gc.freeze()
    finally:
        gc.set_threshold(*thresholds)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%d objects frozen after the devices' first connects", gc.get_freeze_count())
    await asyncio.to_thread(give_back_freed_memory)


@main.command()
@config_option()
@click.option(
    "--secrets",
    is_flag=True,
    help="also check that every secret's environment variable or file is there",
)
def validate(config_path: str, secrets: bool) -> None:
    """Check a config file; exit 0 when valid, 1 listing every error with file and line."""
    from gateway.config.loader import check_secrets

    gc.disable()  # the process ends after one read: collections would find nothing (run)
    try:
        config = load_config(config_path)
        if secrets:
            check_secrets(config, Path(config_path))
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(exit_codes.CONFIG_INVALID)
    tags = sum(len(d.tags) for d in config.devices)
    click.echo(f"{config_path}: valid ({plural(len(config.devices), 'device')}, "
               f"{plural(tags, 'tag')})")


@main.group("config")
def config_group() -> None:
    """Config helpers: schema, init, and the versions a gateway applied (history, show,
    diff, rollback)."""


@config_group.command("schema")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="write to this file instead of standard output",
)
def config_schema(output: str | None) -> None:
    """Print (or write) the JSON Schema of the config file."""
    from gateway.config.schema import schema_text

    text = schema_text()
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)


@main.command()
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="config to run (default: config/demo.yaml)",
)
@click.option(
    "--duration",
    type=float,
    default=None,
    help="run this many seconds, print a summary and exit (0 only if every device reported)",
)
@click.option(
    "--broker",
    type=click.Choice(["auto", "mosquitto", "embedded"]),
    default="auto",
    help="which MQTT broker to start",
)
@click.option("--plain", is_flag=True, help="no live table; log lines only")
@click.option(
    "--format",
    "contract",
    type=click.Choice(["sparkplug", "json"]),
    default=None,
    help="payload contract (default: the config's northbound.format, Sparkplug B in demo.yaml)",
)
def demo(
    config_path: str | None,
    duration: float | None,
    broker: str,
    plain: bool,
    contract: Literal["sparkplug", "json"] | None,
) -> None:
    """Simulated meters -> gateway -> MQTT broker -> subscriber, shown live."""
    from gateway.cli.demo import run_demo

    path = Path(config_path) if config_path else REPO_CONFIG_DIR / "demo.yaml"
    try:
        config = load_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(exit_codes.CONFIG_INVALID)
    setup_logging("WARNING" if not plain else config.logging.level, config.logging.format,
                  config.logging.libraries)
    summary = asyncio.run(
        run_demo(config, path.resolve().parent, duration, broker, live=not plain, contract=contract)
    )
    click.echo(json.dumps(summary.as_dict()) if plain else "\n" + summary.line())
    if not plain:
        click.echo(next_step(sys.argv[0]))
    if duration is not None and not summary.all_devices_reported:
        sys.exit(exit_codes.DEMO_INCOMPLETE)


config_group.add_command(config_init)
config_group.add_command(config_sample)
register_config(config_group)


if __name__ == "__main__":
    main()
