"""``chenxing-gateway scan mc``: read a device range once and show it under every type and order.

For finding where a value lives in a MELSEC CPU: read, say, D100..D119 and look for
the 230 degC you expect; its row says at which register, as which type and in which
word order. Bit devices (M, X, Y, B, L, SM, ...) are shown bit by bit. The CPU's
model (Read CPU model) is printed first when it answers it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, get_args

import click
import numpy as np

from drivers.mc import frames
from drivers.mc.codec import NUMBER_ORDER
from drivers.mc.config import MAX_BATCH_WORDS, HalfOrder
from drivers.mc.devices import SERIES, Address, PlcSeries, parse_address
from drivers.mc.end_codes import describe_end_code
from drivers.mc.frames import DeviceRef, FrameKind, Route
from drivers.mc.transport import TcpLink, UdpLink
from drivers.modbus.codec import DecodePlan, Field
from gateway import exit_codes
from gateway.errors import DriverError, McFrameError, RequestFailed
from gateway.types import DataType

#: the wider views of each register, under each word order
WIDE = (DataType.INT32, DataType.UINT32, DataType.FLOAT32, DataType.INT64, DataType.UINT64,
        DataType.FLOAT64)
ORDERS: tuple[HalfOrder, ...] = ("low_first", "high_first")


class ScanError(click.ClickException):
    """The range could not be read; the message says why."""


@dataclass(frozen=True, slots=True)
class Session:
    """One link to the CPU and how to address it."""

    link: TcpLink | UdpLink
    route: Route
    timeout: float
    kind: FrameKind
    long: bool

    async def ask(self, what: str, frame: bytes) -> bytes:
        """The answer's data to ``frame``; :class:`ScanError` for anything else."""
        serial = 1 if self.kind == "4e" else None
        try:
            raw = await self.link.exchange(frame, serial, self.timeout)
            response = frames.parse_response(raw, self.kind, self.route, serial)
        except RequestFailed as exc:
            if exc.counter == "timeout":
                raise ScanError(f"no answer to {what} within {self.timeout:g} s") from None
            raise ScanError(f"{what}: {exc.reason}") from None
        except (DriverError, McFrameError) as exc:  # the connection broke, garbled bytes
            raise ScanError(f"{what}: {exc}") from None
        if response.end_code:
            raise ScanError(f"{what}: the CPU answered end code "
                            f"{describe_end_code(response.end_code)}")
        return response.data


def decode_words(words: np.ndarray) -> dict[tuple[DataType, str], np.ndarray]:
    """Every word position decoded as every wide type under both word orders (NaN past the
    end; 64-bit integers exact, in object arrays)."""
    n = len(words)
    out: dict[tuple[DataType, str], np.ndarray] = {}
    for type_ in WIDE:
        for order in ORDERS:
            size = 2 if type_.value.endswith("32") else 4
            fits = max(0, n - size + 1)
            values = np.full(n, np.nan, dtype=object if type_.is_wide_integer else np.float64)
            if fits:
                byte_order = NUMBER_ORDER[order]
                plan = DecodePlan([Field(a, type_, byte_order)
                                   for a in range(fits)], n)
                values[:fits] = plan.decode(words)
            out[(type_, order)] = values
    return out


def _cell(value: Any, type_: DataType) -> str:
    if isinstance(value, int):
        return str(value)
    if not np.isfinite(value) and type_ not in (DataType.FLOAT32, DataType.FLOAT64):
        return ""
    if type_ in (DataType.FLOAT32, DataType.FLOAT64):
        text = f"{value:.6g}"
        plausible = np.isfinite(value) and (value == 0 or 1e-3 <= abs(value) <= 1e7)
        return f"[bold]{text}[/bold]" if plausible and value != 0 else text
    return str(int(value))


def render_words(start: Address, series: PlcSeries, words: np.ndarray, console: Any) -> None:
    from rich.table import Table

    device = start.device
    narrow = Table(title="16-bit (one word)")
    for name in ("device", "hex", "int16", "uint16", "text (low byte first)"):
        narrow.add_column(name, justify="left" if name.startswith("text") else "right")
    for i, word in enumerate(words.tolist()):
        chars = "".join(chr(b) if 32 <= b < 127 else "." for b in (word & 0xFF, word >> 8))
        narrow.add_row(device.format_number(start.number + i, series), f"{word:04X}H",
                       str(word - 0x10000 if word & 0x8000 else word), str(word), chars)
    console.print(narrow)
    if len(words) < 2:
        return
    values = decode_words(words)
    wide = Table(title="32- and 64-bit, from each device, in each word order")
    wide.add_column("device", justify="right")
    wide.add_column("word order")
    for type_ in WIDE:
        wide.add_column(type_.value, justify="right")
    n = len(words)
    for i in range(n - 1):
        for order in ORDERS:
            cells = []
            for type_ in WIDE:
                size = 2 if type_.value.endswith("32") else 4
                cells.append("" if i + size > n else _cell(values[(type_, order)][i], type_))
            label = device.format_number(start.number + i, series) if order == ORDERS[0] else ""
            wide.add_row(label, order, *cells)
        if i < n - 2:
            wide.add_section()
    console.print(wide)


