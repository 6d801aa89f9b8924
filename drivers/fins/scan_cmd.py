"""``chenxing-gateway scan fins``: read a word range of an Omron PLC once and show it under
every type.

For finding where a value lives when nobody wrote the memory map down: read D0..D39 and
look for the 230 degC you expect; its row says at which word and as which type and word
order (Omron keeps 32-bit values low word first: ``CDAB``). The connection is the
driver's (same transport, node numbers and handshake), so a scan that works is a device
block that works; ``--tcp`` scans over FINS/TCP.
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Mapping
from typing import Any

import click
import numpy as np
import numpy.typing as npt

from drivers.fins.address import Address, Area, parse_address
from drivers.fins.config import ByteOrder, FinsDeviceConfig
from drivers.modbus.codec import decode_value
from gateway import exit_codes
from gateway.errors import DriverError
from gateway.types import DataType

#: the views of each word: (column, type, byte order)
VIEWS: tuple[tuple[str, DataType, ByteOrder], ...] = (
    ("int16", DataType.INT16, "ABCD"),
    ("uint16", DataType.UINT16, "ABCD"),
    ("int32", DataType.INT32, "CDAB"),
    ("uint32", DataType.UINT32, "CDAB"),
    ("float32", DataType.FLOAT32, "CDAB"),
    ("float32 ABCD", DataType.FLOAT32, "ABCD"),
    ("float64", DataType.FLOAT64, "CDAB"),
)


def decode_all(words: npt.NDArray[np.uint16]) -> list[dict[str, str]]:
    """Per word: each view's value as text ('' where it would run past the end)."""
    rows = []
    values = [int(w) for w in words]
    for offset in range(len(values)):
        row = {}
        for name, type_, order in VIEWS:
            size = {DataType.INT16: 1, DataType.UINT16: 1, DataType.FLOAT64: 4}.get(type_, 2)
            if offset + size > len(values):
                row[name] = ""
                continue
            value = decode_value(values[offset:offset + size], type_, order)
            if isinstance(value, float) and type_ in (DataType.FLOAT32, DataType.FLOAT64):
                row[name] = f"{value:.6g}" if math.isfinite(value) else str(value)
            else:
                row[name] = str(int(value))
        pair = values[offset].to_bytes(2, "big")
        row["text"] = repr(pair.decode("latin-1")) if all(32 <= b < 127 for b in pair) else ""
        rows.append(row)
    return rows


#: words a value of each type takes
_WORDS = {DataType.INT16: 1, DataType.UINT16: 1, DataType.INT32: 2, DataType.UINT32: 2,
          DataType.FLOAT32: 2, DataType.FLOAT64: 4}


def tags_yaml(area: Area, start: int, words: npt.NDArray[np.uint16], type_: DataType,
              order: ByteOrder, where: str) -> str:  # fmt: skip
    """The words read as tag entries of one type and word order, one per value from the
    first word, the value read as a comment (render_tags)."""
    from gateway.config.tag_yaml import TagEntry, render_tags

    size = _WORDS[type_]
    values = [int(w) for w in words]
    entries = []
    for offset in range(0, len(values) - size + 1, size):
        address = Address(area, start + offset)
        value = decode_value(values[offset:offset + size], type_, order)
        shown = f"{value:.6g}" if isinstance(value, float) else str(int(value))
        keys: dict[str, Any] = {"name": f"{area.name.lower()}{address.word}",
                                "address": str(address), "type": type_.value}  # fmt: skip
        if size > 1 and order != "CDAB":
            keys["byte_order"] = order
        entries.append(TagEntry(keys, f"read {shown}"))
    order_text = f", {order}" if size > 1 else ""
    return render_tags(entries, f"chenxing-gateway scan fins at {where}, {area.name}{start}.."
                                f"{area.name}{start + len(values) - 1} as {type_.value}"
                                f"{order_text}")


def render(area: Area, start: int, words: npt.NDArray[np.uint16], console: Any) -> None:
    from rich.table import Table

    table = Table(title=f"{len(words)} words from {area.name}{start}, each word under each "
                  "type (32/64-bit: low word first, CDAB, unless said)")
    table.add_column("address", justify="right")
    table.add_column("hex")
    for name, _, _ in VIEWS:
        table.add_column(name, justify="right")
    table.add_column("text")
    for i, row in enumerate(decode_all(words)):
        table.add_row(f"{area.name}{start + i}", f"{int(words[i]):04X}",
                      *(row[n] for n, _, _ in VIEWS), row["text"])
    console.print(table)


