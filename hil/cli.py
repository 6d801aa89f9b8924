"""``chenxing-hil``: run simulated devices and a broker for hardware-in-the-loop work."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from types import FrameType
from typing import cast

import click

from hil.broker import BrokerKind, MqttBroker
from hil.devices.modbus_meter import ModbusMeterSimulator
from hil.process.energy_meter import (
    EnergyMeterModel,
    MeterModel,
    WaveformMeter,
    WaveformParams,
)

log = logging.getLogger("hil.cli")


def _setup_logging(level: str) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(name)s: %(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=True)],
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
    help="Logging level (logs go to stderr).",
)
def main(log_level: str) -> None:
    """Simulated devices on real protocols, and an MQTT broker, for HIL tests."""
    _setup_logging(log_level)


@main.group()
def sim() -> None:
    """Run a simulated device in the foreground until Ctrl-C."""


@sim.command("modbus-meter")
@click.option("--host", default="127.0.0.1", show_default=True, help="Listen address.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=5020,
    show_default=True,
    help="TCP port (0 = pick a free one).",
)
@click.option(
    "--unit",
    "device_id",
    type=click.IntRange(1, 247),
    default=1,
    show_default=True,
    help="Modbus unit id.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Process model seed.")
@click.option(
    "--mode",
    type=click.Choice(["process", "waveform"]),
    default="process",
    show_default=True,
    help="Seeded process model or exact test waveforms.",
)
@click.option(
    "--time-scale",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Model seconds per wall-clock second.",
)
@click.option(
    "--period",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Waveform period in model seconds (waveform mode).",
)
def modbus_meter(
    host: str,
    port: int,
    device_id: int,
    seed: int,
    mode: str,
    time_scale: float,
    period: float,
) -> None:
    """Energy meter on Modbus TCP (register map: hil/README.md)."""
    t0 = time.time()
    model: MeterModel
    if mode == "waveform":
        model = WaveformMeter(WaveformParams(t0=t0, period_s=period, time_scale=time_scale))
    else:
        model = EnergyMeterModel(seed=seed, t0=t0, time_scale=time_scale)
    simulator = ModbusMeterSimulator(model, host=host, port=port, device_id=device_id)
    try:
        asyncio.run(_serve_until_signal(simulator, mode, seed))
    except OSError as exc:
        raise click.ClickException(str(exc)) from exc


async def _serve_until_signal(simulator: ModbusMeterSimulator, mode: str, seed: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with simulator:
        detail = f"seed {seed}" if mode == "process" else "waveform"
        click.echo(
            f"modbus-meter listening on {simulator.address} (unit {simulator.device_id}, {detail})",
        )
        await stop.wait()
    log.info("modbus-meter stopped")


def _raise_keyboard_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Listen address.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=1883,
    show_default=True,
    help="TCP port (0 = pick a free one).",
)
@click.option(
    "--kind",
    type=click.Choice(["auto", "mosquitto", "amqtt"]),
    default="auto",
    show_default=True,
    help="Mosquitto if installed (auto), or the embedded amqtt.",
)
def broker(host: str, port: int, kind: str) -> None:
    """Run an MQTT broker in the foreground until Ctrl-C."""
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        mqtt = MqttBroker(host=host, port=port, kind=cast(BrokerKind, kind))
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        try:
            mqtt.start()
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"{mqtt.kind} broker listening on {mqtt.url} (log: {mqtt.log_path})")
        while mqtt.running:
            time.sleep(0.5)
        raise click.ClickException(f"{mqtt.kind} exited unexpectedly:\n{mqtt.log_tail()}")
    except KeyboardInterrupt:
        log.info("stopping broker")
    finally:
        mqtt.close()
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()