def render_bits(start: Address, series: PlcSeries, bits: list[int], console: Any) -> None:
    from rich.table import Table

    device = start.device
    table = Table(title=f"{device.name} bits")
    table.add_column("device", justify="right")
    table.add_column("value", justify="right")
    for i, bit in enumerate(bits):
        table.add_row(device.format_number(start.number + i, series), "ON" if bit else "off")
    console.print(table)


def first_device(text: str, count: int, series: PlcSeries) -> Address:
    """The first device of a scan of ``count`` from ``text`` (``D100``); ValueError naming
    the option that is wrong."""
    try:
        start = parse_address(text, series)
    except ValueError as exc:
        raise ValueError(f"--start: {exc}") from None
    if start.bit is not None:
        raise ValueError("--start: give a device without .bit: the scan shows every bit")
    if not start.device.bit and count > MAX_BATCH_WORDS:
        raise ValueError(f"--count: a batch read takes at most {MAX_BATCH_WORDS} words")
    return start


async def scan_range(options: dict[str, Any], start: Address, count: int
                     ) -> tuple[str | None, list[int] | np.ndarray]:
    """(CPU model or None, the bits or words read)."""
    kind: FrameKind = options["frame"]
    link_class = UdpLink if options["udp"] else TcpLink
    link = link_class(options["host"], options["port"], kind)
    route = Route(options["network"], options["station"], options["module_io"],
                  options["multidrop"])
    long = options["series"] == "iq-r"
    session = Session(link, route, options["timeout"], kind, long)
    serial = 1 if kind == "4e" else None
    timer = max(1, round(options["timeout"] / 0.25))
    try:
        async with asyncio.timeout(options["timeout"]):
            await link.open()
    except TimeoutError:
        raise ScanError(f"cannot connect to {link.where} within {options['timeout']:g} s"
                        ) from None
    except DriverError as exc:  # DeviceUnreachable
        raise ScanError(str(exc)) from None
    try:
        model: str | None = None
        try:
            data = await session.ask("read CPU model", frames.read_type_name(route, timer, serial))
            model = data[:16].split(b"\0", 1)[0].decode("ascii", "replace").strip()
        except ScanError as exc:
            model = f"unknown ({exc.message})"
            if "no answer" in exc.message:
                link.resync()
                if not link.is_open:
                    try:
                        await link.open()
                    except DriverError as reopen:
                        raise ScanError(str(reopen)) from None
        ref = DeviceRef(start.device.code, start.number)
        what = f"a read of {count} from {start.text(options['series'])}"
        if start.device.bit:
            data = await session.ask(what, frames.batch_read(route, timer, ref, count, bits=True,
                                                             long=long, serial=serial))
            try:
                return model, frames.unpack_bits(data, count)
            except McFrameError as exc:
                raise ScanError(f"{what}: {exc.reason}") from None
        data = await session.ask(what, frames.batch_read(route, timer, ref, count, long=long,
                                                         serial=serial))
        if len(data) != 2 * count:
            raise ScanError(f"{what}: {len(data)} bytes of answer for {count} words")
        return model, np.frombuffer(data, "<u2").astype(np.uint16)
    finally:
        link.close()


@click.command("scan")
@click.option("--host", required=True, help="the CPU's or Ethernet module's address")
@click.option("--port", type=click.IntRange(1, 65535), required=True,
              help="its SLMP (MC protocol) port")
@click.option("--udp", is_flag=True, help="UDP instead of TCP")
@click.option("--frame", type=click.Choice(get_args(FrameKind)), default="3e", show_default=True)
@click.option("--series", type=click.Choice(SERIES), required=True,
              help="q (Q, L), iq-r (iQ-R, iQ-L) or iq-f (FX5): the base of X/Y numbers")
