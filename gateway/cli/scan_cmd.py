"""``chenxing-gateway scan``: read a register range once and show it under every type and order.

For finding a device's mapping: read, say, input registers 0..19 and look for
the 230 V you expect; its row says at which address and under which byte order
(and type) it lives. TCP with ``--host``, RTU with ``--serial``.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import Any

import click
import numpy as np
import numpy.typing as npt

from drivers.modbus.codec import BYTE_ORDERS, DecodePlan, Field
from gateway.cli import exit_codes
from gateway.types import DataType

#: the 16-bit views (one register) and the wider ones (several registers, per byte order)
NARROW = (DataType.INT16, DataType.UINT16)
WIDE = (
    DataType.INT32,
    DataType.UINT32,
    DataType.FLOAT32,
    DataType.INT64,
    DataType.UINT64,
    DataType.FLOAT64,
)


@dataclass(frozen=True, slots=True)
class ScanResult:
    """Registers read from ``start`` and their decodings."""

    start: int
    registers: npt.NDArray[np.uint16]
    #: (type, byte order) -> value at each address (NaN where the value would run past the end)
    values: dict[tuple[DataType, str], npt.NDArray[np.float64]]


def decode_all(start: int, registers: npt.ArrayLike) -> ScanResult:
    """Decode every address of ``registers`` as every type under every byte order (NumPy)."""
    regs = np.asarray(registers, dtype=np.uint16)
    n = len(regs)
    values: dict[tuple[DataType, str], npt.NDArray[np.float64]] = {}
    for type_ in (*NARROW, *WIDE):
        for order in BYTE_ORDERS:
            probe = Field(0, type_, order)
            fits = max(0, n - probe.words + 1)
            out = np.full(n, np.nan)
            if fits:
                plan = DecodePlan([Field(a, type_, order) for a in range(fits)], n)
                out[:fits] = plan.decode(regs)
            values[(type_, order)] = out
    return ScanResult(start, regs, values)


def _fmt(value: float, type_: DataType) -> str:
    if np.isnan(value) and type_ not in (DataType.FLOAT32, DataType.FLOAT64):
        return ""
    if type_ in (DataType.FLOAT32, DataType.FLOAT64):
        return f"{value:.6g}"
    return str(int(value)) if abs(value) < 2**53 else f"{value:.6g}"


def _plausible(value: float) -> bool:
    """A float an engineer might be looking for: zero or of moderate size."""
    return bool(np.isfinite(value)) and (value == 0 or 1e-3 <= abs(value) <= 1e7)


def render(result: ScanResult, console: Any) -> None:
    """Two tables: each register as 16-bit values and text, then the wider types per order."""
    from rich.table import Table

    narrow = Table(title="16-bit (one register)", show_lines=False)
    for name in ("address", "hex", "int16", "uint16", "int16 BADC", "uint16 BADC", "text"):
        narrow.add_column(name, justify="right" if name != "text" else "left")
    for i, reg in enumerate(result.registers.tolist()):
        chars = "".join(chr(b) if 32 <= b < 127 else "." for b in (reg >> 8, reg & 0xFF))
        narrow.add_row(
            str(result.start + i),
            f"0x{reg:04X}",
            _fmt(result.values[(DataType.INT16, "ABCD")][i], DataType.INT16),
            _fmt(result.values[(DataType.UINT16, "ABCD")][i], DataType.UINT16),
            _fmt(result.values[(DataType.INT16, "BADC")][i], DataType.INT16),
            _fmt(result.values[(DataType.UINT16, "BADC")][i], DataType.UINT16),
            chars,
        )
    console.print(narrow)

    wide = Table(title="32- and 64-bit, from each address, under each byte order")
    wide.add_column("address", justify="right")
    wide.add_column("order")
    for type_ in WIDE:
        wide.add_column(type_.value, justify="right")
    n = len(result.registers)
    for i in range(n - 1):
        for order in BYTE_ORDERS:
            cells = []
            for type_ in WIDE:
                value = float(result.values[(type_, order)][i])
                words = 2 if type_.value.endswith("32") else 4
                if i + words > n:
                    cells.append("")
                    continue
                text = _fmt(value, type_)
                is_float = type_ in (DataType.FLOAT32, DataType.FLOAT64)
                if is_float and _plausible(value):
                    text = f"[bold]{text}[/bold]"
                cells.append(text)
            wide.add_row(str(result.start + i) if order == "ABCD" else "", order, *cells)
        if i < n - 2:
            wide.add_section()
    console.print(wide)


async def read_range(
    *,
    host: str | None,
    port: int,
    serial: str | None,
    baudrate: int,
    parity: str,
    stopbits: int,
    bytesize: int,
    unit: int,
    table: str,
    start: int,
    count: int,
    timeout: float,
) -> list[int]:
    """One read of ``count`` registers; raises ``click.ClickException`` with the reason."""
    from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
    from pymodbus.exceptions import ModbusException

    from drivers.modbus.driver import EXCEPTION_NAMES

    client: Any
    if serial:
        where = serial
        client = AsyncModbusSerialClient(
            serial,
            baudrate=baudrate,
            parity=parity,
            stopbits=stopbits,
            bytesize=bytesize,
            timeout=timeout,
            retries=0,
            reconnect_delay=0,
        )
    else:
        where = f"{host}:{port}"
        client = AsyncModbusTcpClient(
            host or "", port=port, timeout=timeout, retries=0, reconnect_delay=0
        )
    try:
        if not await client.connect():
            raise click.ClickException(f"cannot connect to {where}")
        read = client.read_holding_registers if table == "holding" else client.read_input_registers
        try:
            response = await asyncio.wait_for(
                read(start, count=count, device_id=unit), timeout + 0.5
            )
        except (TimeoutError, ModbusException) as exc:
            reason = f"no valid answer from unit {unit} at {where}: {exc or 'timed out'}"
            raise click.ClickException(reason) from exc
        if response.isError():
            code = response.exception_code
            name = EXCEPTION_NAMES.get(code, "unknown exception code")
            raise click.ClickException(f"unit {unit} answered exception {code} ({name})")
        if len(response.registers) != count:
            raise click.ClickException(
                f"asked {count} registers, the answer has {len(response.registers)}"
            )
        return list(response.registers)
    finally:
        client.close()


@click.command("scan")
@click.option("--host", help="Modbus TCP device (or --serial for RTU)")
@click.option("--port", type=click.IntRange(1, 65535), default=502, show_default=True)
@click.option("--serial", metavar="PORT", help="Modbus RTU serial device, e.g. /dev/ttyUSB0")
@click.option("--baudrate", type=int, default=9600, show_default=True)
@click.option("--parity", type=click.Choice(["N", "E", "O"]), default="N", show_default=True)
@click.option("--stopbits", type=click.Choice(["1", "2"]), default="1", show_default=True)
@click.option("--bytesize", type=click.Choice(["7", "8"]), default="8", show_default=True)
@click.option("--unit", type=click.IntRange(0, 255), default=1, show_default=True)
@click.option(
    "--table", type=click.Choice(["holding", "input"]), default="holding", show_default=True
)
@click.option("--start", type=click.IntRange(0, 65535), required=True, help="0-based address")
@click.option("--count", type=click.IntRange(1, 125), required=True, help="registers, 1..125")
@click.option("--timeout", type=float, default=1.0, show_default=True, help="seconds")
def scan(
    host: str | None,
    port: int,
    serial: str | None,
    baudrate: int,
    parity: str,
    stopbits: str,
    bytesize: str,
    unit: int,
    table: str,
    start: int,
    count: int,
    timeout: float,
) -> None:
    """Read a register range once and print it decoded under every type and byte order."""
    from rich.console import Console

    if (host is None) == (serial is None):
        raise click.UsageError("give exactly one of --host (Modbus TCP) or --serial (Modbus RTU)")
    if start + count > 65536:
        raise click.UsageError("the range runs past register 65535")
    try:
        registers = asyncio.run(
            read_range(
                host=host,
                port=port,
                serial=serial,
                baudrate=baudrate,
                parity=parity,
                stopbits=int(stopbits),
                bytesize=int(bytesize),
                unit=unit,
                table=table,
                start=start,
                count=count,
                timeout=timeout,
            )
        )
    except click.ClickException as exc:
        click.echo(f"Error: {exc.message}", err=True)
        sys.exit(exit_codes.RUNTIME_FAILURE)
    console = Console(width=None if sys.stdout.isatty() else 160)
    where = serial or f"{host}:{port}"
    console.print(f"{where} unit {unit}, {table} registers {start}..{start + count - 1}")
    render(decode_all(start, registers), console)
