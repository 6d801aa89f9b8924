"""``chenxing-gateway scan``: a register range decoded under every type and byte order."""

from __future__ import annotations

import asyncio
import math
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from drivers.modbus.codec import encode
from drivers.modbus.scan_cmd import _fmt, decode_all
from gateway import exit_codes
from gateway.cli.main import main
from gateway.types import DataType
from hil.devices.modbus_meter import ModbusMeterSimulator
from tests.drivers.pasted_tags import paste

ROOT = Path(__file__).resolve().parents[3]


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


def test_decode_all_shows_64_bit_integers_exactly() -> None:
    """float64 would show the all-ones marker as 1.84467e+19 (2**64)."""
    result = decode_all(0, [0xFFFF] * 4)
    assert result.values[(DataType.UINT64, "ABCD")][0] == 2**64 - 1
    assert result.values[(DataType.INT64, "CDAB")][0] == -1
    assert _fmt(result.values[(DataType.UINT64, "DCBA")][0], DataType.UINT64) == str(2**64 - 1)
    assert _fmt(result.values[(DataType.UINT64, "ABCD")][1], DataType.UINT64) == ""  # past the end


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


def scan_args(sim: ModbusMeterSimulator, table: str, start: int, count: int) -> list[str]:
    return ["scan", "--host", sim.host, "--port", str(sim.port), "--table", table,
            "--start", str(start), "--count", str(count)]