@click.option("--network", type=click.IntRange(0, 255), default=0, show_default=True)
@click.option("--station", type=click.IntRange(0, 255), default=255, show_default=True)
@click.option("--module-io", type=click.IntRange(0, 0xFFFF), default=0x03FF,
              show_default=True)
@click.option("--multidrop", type=click.IntRange(0, 255), default=0, show_default=True)
@click.option("--start", "start_text", required=True,
              help="first device, as in GX Works: D100, W1A0, M0, X20")
@click.option("--count", type=click.IntRange(1, 3584), required=True,
              help=f"words (word devices, up to {MAX_BATCH_WORDS}) or bits (bit devices)")
@click.option("--timeout", type=float, default=1.0, show_default=True, help="seconds")
def scan(host: str, port: int, udp: bool, frame: str, series: str, network: int, station: int,
         module_io: int, multidrop: int, start_text: str, count: int, timeout: float) -> None:
    """Read a MELSEC device range once; print words under every type and word order, or bits."""
    from rich.console import Console

    plc_series: PlcSeries = series  # type: ignore[assignment]  # click.Choice(SERIES) checked it
    try:
        start = first_device(start_text, count, plc_series)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    options = {"host": host, "port": port, "udp": udp, "frame": frame, "series": plc_series,
               "network": network, "station": station, "module_io": module_io,
               "multidrop": multidrop, "timeout": timeout}
    try:
        model, values = asyncio.run(scan_range(options, start, count))
    except click.ClickException as exc:
        click.echo(f"Error: {exc.message}", err=True)
        sys.exit(exit_codes.RUNTIME_FAILURE)
    console = Console(width=None if sys.stdout.isatty() else 160)
    last = start.device.format_number(start.number + count - 1, plc_series)
    console.print(f"{host}:{port}/{'udp' if udp else 'tcp'} CPU {model}, "
                  f"{start.text(plc_series)}..{last}")
    if isinstance(values, list):
        render_bits(start, plc_series, values, console)
    else:
        render_words(start, plc_series, values, console)


async def scan_for_api(device: Mapping[str, Any], request: Mapping[str, Any]
                       ) -> dict[str, Any]:
    """``POST /api/scan`` for an MC (SLMP) device: ``{start: "D100", count}`` (words of a
    word device, bits of a bit device) read once with the device's connection, as the CLI's
    ``scan mc`` reads them; words under every wide type and word order. Raises
    ``ValueError`` for a bad request, pydantic's ``ValidationError`` for a bad device,
    :class:`~gateway.errors.DeviceUnreachable` when the CPU cannot be read."""
    from drivers.mc.config import McDeviceConfig
    from gateway.errors import DeviceUnreachable

    start_text, count = request.get("start", "D0"), request.get("count", 16)
    if not isinstance(start_text, str):
        raise ValueError("start: the first device, as in GX Works: D100, W1A0, M0")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 3584:
        raise ValueError("count: 1..3584")
    cfg = McDeviceConfig.model_validate({**device, "tags": device.get("tags") or [
        {"name": "probe", "address": "D0", "type": "uint16"}]})
    start = first_device(start_text, count, cfg.plc_series)
    options = {"host": cfg.host, "port": cfg.port, "udp": cfg.transport == "udp",
               "frame": cfg.frame, "series": cfg.plc_series, "network": cfg.network,
               "station": cfg.station, "module_io": cfg.module_io,
               "multidrop": cfg.multidrop, "timeout": cfg.timeout}
    try:
        model, values = await scan_range(options, start, count)
    except click.ClickException as exc:
        raise DeviceUnreachable(exc.message) from None
    name = start.device.format_number
    if isinstance(values, list):
        rows: list[dict[str, Any]] = [
            {"address": name(start.number + i, cfg.plc_series), "bit": int(bit)}
            for i, bit in enumerate(values)]
    else:
        wide = decode_words(values)
        rows = []
        for i, word in enumerate(values.tolist()):
            views: dict[str, Any] = {"int16": word - 0x10000 if word & 0x8000 else word,
                                     "uint16": word}
            for (type_, order), column in wide.items():
                value = column[i]
                if isinstance(value, float) and not np.isfinite(value):
                    continue  # past the end
                is_float = type_ in (DataType.FLOAT32, DataType.FLOAT64)
                views[f"{type_.value} {order}"] = float(value) if is_float else int(value)
            rows.append({"address": name(start.number + i, cfg.plc_series), "word": word,
                         "as": views})
    return {"start": start.text(cfg.plc_series), "count": count, "identity": model,
            "rows": rows}
