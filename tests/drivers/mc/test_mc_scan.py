"""``chenxing-gateway scan mc``: a MELSEC device range read once, under every type and order."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from drivers.mc.scan_cmd import decode_words
from gateway import exit_codes
from gateway.cli.main import main
from gateway.types import DataType
from hil.devices.mc_plc import McPlcSimulator


@contextmanager
def plc_in_thread(**options: Any) -> Iterator[McPlcSimulator]:
    """The simulated CPU served from its own event loop, so that the CLI can asyncio.run."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sim = McPlcSimulator(**options)
    asyncio.run_coroutine_threadsafe(sim.start(), loop).result(timeout=10)
    try:
        yield sim
    finally:
        asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def scan(*args: str) -> Any:
    return CliRunner().invoke(main, ["scan", "mc", *args], terminal_width=200)


def test_decode_words_under_both_word_orders() -> None:
    words = np.array([0xE979, 0x42F6, 0xFFFF], dtype=np.uint16)  # 123.456 low word first
    values = decode_words(words)
    assert values[(DataType.FLOAT32, "low_first")][0] == np.float32(123.456)
    assert values[(DataType.UINT32, "high_first")][0] == 0xE97942F6
    assert np.isnan(values[(DataType.INT32, "low_first")][2])  # would run past the end
    assert values[(DataType.UINT64, "low_first")].dtype == object


@pytest.mark.parametrize("udp", [False, True])
def test_scan_shows_words_and_the_cpu_model(udp: bool) -> None:
    with plc_in_thread(series="iq-r", process=False) as sim:
        sim.load({"D": {100: 0xE979, 101: 0x42F6, 102: 0x4241}})
        result = scan("--host", "127.0.0.1", "--port", str(sim.port), "--series", "iq-r",
                      "--start", "D100", "--count", "3", *(["--udp"] if udp else []))
    assert result.exit_code == 0, result.output
    assert "CPU R04CPU, D100..D102" in result.output
    assert "123.456" in result.output and "E979H" in result.output and "AB" in result.output


def test_scan_shows_bits_in_the_series_base() -> None:
    with plc_in_thread(series="iq-f", process=False) as sim:
        sim.load({"X": {15: 1, 16: 1}})
        result = scan("--host", "127.0.0.1", "--port", str(sim.port), "--series", "iq-f",
                      "--start", "X16", "--count", "3")
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if line.strip().startswith("│")]
    cells = [[c for c in row if c != "│"] for row in rows]
    assert ["X16", "off"] in cells and ["X17", "ON"] in cells and ["X20", "ON"] in cells


def test_scan_says_why_a_range_fails() -> None:
    with plc_in_thread(series="q", process=False) as sim:
        result = scan("--host", "127.0.0.1", "--port", str(sim.port), "--series", "q",
                      "--start", "D12280", "--count", "20")
    assert result.exit_code == exit_codes.RUNTIME_FAILURE
    assert "C056H (the device range is exceeded" in result.output


def test_scan_refuses_an_address_of_another_base() -> None:
    result = scan("--host", "127.0.0.1", "--port", "1", "--series", "iq-f", "--start", "X18",
                  "--count", "1")
    assert result.exit_code == 2 and "X numbers are octal on iq-f" in result.output
