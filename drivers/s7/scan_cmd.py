"""``chenxing-gateway scan s7``: read a byte range of a PLC once and show it under every type.

For finding where a value lives in a DB whose layout nobody wrote down: read DB1 bytes
0..31 and look for the 230 degC you expect; its row says at which offset and as which
S7 type (REAL, INT, DINT ...). The connection is the driver's (same TSAPs, connection
type and PDU negotiation), so a scan that works is a device block that works.
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Mapping
from typing import Any

import click

from drivers.s7.address import S7_TYPES, Area, S7Address, parse_address
from drivers.s7.codec import decode_value
from drivers.s7.config import CONNECTION_TYPES, S7DeviceConfig
from drivers.s7.frames import ReadItem, max_read_payload
from gateway import exit_codes
from gateway.errors import DriverError

#: the views of each offset (name, S7 type, bytes)
VIEWS = ("BYTE", "WORD", "INT", "DWORD", "DINT", "REAL", "LINT", "LREAL")


def decode_all(data: bytes) -> list[dict[str, str]]:
    """Per offset: each view's value as text ('' where it would run past the end)."""
    rows = []
    for offset in range(len(data)):
        row = {}
        for name in VIEWS:
            size = S7_TYPES[name].size
            if offset + size > len(data):
                row[name] = ""
                continue
            address = S7Address(Area.M, 0, offset, S7_TYPES[name])
            value = decode_value(data[offset:offset + size], address)
            if isinstance(value, float) and name in ("REAL", "LREAL"):
                row[name] = f"{value:.6g}" if math.isfinite(value) else str(value)
            else:
                row[name] = str(int(value))
        row["STRING"] = _string_at(data, offset)
        rows.append(row)
    return rows


def _string_at(data: bytes, offset: int) -> str:
    """An S7 STRING starting here, when its header is plausible and its text printable."""
    if offset + 2 > len(data):
        return ""
    maximum, current = data[offset], data[offset + 1]
    if not 0 < current <= maximum or offset + 2 + current > len(data):
        return ""
    text = data[offset + 2:offset + 2 + current].decode("latin-1")
    return repr(text) if text.isprintable() else ""


def tags_yaml(address: S7Address, data: bytes, type_name: str, where: str) -> str:
    """The bytes read as tag entries of one S7 type, one per value from the first byte,
    the value read as a comment (render_tags)."""
    from gateway.config.tag_yaml import TagEntry, render_tags

    kind = S7_TYPES[type_name]
    rows = decode_all(data)
    label = f"db{address.db}" if address.area is Area.DB else address.area.name.lower()
    entries = []
    for offset in range(0, len(data) - kind.size + 1, kind.size):
        at = S7Address(address.area, address.db, address.start + offset, kind)
        entries.append(TagEntry({"name": f"{label}_{at.start}", "address": at.text()},
                                f"read {rows[offset][type_name]}"))
    area = f"DB{address.db}" if address.area is Area.DB else address.area.name
    return render_tags(entries, f"chenxing-gateway scan s7 at {where}, {area} bytes "
                                f"{address.start}..{address.start + len(data) - 1} as "
                                f"{type_name}")


def render(start: int, data: bytes, console: Any) -> None:
    from rich.table import Table

    table = Table(title=f"{len(data)} bytes from offset {start}, each offset under each type")
    table.add_column("offset", justify="right")
    table.add_column("hex")
    for name in (*VIEWS, "STRING"):
        table.add_column(name, justify="right" if name != "STRING" else "left")
    for i, row in enumerate(decode_all(data)):
        table.add_row(str(start + i), f"{data[i]:02X}", *(row[n] for n in (*VIEWS, "STRING")))
    console.print(table)


def probe_address(area: str, start: int) -> tuple[str, S7Address]:
    """The address text and address of the first byte of ``area`` (``DB1``, ``M``...) to
    scan from ``start``; ValueError naming what is wrong."""
    letter = area.strip().upper()
    probe = f"{letter}.DBB{start}" if letter.startswith("DB") else f"{letter}B{start}"
    address = parse_address(probe)
    if address.area.per_element:
        raise ValueError("timers and counters are read by tags (T5, C3), not scanned")
    return probe, address


