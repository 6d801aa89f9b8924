"""``chenxing-gateway scan``: a register range decoded under every type and byte order."""

from __future__ import annotations

import asyncio
import math
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from click.testing import CliRunner

from drivers.modbus.codec import encode
from gateway.cli.main import main
from gateway.cli.scan_cmd import decode_all
from gateway.types import DataType
from hil.devices.modbus_meter import ModbusMeterSimulator


@contextmanager
def meter_in_thread(rtu: bool = False) -> Iterator[ModbusMeterSimulator]:
    """The simulated meter served from its own event loop, so that the CLI can asyncio.run."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sim = ModbusMeterSimulator(rtu=rtu)
    asyncio.run_coroutine_threadsafe(sim.start(), loop).result(timeout=10)
    try:
        yield sim
    finally:
        asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def test_decode_all_gives_every_address_under_every_order() -> None:
    registers = [*encode(123.456, DataType.FLOAT32, "CDAB"), *encode(-2, DataType.INT16)]
    result = decode_all(40, registers)
    assert result.values[(DataType.FLOAT32, "CDAB")][0] == pytest.approx(123.456, rel=1e-6)
    assert result.values[(DataType.INT16, "ABCD")][2] == -2
    assert result.values[(DataType.UINT16, "BADC")][2] == 0xFEFF
    assert math.isnan(result.values[(DataType.INT32, "ABCD")][2])  # would run past the end
    assert np.isnan(result.values[(DataType.FLOAT64, "DCBA")]).all()  # 3 registers: no 64-bit


def wide_row(output: str, address: int, order: str) -> list[str]:
    """The cells of the 32/64-bit table's row for ``address`` under ``order``."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if "32- and 64-bit" in line)
    current = None
    for line in lines[start:]:
        cells = [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]
        if len(cells) < 3:
            continue
        if cells[0]:
            current = cells[0]
        if current == str(address) and cells[1] == order:
            return cells
    raise AssertionError(f"no row for {address} {order}")


def test_scan_shows_the_meter_voltage_under_abcd() -> None:
    with meter_in_thread() as sim:
        result = CliRunner().invoke(
            main,
            [
                "scan",
                "--host",
                sim.host,
                "--port",
                str(sim.port),
                "--table",
                "input",
                "--start",
                "0",
                "--count",
                "14",
            ],
        )
    assert result.exit_code == 0, result.output
    abcd = wide_row(result.output, 0, "ABCD")
    assert 220 < float(abcd[4]) < 240  # float32 column: the voltage
    cdab = wide_row(result.output, 0, "CDAB")
    assert not 220 < abs(float(cdab[4])) < 240
    assert "input registers 0..13" in result.output


def test_scan_over_rtu() -> None:
    with meter_in_thread(rtu=True) as sim:
        result = CliRunner().invoke(
            main,
            [
                "scan",
                "--serial",
                sim.serial_path,
                "--baudrate",
                "19200",
                "--table",
                "holding",
                "--start",
                "100",
                "--count",
                "3",
            ],
        )
    assert result.exit_code == 0, result.output
    assert re.search(r"│\s+100 │ 0x0064 │\s+100 │", result.output)  # ct_ratio 100
    assert 49.9 < float(wide_row(result.output, 101, "ABCD")[4]) < 50.1  # power_limit 50.0


def test_scan_reports_an_exception_and_fails() -> None:
    with meter_in_thread() as sim:
        result = CliRunner().invoke(
            main,
            ["scan", "--host", sim.host, "--port", str(sim.port), "--start", "500", "--count", "2"],
        )
    assert result.exit_code == 3
    assert "exception 2 (illegal data address)" in result.output


def test_scan_needs_exactly_one_transport() -> None:
    result = CliRunner().invoke(main, ["scan", "--start", "0", "--count", "2"])
    assert result.exit_code == 2
    assert "exactly one of --host" in result.output
