"""``chenxing-gateway scan``: read a register range once and show it under every type and order.

For finding a device's mapping: read, say, input registers 0..19 and look for
the 230 V you expect; its row says at which address and under which byte order
(and type) it lives. TCP with ``--host``, RTU with ``--serial``. Once the type and order
are known, ``--yaml --type float32 --byte-order CDAB`` prints the range as tag entries to
paste into the device block, the value read as each one's comment.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import click
import numpy as np
import numpy.typing as npt

from drivers.modbus.codec import BYTE_ORDERS, DecodePlan, Field
from drivers.modbus.config import ByteOrder
from gateway import exit_codes
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
    #: (type, byte order) -> value at each address (NaN where the value would run past the
    #: end); int64/uint64 as exact Python ints in an object array
    values: dict[tuple[DataType, str], np.ndarray]


def decode_all(start: int, registers: npt.ArrayLike) -> ScanResult:
    """Decode every address of ``registers`` as every type under every byte order (NumPy)."""
    regs = np.asarray(registers, dtype=np.uint16)
    n = len(regs)
    values: dict[tuple[DataType, str], np.ndarray] = {}
    for type_ in (*NARROW, *WIDE):
        for order in BYTE_ORDERS:
            probe = Field(0, type_, order)
            fits = max(0, n - probe.words + 1)
            out = np.full(n, np.nan, dtype=object if type_.is_wide_integer else np.float64)
            if fits:
                plan = DecodePlan([Field(a, type_, order) for a in range(fits)], n)
                out[:fits] = plan.decode(regs)
            values[(type_, order)] = out
    return ScanResult(start, regs, values)


def _fmt(value: float | int, type_: DataType) -> str:
    """A cell: integers exact (64-bit ones too), floats to 6 significant digits."""
    if isinstance(value, int):
        return str(value)
    if np.isnan(value) and type_ not in (DataType.FLOAT32, DataType.FLOAT64):
        return ""
    if type_ in (DataType.FLOAT32, DataType.FLOAT64):
        return f"{value:.6g}"
    return str(int(value))


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
                value = result.values[(type_, order)][i]
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


_TABLE_PREFIX = {"holding": "hr", "input": "ir"}


def tags_yaml(runs: list[Run], table: str, type_: DataType, order: ByteOrder,
              where: str) -> str:  # fmt: skip
    """The readable runs as tag entries of ``type_`` and ``order``, one per value (a value
    of several registers takes as many addresses), the value read as a comment."""
    from gateway.config.tag_yaml import TagEntry, render_tags

    entries = []
    words = Field(0, type_, order).words
    for run in runs:
        if run.code is not None:
            continue
        result = decode_all(run.start, run.registers)
        for offset in range(0, len(run.registers) - words + 1, words):
            keys: dict[str, Any] = {"name": f"{_TABLE_PREFIX[table]}_{run.start + offset}",
                                    "table": table, "address": run.start + offset,
                                    "type": type_.value}  # fmt: skip
            if words > 1 and order != "ABCD":
                keys["byte_order"] = order
            value = _fmt(result.values[(type_, order)][offset], type_)
            entries.append(TagEntry(keys, f"read {value}"))
    order_text = f" --byte-order {order}" if words > 1 else ""
    return render_tags(entries, f"chenxing-gateway scan at {where}, {table} registers as "
                                f"{type_.value}{order_text}")


#: exception codes that say "not these addresses": the readable part is worth finding
_ADDRESS_EXCEPTIONS = frozenset({2, 3})


class Refused(click.ClickException):
    """The device answered a read with a Modbus exception."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive registers: read (``registers``), or refused with ``code``."""

    start: int
    registers: tuple[int, ...] = ()
    count: int = 0
    code: int | None = None

    @property
    def size(self) -> int:
        return len(self.registers) if self.code is None else self.count


def span(start: int, count: int) -> str:
    """``0..13``, or ``14`` for one register."""
    return str(start) if count == 1 else f"{start}..{start + count - 1}"


def registers_of(table: str, spans: list[tuple[int, int]]) -> str:
    """``input registers 0..9, 12..13``; ``input register 14`` for one alone."""
    one = len(spans) == 1 and spans[0][1] == 1
    return f"{table} register{'' if one else 's'} " + ", ".join(span(*s) for s in spans)