@contextmanager
def meter_process() -> Iterator[int]:
    """``chenxing-hil sim modbus-meter --port 0`` as the README runs it; yields its port."""
    proc = subprocess.Popen([sys.executable, "-m", "hil.cli", "sim", "modbus-meter", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            cwd=ROOT)
    try:
        line = proc.stdout.readline() if proc.stdout is not None else ""
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert match, line
        yield int(match.group(1))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_scan_past_the_meters_input_registers_names_the_range_and_the_readable_part() -> None:
    """The README's example against the simulated meter (14 input registers), both as
    processes: the readable part is printed, the error names what failed and what to ask."""
    with meter_process() as port:
        result = subprocess.run(
            [sys.executable, "-m", "gateway.cli.main", "scan", "--host", "127.0.0.1",
             "--port", str(port), "--table", "input", "--start", "0", "--count", "20"],
            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == exit_codes.RUNTIME_FAILURE, result.stderr
    assert result.stderr.splitlines() == [
        f"Error: unit 1 at 127.0.0.1:{port} answered exception 2 (illegal data address) to a "
        "read of input registers 0..19",
        "input registers 0..13 are readable; 14..19 answered exception 2 (illegal data "
        "address). To read only what is there: --start 0 --count 14",
    ]
    assert f"127.0.0.1:{port} unit 1, input registers 0..13" in result.stdout
    assert 220 < float(wide_row(result.stdout, 0, "ABCD")[4]) < 240  # the voltage
    assert "│      13 │" in result.stdout and "│      14 │" not in result.stdout


def test_scan_finds_readable_runs_between_refused_ones() -> None:
    with meter_in_thread() as sim:
        before = sim.request_count
        result = CliRunner().invoke(main, scan_args(sim, "holding", 98, 8))
        requests = sim.request_count - before
    assert result.exit_code == exit_codes.RUNTIME_FAILURE
    assert result.stderr.splitlines()[-1] == (
        "holding registers 100..102 are readable; 98..99, 103..105 answered exception 2 "
        "(illegal data address). To read only what is there: --start 100 --count 3")
    assert "unit 1, holding registers 100..102" in result.stdout
    assert re.search(r"│\s+100 │ 0x0064 │\s+100 │", result.stdout)  # ct_ratio 100
    assert 49.9 < float(wide_row(result.stdout, 101, "ABCD")[4]) < 50.1  # power_limit
    assert requests <= 2 * 8  # halves, then the readable run once more whole


def test_scan_of_a_range_without_registers_says_so() -> None:
    with meter_in_thread() as sim:
        result = CliRunner().invoke(main, scan_args(sim, "input", 500, 4))
        single = CliRunner().invoke(main, scan_args(sim, "input", 14, 1))
    assert result.exit_code == single.exit_code == exit_codes.RUNTIME_FAILURE
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"Error: unit 1 at {sim.host}:{sim.port} answered exception 2 (illegal data address) "
        "to a read of input registers 500..503",
        "No register of the range is readable: each answered exception 2 (illegal data "
        "address). Check --table and --unit; if the device's documentation counts addresses "
        "from 1, try --start one lower.",
    ]
    assert single.stderr == (f"Error: unit 1 at {sim.host}:{sim.port} answered exception 2 "
                             "(illegal data address) to a read of input register 14\n")


def test_scan_does_not_probe_when_the_device_is_busy() -> None:
    with meter_in_thread() as sim:
        sim.inject_exception(6)
        before = sim.request_count
        busy = CliRunner().invoke(main, scan_args(sim, "input", 0, 14))
        assert sim.request_count - before == 1
        # 14..19 do not exist (pymodbus answers 2 for them): probing stops at the first 6
        before = sim.request_count
        stopped = CliRunner().invoke(main, scan_args(sim, "input", 0, 20))
        assert sim.request_count - before == 1
    assert busy.exit_code == stopped.exit_code == exit_codes.RUNTIME_FAILURE
    where = f"unit 1 at {sim.host}:{sim.port}"
    assert busy.stderr == (f"Error: {where} answered exception 6 (server device busy) to a "
                           "read of input registers 0..13\n")
    assert stopped.stderr == (
        f"Error: {where} answered exception 2 (illegal data address) to a read of input "
        f"registers 0..19; looking for the readable part, then: {where} answered exception 6 "
        "(server device busy) to a read of input registers 0..9\n")


def test_scan_that_gets_no_answer_names_the_range() -> None:
    with meter_in_thread() as sim:
        sim.response_delay = 1.0
        result = CliRunner().invoke(main, [*scan_args(sim, "input", 0, 4), "--timeout", "0.2"])
    assert result.exit_code == exit_codes.RUNTIME_FAILURE
    assert result.stderr.startswith(f"Error: no valid answer from unit 1 at {sim.host}:"
                                    f"{sim.port} to a read of input registers 0..3: ")


def test_scan_needs_exactly_one_transport() -> None:
    result = CliRunner().invoke(main, ["scan", "--start", "0", "--count", "2"])
    assert result.exit_code == 2
    assert "exactly one of --host" in result.output


def test_scan_yaml_prints_tags_to_paste_into_the_device() -> None:
    with meter_in_thread() as sim:
        result = CliRunner().invoke(main, [
            "scan", "--host", sim.host, "--port", str(sim.port), "--table", "input",
            "--start", "0", "--count", "6", "--yaml", "--type", "float32"])
    assert result.exit_code == 0, result.output
    printed = result.output
    assert printed.startswith("# chenxing-gateway scan at 127.0.0.1:") and "│" not in printed
    first = printed.splitlines()[2]
    assert first.startswith("- {name: ir_0, table: input, address: 0, type: float32}  # read ")
    assert 220 < float(first.rsplit(" ", 1)[1]) < 240  # the voltage
    config = paste({"protocol": "modbus_tcp", "host": sim.host, "port": sim.port}, printed)
    tags = config.devices[0].tags
    assert [(t.name, t.address) for t in tags] == [("ir_0", 0), ("ir_2", 2), ("ir_4", 4)]


def test_scan_yaml_names_the_byte_order_of_wide_values() -> None:
    with meter_in_thread() as sim:
        result = CliRunner().invoke(main, [
            "scan", "--host", sim.host, "--port", str(sim.port), "--table", "holding",
            "--start", "100", "--count", "4", "--yaml", "--type", "uint32",
            "--byte-order", "CDAB"])
    # 103 is not there: the readable part (100..102) is one uint32, and the refusal is said
    assert result.exit_code == exit_codes.RUNTIME_FAILURE
    assert "holding registers 100..102 are readable" in result.stderr
    config = paste({"protocol": "modbus_tcp", "host": sim.host}, result.stdout)
    assert [(t.address, t.byte_order) for t in config.devices[0].tags] == [(100, "CDAB")]