def word_range(address: str, count: int) -> Address:
    """The first word of a scan of ``count`` words from ``address`` (``D0``); ValueError
    naming the option that is wrong."""
    try:
        where = parse_address(address)
    except ValueError as exc:
        raise ValueError(f"--start: {exc}") from None
    if where.is_bit:
        raise ValueError(f"--start: give a word ({where.area.name}{where.word}), not a bit")
    if where.word + count > where.area.words:
        raise ValueError(f"--count: {count} words from {where} run past the end of the area "
                         f"({where.area.name}{where.area.words - 1})")
    return where


async def read_range(device: FinsDeviceConfig, area: Area, start: int,
                     count: int) -> tuple[npt.NDArray[np.uint16], str]:
    from drivers.fins.driver import FinsDriver

    driver = FinsDriver(device, [1])
    try:
        await driver.connect()
        words = await driver.read_words(area, start, count)
        try:
            identity = await driver.identity() or ""
        except DriverError as exc:
            identity = f"unknown ({exc})"
        return words, f"{identity} ({driver.route})"
    finally:
        await driver.close()


@click.command("scan")
@click.option("--host", required=True, help="the PLC's IP address or host name")
@click.option("--port", type=click.IntRange(1, 65535), default=9600, show_default=True)
@click.option("--tcp", is_flag=True, help="FINS/TCP (with the node-address handshake); "
              "default FINS/UDP")
@click.option("--node", type=click.IntRange(1, 254), default=None,
              help="the PLC's FINS node (UDP default: the last number of its IP address)")
@click.option("--source-node", type=click.IntRange(1, 254), default=None,
              help="the gateway's FINS node (UDP default: the last number of its own IP "
              "address; TCP: assigned by the PLC)")
@click.option("--start", "address", required=True,
              help="first word: D0, CIO100, W0, H0, A500, E0_0")
@click.option("--count", type=click.IntRange(1, 2000), required=True, help="words, 1..2000")
@click.option("--timeout", type=float, default=2.0, show_default=True, help="seconds")
@click.option("--yaml", "as_yaml", is_flag=True,
              help="print the words as tag entries of --type to paste into the device's tags")
@click.option("--type", "type_name", type=click.Choice([t.value for t in _WORDS]),
              default="uint16", show_default=True, help="with --yaml: the tags' type")
@click.option("--byte-order", type=click.Choice(["CDAB", "ABCD", "BADC", "DCBA"]),
              default="CDAB", show_default=True,
              help="with --yaml: word order of 32/64-bit values (Omron: CDAB)")
def scan(host: str, port: int, tcp: bool, node: int | None, source_node: int | None,
         address: str, count: int, timeout: float, as_yaml: bool, type_name: str,
         byte_order: ByteOrder) -> None:
    """Read COUNT words from START and show each word as every type."""
    from rich.console import Console

    try:
        where = word_range(address, count)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        device = FinsDeviceConfig.model_validate({
            "name": "scan", "protocol": "fins", "host": host, "port": port,
            "transport": "tcp" if tcp else "udp", "node": node, "source_node": source_node,
            "timeout": timeout, "tags": [{"name": "probe", "address": str(where),
                                          "type": "uint16"}]})
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        words, identity = asyncio.run(read_range(device, where.area, where.word, count))
    except DriverError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exit_codes.RUNTIME_FAILURE)
    if as_yaml:
        click.echo(tags_yaml(where.area, where.word, words, DataType(type_name), byte_order,
                             f"{host}:{port}"), nl=False)
        return
    console = Console()
    console.print(f"{device.describe_connection()}: {identity}")
    render(where.area, where.word, words, console)


#: words one API scan reads at most
MAX_API_WORDS = 2000


async def scan_for_api(device: Mapping[str, Any], request: Mapping[str, Any]
                       ) -> dict[str, Any]:
    """``POST /api/scan`` for a FINS device: ``{start: "D0", count}`` (words) read once with
    the device's connection, as the CLI's ``scan fins`` reads them; each word under every
    view. Raises ``ValueError`` for a bad request, pydantic's ``ValidationError`` for a bad
    device, :class:`~gateway.errors.DriverError` when the PLC cannot be read."""
    start, count = request.get("start", "D0"), request.get("count", 16)
    if not isinstance(start, str):
        raise ValueError("start: the first word, e.g. D0, CIO100, W0")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_API_WORDS:
        raise ValueError(f"count: words, 1..{MAX_API_WORDS}")
    where = word_range(start, count)
    cfg = FinsDeviceConfig.model_validate({**device, "tags": device.get("tags") or [
        {"name": "probe", "address": str(where), "type": "uint16"}]})
    words, identity = await read_range(cfg, where.area, where.word, count)
    rows = [{"address": f"{where.area.name}{where.word + i}", "word": int(words[i]), "as": row}
            for i, row in enumerate(decode_all(words))]
    return {"start": str(where), "count": count, "identity": identity, "rows": rows}
