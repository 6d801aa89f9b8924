"""``chenxing-gateway scan fins``: a word range read once, shown under every type."""

from __future__ import annotations

import asyncio
import struct
import threading
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from drivers.fins.scan_cmd import scan
from hil.devices.fins_plc import FinsPlcSimulator
from tests.drivers.pasted_tags import paste


@pytest.fixture
def plc_in_thread() -> Iterator[FinsPlcSimulator]:
    """The simulated PLC on an event loop of its own (the command runs its own loop)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sim = FinsPlcSimulator(model_name="CJ2H-CPU68")
    asyncio.run_coroutine_threadsafe(sim.start(), loop).result(5)
    try:
        yield sim
    finally:
        asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.mark.parametrize("transport", [[], ["--tcp"]])
def test_scan_shows_each_word_under_every_type(
    transport: list[str], plc_in_thread: FinsPlcSimulator
) -> None:
    high, low = struct.unpack(">HH", struct.pack(">f", 230.5))
    plc_in_thread.set_words("D100", [low, high, 0x4F4B, 0xFFFF])
    result = CliRunner().invoke(scan, ["--host", "127.0.0.1", "--port", str(plc_in_thread.port),
                                       "--start", "D100", "--count", "4", *transport],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "CJ2H-CPU68, version 02.00" in result.output
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:]]
            for line in result.output.splitlines() if line.startswith("│ ")}
    assert rows["D100"][0] == f"{low:04X}" and rows["D100"][5] == "230.5"  # float32, CDAB
    assert rows["D102"][2] == "20299" and rows["D102"][-2] == "'OK'"
    assert rows["D103"][1] == "-1" and rows["D103"][2] == "65535"


def test_scan_refuses_what_it_cannot_read(plc_in_thread: FinsPlcSimulator) -> None:
    runner = CliRunner()
    bit = runner.invoke(scan, ["--host", "127.0.0.1", "--start", "CIO0.01", "--count", "2"])
    assert bit.exit_code == 2 and "give a word (CIO0), not a bit" in bit.output
    past = runner.invoke(scan, ["--host", "127.0.0.1", "--start", "W500", "--count", "20"])
    assert past.exit_code == 2 and "run past the end of the area (W511)" in past.output
    plc_in_thread.end_code = 0x1103
    refused = runner.invoke(scan, ["--host", "127.0.0.1", "--port", str(plc_in_thread.port),
                                   "--start", "D0", "--count", "2"])
    assert refused.exit_code == 3
    assert "end code 11 03 (address range error" in refused.output


def test_scan_yaml_prints_tags_to_paste_into_the_device(
        plc_in_thread: FinsPlcSimulator) -> None:
    high, low = struct.unpack(">HH", struct.pack(">f", 230.5))
    plc_in_thread.set_words("D100", [low, high, low, high])
    result = CliRunner().invoke(scan, ["--host", "127.0.0.1", "--port", str(plc_in_thread.port),
                                       "--start", "D100", "--count", "4", "--yaml",
                                       "--type", "float32"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "- {name: d100, address: D100, type: float32}  # read 230.5" in lines
    config = paste({"protocol": "fins", "host": "127.0.0.1", "port": plc_in_thread.port},
                   result.output)
    assert [(t.name, t.address) for t in config.devices[0].tags] == [
        ("d100", "D100"), ("d102", "D102")]
