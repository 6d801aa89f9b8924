"""serial_line golden cases kept as data (cases/README.md): each case's byte stream framed
and parsed in chunks of every size, and read through the driver from a real pty; the
refused device blocks of cases/config_errors/cases.yaml with their key and words."""

from __future__ import annotations

import asyncio
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from drivers.serial_line.config import SerialLineDeviceConfig
from drivers.serial_line.driver import SerialLineDriver
from drivers.serial_line.framing import make_framer
from drivers.serial_line.parsing import FrameParser
from gateway.config.loader import load_config_text
from gateway.errors import ConfigError, InstrumentFrameRejected
from gateway.types import Quality, SampleBatch
from tests.waiting import until

CASES = Path(__file__).parent / "cases"
VALUE_CASES = sorted(p.name for p in CASES.iterdir() if (p / "expected.json").is_file())
ERRORS = yaml.safe_load((CASES / "config_errors" / "cases.yaml").read_text())


def device_block(case: str) -> dict[str, Any]:
    block: dict[str, Any] = yaml.safe_load((CASES / case / "device.yaml").read_text())
    return block


def stream(case: str) -> bytes:
    folder = CASES / case
    if (folder / "stream.hex").is_file():
        return bytes.fromhex((folder / "stream.hex").read_text())
    return (folder / "stream.txt").read_bytes()


def expected(case: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((CASES / case / "expected.json").read_text())
    return data


def config_text(device: dict[str, Any]) -> str:
    return yaml.safe_dump({"gateway": {"id": "gw-1", "site": "plant", "line": "line-1"},
                           "devices": [device]}, sort_keys=False, allow_unicode=True)


def loaded(case: str, **changes: Any) -> SerialLineDeviceConfig:
    """The case's device as the gateway's config reader reads it."""
    config = load_config_text(config_text(device_block(case) | changes), "cfg.yaml")
    (device,) = config.devices
    assert isinstance(device, SerialLineDeviceConfig)
    return device


def assert_frame(tags: list[str], values: list[Any], quality: list[int],
                 want: dict[str, Any]) -> None:
    got = dict(zip(tags, zip(values, quality, strict=True), strict=True))
    assert set(got) == set(want), (got, want)
    for name, spec in want.items():
        value, q = got[name]
        if isinstance(spec, dict) and "bad" in spec:
            assert q == Quality.BAD, (name, value)
            continue
        assert q == Quality.GOOD, (name, value, spec)
        if isinstance(spec, dict):
            assert value == spec["text"], name
        elif isinstance(spec, bool):
            assert value == float(spec), name
        elif isinstance(spec, int):
            assert type(value) is int or float(value).is_integer(), (name, value)
            assert int(value) == spec, name  # 64-bit integers exact: never via float
        else:
            assert math.isclose(float(value), spec, rel_tol=1e-6), (name, value, spec)
            assert math.copysign(1, float(value)) == math.copysign(1, spec), name


def frames_of(case: str, chunk: int) -> tuple[list[Any], Any]:
    device = loaded(case)
    framer, parser = make_framer(device.framing), FrameParser(device)
    data = stream(case)
    results: list[Any] = []
    for pos in range(0, len(data), chunk):
        for frame in framer.feed(data[pos : pos + chunk]):
            try:
                parsed = parser.parse(frame)
            except InstrumentFrameRejected as exc:
                results.append({"rejected": exc.reason})
            else:
                results.append((parsed.values.tolist(), parsed.quality.tolist()))
        assert framer.buffered <= framer.max_buffered
    return results, framer


@pytest.mark.parametrize("chunk", [1, 3, 7, 1 << 16])
@pytest.mark.parametrize("case", VALUE_CASES)
def test_golden_stream_framed_and_parsed(case: str, chunk: int) -> None:
    want = expected(case)
    results, framer = frames_of(case, chunk)
    tags = [t.name for t in loaded(case).tags]
    assert len(results) == len(want["frames"]), results
    for got, frame in zip(results, want["frames"], strict=True):
        if "rejected" in frame:
            assert got == frame
        else:
            assert not isinstance(got, dict), (got, frame)
            assert_frame(tags, *got, frame)
    for counter in ("overflows", "partials", "bytes_discarded", "buffered"):
        if counter in want:
            assert getattr(framer, counter) == want[counter], counter


@pytest.mark.parametrize("case", VALUE_CASES)
async def test_golden_stream_through_the_driver_on_a_pty(case: str) -> None:
    """The same bytes written to a real pty: the driver delivers the good frames' values
    (and BAD for a rejected one) in order, as the codec test says."""
    counts = expected(case)
    want = counts["frames"]
    master, slave = os.openpty()
    batches: list[SampleBatch] = []
    device = loaded(case, port=os.ttyname(slave), stale_after=None)
    tags = [t.name for t in device.tags]
    driver = SerialLineDriver(device, list(range(len(tags))))
    good = [f for f in want if "rejected" not in f]
    # the driver counts what the framer dropped (too long, cut off) as bad frames too
    bad = len(want) - len(good) + counts.get("overflows", 0) + counts.get("partials", 0)
    try:
        await driver.connect()  # stale_after null: up at once, as a barcode reader is
        task = asyncio.create_task(driver.subscribe(batches.append))
        await asyncio.sleep(0)  # one loop turn: the task's first step starts listening
        data = stream(case)
        while data:  # the pty's buffer is a few KB: write what it takes
            data = data[await asyncio.to_thread(os.write, master, data):]

        def every_frame_in() -> bool:
            return driver.frames_ok + driver.frames_bad >= len(good) + bad

        assert await until(every_frame_in, timeout=30), (driver.frames_ok, driver.frames_bad)
        assert (driver.frames_ok, driver.frames_bad) == (len(good), bad)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        await driver.close()
        os.close(master)
        os.close(slave)
    delivered = [b for b in batches if (b.quality == Quality.GOOD).any()]
    # a frame whose every field is BAD looks like a rejected one: compare the others
    shown = [f for f in good if any(not (isinstance(v, dict) and "bad" in v) for v in f.values())]
    assert len(delivered) == len(shown)
    for batch, frame in zip(delivered, shown, strict=True):
        order = np.argsort(batch.tag_ids)
        assert_frame(tags, batch.values[order].tolist(), batch.quality[order].tolist(), frame)


@pytest.mark.parametrize("case", ERRORS, ids=[c["name"] for c in ERRORS])
def test_refused_device_blocks(case: dict[str, Any]) -> None:
    device = device_block("scale_regex") | case["device"]
    with pytest.raises(ConfigError) as info:
        load_config_text(config_text(device), "cfg.yaml")
    problems = info.value.problems
    assert any(case["error"] in p.message for p in problems), [p.message for p in problems]
    paths = [p.path_text for p in problems]
    assert any(path.endswith(case["key"]) for path in paths), paths
    assert all(p.line > 0 for p in problems)