async def read_range(device: S7DeviceConfig, item: ReadItem) -> tuple[bytes, str]:
    from drivers.s7.driver import S7Driver

    driver = S7Driver(device, [1])
    try:
        await driver.connect()
        assert driver.pdu_size is not None
        step = max_read_payload(driver.pdu_size) & ~1
        data = b""
        for first in range(0, item.count, step):
            part = ReadItem(item.area, item.db, item.start + first, min(step, item.count - first))
            data += await driver.read_range(part)
        return data, await driver.identity() or ""
    finally:
        await driver.close()


@click.command("scan")
@click.option("--host", required=True, help="the PLC's IP address or host name")
@click.option("--port", type=click.IntRange(1, 65535), default=102, show_default=True)
@click.option("--rack", type=click.IntRange(0, 7), default=0, show_default=True)
@click.option("--slot", type=click.IntRange(0, 31), default=1, show_default=True,
              help="S7-300: 2; S7-1200/1500, S7-200 SMART: 1")
@click.option("--connection-type", type=click.Choice(list(CONNECTION_TYPES)), default="op",
              show_default=True, help="not pg unless needed: it may lock out the programmer")
@click.option("--area", required=True, help="DB1, M, I, Q or V (S7-200 SMART)")
@click.option("--start", type=click.IntRange(0, 65535), required=True, help="first byte")
@click.option("--count", type=click.IntRange(1, 1024), required=True, help="bytes, 1..1024")
@click.option("--timeout", type=float, default=2.0, show_default=True, help="seconds")
@click.option("--yaml", "as_yaml", is_flag=True,
              help="print the bytes as tag entries of --type to paste into the device's tags")
@click.option("--type", "type_name", type=click.Choice(VIEWS), default="WORD",
              show_default=True, help="with --yaml: the tags' S7 type")
def scan(host: str, port: int, rack: int, slot: int, connection_type: str, area: str,
         start: int, count: int, timeout: float, as_yaml: bool, type_name: str) -> None:
    """Read COUNT bytes of AREA from START and show each offset as every S7 type."""
    from rich.console import Console

    try:
        probe, address = probe_address(area, start)
    except ValueError as exc:
        raise click.UsageError(f"--area {area!r}: {exc}") from None
    device = S7DeviceConfig.model_validate({
        "name": "scan", "protocol": "s7", "host": host, "port": port, "rack": rack,
        "slot": slot, "connection_type": connection_type, "timeout": timeout,
        "tags": [{"name": "probe", "address": probe}]})
    item = ReadItem(address.area, address.db, start, count)
    try:
        data, identity = asyncio.run(read_range(device, item))
    except DriverError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exit_codes.RUNTIME_FAILURE)
    if as_yaml:
        click.echo(tags_yaml(address, data, type_name, f"{host}:{port}"), nl=False)
        return
    console = Console()
    if identity:
        console.print(f"{device.describe_connection()}: {identity}")
    render(start, data, console)



#: bytes one API scan reads at most
MAX_API_BYTES = 1024


async def scan_for_api(device: Mapping[str, Any], request: Mapping[str, Any]
                       ) -> dict[str, Any]:
    """``POST /api/scan`` for an S7 device: ``{area, start, count}`` (bytes) read once with
    the device's connection, as the CLI's ``scan s7`` reads them; each offset under every
    S7 type. Raises ``ValueError`` for a bad request, pydantic's ``ValidationError`` for a
    bad device, :class:`~gateway.errors.DriverError` when the PLC cannot be read."""
    area, start, count = request.get("area", "DB1"), request.get("start", 0), \
        request.get("count", 16)
    if not isinstance(area, str) or not area.strip():
        raise ValueError("area: DB1, M, I, Q or V")
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start <= 65535:
        raise ValueError("start: the first byte, 0..65535")
    if isinstance(count, bool) or not isinstance(count, int) \
            or not 1 <= count <= MAX_API_BYTES:
        raise ValueError(f"count: bytes, 1..{MAX_API_BYTES}")
    probe, address = probe_address(area, start)
    cfg = S7DeviceConfig.model_validate(
        {**device, "tags": device.get("tags") or [{"name": "probe", "address": probe}]})
    data, identity = await read_range(cfg, ReadItem(address.area, address.db, start, count))
    rows = [{"address": start + i, "byte": data[i], "as": row}
            for i, row in enumerate(decode_all(data))]
    return {"area": area.strip().upper(), "start": start, "count": count,
            "identity": identity or None, "rows": rows}