class RangeReader:
    """One connection to the device (through drivers/modbus/pymodbus_adapter.py); reads that
    fail raise ``click.ClickException``. Made on the running event loop."""

    def __init__(self, *, host: str | None, port: int, serial: str | None, baudrate: int,
                 parity: str, stopbits: int, bytesize: int, unit: int, table: str,
                 timeout: float) -> None:
        from drivers.modbus import pymodbus_adapter as modbus
        from gateway.serial_ports import LineSettings

        self.unit, self.table, self.timeout = unit, table, timeout
        line = self._line = _Line(modbus.BadFrames(),
                                  asyncio.get_running_loop().create_future())
        if serial:
            self.where = serial
            settings = LineSettings(baudrate, bytesize, parity, stopbits)
            line.client = modbus.serial_client(serial, settings, f"scan:{serial}", timeout,
                                               line.on_connect_change, line.bad, line.on_bytes)
        else:
            self.where = f"{host}:{port}"
            line.client = modbus.tcp_client(host or "", port, "scan", timeout,
                                            line.on_connect_change, line.bad)
            line.ready.set()  # a TCP client is connected when connect() returns

    def registers(self, start: int, count: int) -> str:
        """``input registers 0..19``, ``input register 14``."""
        return registers_of(self.table, [(start, count)])

    async def __aenter__(self) -> RangeReader:
        from drivers.modbus.pymodbus_adapter import connect
        from gateway.errors import DeviceUnreachable

        try:
            await connect(self._line.client, self.timeout, self._unreachable,
                          ready=self._line.ready)
        except DeviceUnreachable as exc:
            raise click.ClickException(str(exc)) from None
        return self

    def _unreachable(self, error: BaseException | None, timed_out: bool) -> str:
        if timed_out:
            return f"cannot connect to {self.where}: no answer within {self.timeout:g} s"
        return f"cannot connect to {self.where}" + (f": {error}" if error is not None else "")

    async def __aexit__(self, *_exc: object) -> None:
        self._line.client.close()

    async def read(self, start: int, count: int) -> list[int]:
        """``count`` registers from ``start``: :class:`Refused` for an exception answer."""
        from drivers.modbus import pymodbus_adapter as modbus
        from gateway.errors import DriverError, RequestRefused

        what = f"a read of {self.registers(start, count)}"
        request = modbus.read_request(self.table, start, count, self.unit)
        try:
            answer = await modbus.exchange(self._line, request, self.timeout, what, self.where)
            values = modbus.read_values(answer, self.table, count, what)
        except RequestRefused as exc:
            name = modbus.EXCEPTION_NAMES.get(
                exc.code, "a code the Modbus specification does not define")
            raise Refused(exc.code, f"unit {self.unit} at {self.where} answered exception "
                                    f"{exc.code} ({name}) to {what}") from None
        except DriverError as exc:
            raise click.ClickException(
                f"no valid answer from unit {self.unit} at {self.where} to {what}: "
                f"{str(exc).removeprefix(f'{what}: ')}") from exc
        return [int(v) for v in values]


class _Line:
    """The scan's connection as the adapter's ``exchange`` watches it."""

    def __init__(self, bad: Any, lost: asyncio.Future[None]) -> None:
        self.client: Any = None
        self.bad = bad
        self.rx = [0]
        self.lost = lost
        self.ready = asyncio.Event()

    def on_connect_change(self, connected: bool) -> None:
        if connected:
            self.ready.set()
        elif not self.lost.done():
            self.lost.set_result(None)

    def on_bytes(self, n: int) -> None:
        self.rx[0] += n


