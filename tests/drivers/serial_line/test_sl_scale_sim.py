"""The simulated scale: seeded weights, the wrong-baud model, ``chenxing-hil sim scale``."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from drivers.serial_line.config import SerialLineDeviceConfig
from drivers.serial_line.driver import SerialLineDriver
from hil.devices.scale import ScaleReading, scramble_baud, weight_readings
from tests.waiting import until

ROOT = Path(__file__).resolve().parents[3]
LINE = b"ST,GS,+0012.345 kg\r\n"


def test_line_format_and_seeded_parts_placed_and_removed() -> None:
    assert ScaleReading(True, False, 12.345, "kg").line() == LINE
    assert ScaleReading(False, True, -0.12, "g").line() == b"US,NT,-0000.120 g\r\n"
    first = list(itertools.islice(weight_readings(7), 200))
    assert first == list(itertools.islice(weight_readings(7), 200))
    assert first != list(itertools.islice(weight_readings(8), 200))
    stable_weights = {r.weight for r in first if r.stable}
    assert 0.0 in stable_weights and len(stable_weights) >= 4  # empty pan and several parts
    assert any(not r.stable for r in first)


def test_same_baud_is_identity_and_mismatch_scrambles() -> None:
    assert scramble_baud(LINE, 9600, 9600) == LINE
    slow = scramble_baud(LINE, 9600, 2400)  # reader too slow: bytes merge, fewer of them
    fast = scramble_baud(LINE, 2400, 9600)  # reader too fast: each byte becomes several
    assert len(slow) < len(LINE) < len(fast)
    for scrambled in (slow, fast):
        assert scrambled != LINE and b"\r\n" not in scrambled
    assert scramble_baud(LINE, 9600, 2400) == slow  # deterministic


@pytest.mark.parametrize("mode", ["stream", "poll"])
async def test_cli_scale_serves_a_driver(mode: str) -> None:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hil.cli", "sim", "scale", "--mode", mode, "--rate", "40",
        "--seed", "3", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line.startswith("scale on /"), line
        port = line.split()[2]
        body: dict[str, object] = {
            "name": "s", "protocol": "serial_line", "port": port,
            "framing": {"terminator": r"\r\n"},
            "parser": {"regex": r"(?P<st>ST|US),(?:GS|NT),(?P<w>[+-]\d+\.\d+) kg"},
            "tags": [{"name": "w", "type": "float64", "field": "w"}],
        }
        if mode == "poll":
            body |= {"mode": "poll", "poll_command": r"SI\r\n", "poll_interval": "20ms"}
        driver = SerialLineDriver(SerialLineDeviceConfig.model_validate(body), [0])
        await driver.connect()
        try:
            if mode == "poll":
                group = driver.poll_groups()[0]
                for _ in range(5):
                    assert len(await driver.read(group)) == 1
            else:
                task = asyncio.create_task(driver.subscribe(lambda _b: None))
                try:
                    await until(lambda: driver.frames_ok >= 5, "5 frames from the simulator")
                finally:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
        finally:
            await driver.close()
        assert driver.frames_ok >= 5 and driver.frames_bad == 0
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    assert not Path(port).parent.exists()  # the symlink's folder went with the simulator
