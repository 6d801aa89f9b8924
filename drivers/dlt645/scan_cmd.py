"""``chenxing-gateway scan dlt645``: find a meter and read every identifier the table has.

With ``--address auto`` (the default) the lone meter on the line is asked for its
address with the broadcast address; then each data identifier of the shipped table
(or those whose name starts with ``--only``) is read once and shown with its value,
or with why it has none (most meters answer "no data" for what they do not measure).
The output says what to write in the config: the address and the names of the
identifiers that answered.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
from typing import Any

import click

from gateway import exit_codes


def _device(address: str, version: int, names: list[str], options: dict[str, Any]) -> Any:
    from drivers.dlt645.config import Dlt645SerialDeviceConfig, Dlt645TcpDeviceConfig

    block: dict[str, Any] = {
        "name": "scan", "meter_address": address, "version": version,
        "timeout": options["timeout"], "retries": 0,
        "tags": [{"name": n.replace(".", "_"), "di": n} for n in names],
    }
    if options["host"]:
        return Dlt645TcpDeviceConfig.model_validate(
            block | {"protocol": "dlt645_tcp", "host": options["host"],
                     "port": options["tcp_port"]})
    return Dlt645SerialDeviceConfig.model_validate(
        block | {"protocol": "dlt645", "port": options["serial"],
                 "baudrate": options["baudrate"], "parity": options["parity"]})


async def scan_meter(address: str, version: int, only: str,
                     options: dict[str, Any]) -> tuple[str, list[tuple[str, str, str, str]]]:
    """(the meter's address, [(name, di, value, unit or why not)]) of one scan."""
    from drivers.dlt645.driver import Dlt645SerialDriver, Dlt645TcpDriver
    from drivers.dlt645.table import table

    known = table(1997 if version == 1997 else 2007)
    names = [n for n in known.names() if n.startswith(only)]
    if not names:
        raise click.BadParameter(f"no identifier of the DL/T 645-{version} table starts "
                                 f"with {only!r}", param_hint="--only")
    config = _device(address, version, names, options)
    ids = list(range(len(names)))
    driver: Any = Dlt645TcpDriver(config, ids) if options["host"] \
        else Dlt645SerialDriver(config, ids)
    rows = []
    try:
        await driver.connect()
        batch = await driver.read(driver.poll_groups()[0])
        for tag_id, value, quality in zip(batch.tag_ids, batch.values, batch.quality,
                                          strict=True):
            ident = config.tags[int(tag_id)].identifier
            good = int(quality) == 0
            why = _why(driver._failing.get((driver.meter_address, ident.di), ""))
            rows.append((ident.name, ident.di, _show(value) if good else "-",
                         ident.unit if good else why))
        return str(driver.meter_address), sorted(rows)
    finally:
        await driver.close()


def tags_yaml(meter: str, version: str, rows: list[tuple[str, str, str, str]]) -> str:
    """The identifiers that answered as tag entries (render_tags), value and unit as the
    comment; the meter's address is said in the heading (the device's meter_address)."""
    from gateway.config.tag_yaml import TagEntry, render_tags

    entries = [TagEntry({"name": name.replace(".", "_"), "di": name},
                        f"read {value} {unit}".rstrip())
               for name, _di, value, unit in rows if value != "-"]
    return render_tags(entries, f"chenxing-gateway scan dlt645: meter_address "
                                f"'{meter}', version {version}; the identifiers that answered")


def _show(value: object) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:g}"
    return str(value)


def _why(counter: str) -> str:
    return {"unknown_di": "the meter does not have it", "timeout": "no answer",
            "garbled": "garbled answer", "decode": "answer does not decode",
            "meter_error": "exception answer"}.get(counter, counter)


@click.command()
@click.option("--serial", metavar="PORT", help="RS-485 serial device, e.g. /dev/ttyUSB0")
@click.option("--host", help="serial device server (transparent TCP), instead of --serial")
@click.option("--tcp-port", type=click.IntRange(1, 65535), default=8899, show_default=True,
              help="the server's TCP port (with --host)")
@click.option("--baudrate", type=int, default=2400, show_default=True)
@click.option("--parity", type=click.Choice(["N", "E", "O"]), default="E", show_default=True)
@click.option("--version", "version", type=click.Choice(["2007", "1997"]), default="2007",
              show_default=True, help="DL/T 645 version")
@click.option("--address", default="auto", show_default=True,
              help="12-digit meter address; auto: ask the lone meter on the line")
@click.option("--only", default="", help="only identifiers whose name starts with this, "
              "e.g. energy or voltage")
@click.option("--timeout", type=float, default=1.5, show_default=True, help="seconds per answer")
@click.option("--yaml", "as_yaml", is_flag=True,
              help="print the identifiers that answered as tag entries to paste into the "
                   "device's tags")
def scan(serial: str | None, host: str | None, tcp_port: int, baudrate: int, parity: str,
         version: str, address: str, only: str, timeout: float, as_yaml: bool) -> None:
    """Read a DL/T 645 meter's address and every identifier of the shipped table once."""
    from rich.console import Console
    from rich.table import Table

    from gateway.errors import DriverError

    if bool(serial) == bool(host):
        raise click.UsageError("give --serial PORT or --host HOST (with --tcp-port)")
    options = {"serial": serial, "host": host, "tcp_port": tcp_port, "baudrate": baudrate,
               "parity": parity, "timeout": timeout}
    logging.getLogger("drivers.dlt645").setLevel(logging.ERROR)  # the table says it
    try:
        meter, rows = asyncio.run(scan_meter(address, int(version), only, options))
    except DriverError as exc:
        click.echo(f"scan failed: {exc}", err=True)
        sys.exit(exit_codes.CHECK_FAILED)
    except ValueError as exc:  # a config the scan could not build (a bad address)
        raise click.BadParameter(str(exc).splitlines()[-1].strip()) from None
    if as_yaml:
        click.echo(tags_yaml(meter, version, rows), nl=False)
        return
    console = Console(width=None if sys.stdout.isatty() else 140)
    console.print(f"meter address {meter} (DL/T 645-{version})")
    out = Table(show_lines=False)
    for column in ("name", "di", "value", "unit / why not"):
        out.add_column(column)
    for row in rows:
        out.add_row(*row)
    console.print(out)
    answered = sum(1 for r in rows if r[2] != "-")
    console.print(f"{answered} of {len(rows)} identifiers answered")