async def read_runs(reader: RangeReader, start: int, count: int
                    ) -> tuple[list[Run], Refused | None]:
    """The range as runs of readable and refused registers, in address order, and the
    device's refusal of the whole range (None when it answered it).

    One read when the device answers it. When it refuses with exception 2 or 3 (not these
    addresses), halves are asked until every register is in a readable run or refused on
    its own (at most ``2 * count - 1`` reads); then each readable run of several registers
    is read once more whole, so that a value split between two halves is not read at two
    moments.
    """
    try:
        return [Run(start, tuple(await reader.read(start, count)))], None
    except Refused as refused:
        if refused.code not in _ADDRESS_EXCEPTIONS or count == 1:
            raise
        whole = refused
    pieces: list[Run] = []

    async def probe(first: int, n: int) -> None:
        try:
            pieces.append(Run(first, tuple(await reader.read(first, n))))
        except Refused as refused:
            if refused.code not in _ADDRESS_EXCEPTIONS:
                raise
            if n == 1:
                pieces.append(Run(first, count=1, code=refused.code))
                return
            await probe(first, n // 2)
            await probe(first + n // 2, n - n // 2)

    try:
        await probe(start, count // 2)
        await probe(start + count // 2, count - count // 2)
    except click.ClickException as exc:
        raise click.ClickException(f"{whole.message}; looking for the readable part, "
                                   f"then: {exc.message}") from exc
    runs: list[Run] = []
    for piece in pieces:  # merge neighbours of the same kind
        last = runs[-1] if runs else None
        if last is not None and last.code is None and piece.code is None:
            runs[-1] = Run(last.start, last.registers + piece.registers)
        elif last is not None and last.code is not None and last.code == piece.code:
            runs[-1] = Run(last.start, count=last.count + piece.count, code=last.code)
        else:
            runs.append(piece)
    for i, run in enumerate(runs):
        if run.code is None and len(run.registers) > 1:
            with contextlib.suppress(click.ClickException):  # keep the halves' registers
                runs[i] = Run(run.start, tuple(await reader.read(run.start, run.size)))
    return runs, whole


def explain(runs: list[Run], table: str) -> str:
    """Which part of the range was refused and why, and the reads that work."""
    from drivers.modbus.pymodbus_adapter import EXCEPTION_NAMES

    readable = [(r.start, r.size) for r in runs if r.code is None]
    refused = [r for r in runs if r.code is not None]
    codes = sorted({r.code for r in refused if r.code is not None})
    why = " or ".join(f"exception {c} ({EXCEPTION_NAMES.get(c, 'undefined code')})"
                      for c in codes)
    if not readable:
        return (f"No register of the range is readable: each answered {why}. Check --table "
                "and --unit; if the device's documentation counts addresses from 1, try "
                "--start one lower.")
    readable_text = registers_of(table, readable)
    verb = "is" if readable_text.startswith(f"{table} register ") else "are"
    refused_text = ", ".join(span(r.start, r.size) for r in refused)
    reads = " or ".join(f"--start {first} --count {n}" for first, n in readable)
    return (f"{readable_text} {verb} readable; {refused_text} answered {why}. "
            f"To read only what is there: {reads}")


async def scan_range(reader_options: dict[str, Any], start: int, count: int
                     ) -> tuple[list[Run], Refused | None]:
    async with RangeReader(**reader_options) as reader:
        return await read_runs(reader, start, count)


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
@click.option("--yaml", "as_yaml", is_flag=True,
              help="print the range as tag entries of --type and --byte-order to paste into "
                   "the device's tags")
@click.option("--type", "type_name", type=click.Choice([t.value for t in (*NARROW, *WIDE)]),
              default="uint16", show_default=True, help="with --yaml: the tags' type")
@click.option("--byte-order", type=click.Choice(list(BYTE_ORDERS)), default="ABCD",
              show_default=True, help="with --yaml: the order of a value's registers")
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
    as_yaml: bool,
    type_name: str,
    byte_order: str,
) -> None:
    """Read a register range once and print it decoded under every type and byte order."""
    from rich.console import Console

    if (host is None) == (serial is None):
        raise click.UsageError("give exactly one of --host (Modbus TCP) or --serial (Modbus RTU)")
    if start + count > 65536:
        raise click.UsageError("the range runs past register 65535")
    options = {"host": host, "port": port, "serial": serial, "baudrate": baudrate,
               "parity": parity, "stopbits": int(stopbits), "bytesize": int(bytesize),
               "unit": unit, "table": table, "timeout": timeout}
    try:
        runs, refused = asyncio.run(scan_range(options, start, count))
    except click.ClickException as exc:
        click.echo(f"Error: {exc.message}", err=True)
        sys.exit(exit_codes.RUNTIME_FAILURE)
    console = Console(width=None if sys.stdout.isatty() else 160)
    where = serial or f"{host}:{port}"
    if as_yaml:
        order = next(o for o in BYTE_ORDERS if o == byte_order)
        click.echo(tags_yaml(runs, table, DataType(type_name), order,
                             f"{where} unit {unit}"), nl=False)
    for run in runs:  # what was readable, also when part of the range was refused
        if run.code is None and not as_yaml:
            console.print(f"{where} unit {unit}, {registers_of(table, [(run.start, run.size)])}")
            render(decode_all(run.start, run.registers), console)
    if refused is not None:
        click.echo(f"Error: {refused.message}", err=True)
        click.echo(explain(runs, table), err=True)
        sys.exit(exit_codes.RUNTIME_FAILURE)


#: a tag the config API adds to a device sent without tags, for its config to validate
PLACEHOLDER_TAG = {"name": "scan", "address": 0, "type": "uint16"}
#: registers one API scan reads at most (one request)
MAX_API_COUNT = 125


async def scan_for_api(device: Mapping[str, Any], request: Mapping[str, Any]
                       ) -> dict[str, Any]:
    """``POST /api/scan`` for a Modbus TCP or RTU device: ``{table, start, count}`` read
    once, as the CLI's ``scan`` reads it; each address under every type and byte order.
    Raises ``ValueError`` for a bad request, pydantic's ``ValidationError`` for a bad
    device, :class:`~gateway.errors.DriverError` when the device cannot be read."""
    from drivers.modbus.config import ModbusRtuDeviceConfig, ModbusTcpDeviceConfig
    from gateway.errors import DeviceUnreachable

    body = {**device, "tags": device.get("tags") or [PLACEHOLDER_TAG]}
    model = ModbusTcpDeviceConfig if device.get("protocol") == "modbus_tcp" \
        else ModbusRtuDeviceConfig
    cfg = model.model_validate(body)
    table = request.get("table", "holding")
    start, count = request.get("start", 0), request.get("count", 10)
    if table not in _TABLE_PREFIX:
        raise ValueError("table: holding or input")
    if not _whole(start, 0, 65535) or not _whole(count, 1, MAX_API_COUNT) \
            or start + count > 65536:
        raise ValueError(f"start: 0..65535 and count: 1..{MAX_API_COUNT}, within 65535")
    options: dict[str, Any] = {"host": None, "port": 502, "serial": None, "baudrate": 9600,
                               "parity": "N", "stopbits": 1, "bytesize": 8,
                               "unit": cfg.unit_id, "table": table, "timeout": cfg.timeout}
    if isinstance(cfg, ModbusTcpDeviceConfig):
        options.update(host=cfg.host, port=cfg.port)
    else:
        options.update(serial=cfg.port, baudrate=cfg.baudrate, parity=cfg.parity,
                       stopbits=cfg.stopbits, bytesize=cfg.bytesize)
    try:
        runs, refused = await scan_range(options, start, count)
    except click.ClickException as exc:
        raise DeviceUnreachable(exc.message) from None
    rows: list[dict[str, Any]] = []
    for run in runs:
        if run.code is not None:
            rows.extend({"address": run.start + i, "exception": run.code}
                        for i in range(run.count))
            continue
        result = decode_all(run.start, run.registers)
        for i, register in enumerate(run.registers):
            views: dict[str, Any] = {}
            for (type_, order), values in result.values.items():
                if type_ in NARROW and order != "ABCD":
                    continue  # one register: the byte order does not apply
                value = values[i]
                if isinstance(value, float) and np.isnan(value):
                    continue  # runs past the end
                key = type_.value if type_ in NARROW else f"{type_.value} {order}"
                is_float = type_ in (DataType.FLOAT32, DataType.FLOAT64)
                views[key] = float(value) if is_float else int(value)
            rows.append({"address": run.start + i, "register": int(register), "as": views})
    return {"table": table, "start": start, "count": count, "rows": rows,
            "refused": None if refused is None else explain(runs, table)}


def _whole(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
