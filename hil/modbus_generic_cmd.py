"""``chenxing-hil sim modbus --map FILE [--rtu]``: the generic Modbus simulator, foreground."""

from __future__ import annotations

from pathlib import Path

import click

from gateway.errors import ConfigError


@click.command("modbus")
@click.option("--map", "map_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Register map YAML (example: hil/maps/boiler.yaml).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=5020, show_default=True,
              help="TCP port (0 = pick a free one).")
@click.option("--rtu", is_flag=True,
              help="Modbus RTU on a pty pair instead of TCP; prints the serial device.")
@click.option("--baudrate", type=int, default=19200, show_default=True,
              help="RTU line speed (with --rtu).")
def modbus(map_path: Path, host: str, port: int, rtu: bool, baudrate: int) -> None:
    """A Modbus device from a register map: values, waveforms and faults per address range."""
    from hil.cli import _serve_until_signal
    from hil.devices.modbus_generic import ModbusGenericSimulator
    from hil.devices.modbus_map import load_map

    try:
        modbus_map = load_map(map_path)
    except ConfigError as exc:
        raise click.ClickException(f"invalid register map:\n{exc}") from exc
    simulator = ModbusGenericSimulator(modbus_map, host=host, port=port, rtu=rtu,
                                       baudrate=baudrate)

    def banner() -> str:
        where = (f"RTU {simulator.serial_path} ({baudrate} baud 8N1)" if rtu
                 else f"listening on {simulator.address}")
        return (f"modbus ({map_path.name}) {where}, unit {modbus_map.unit_id}, "
                f"{len(modbus_map.registers)} values, {len(modbus_map.faults)} faults")

    _serve_until_signal(simulator, banner, "modbus")
