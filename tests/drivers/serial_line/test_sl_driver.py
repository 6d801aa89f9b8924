"""The serial_line driver against the simulated scale on a real pty pair, in both modes."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from drivers.serial_line.config import SerialLineDeviceConfig
from drivers.serial_line.driver import SerialLineDriver
from gateway.backoff import Backoff
from gateway.errors import ConnectionLost, DeviceUnreachable
from gateway.runtime.device_runner import DeviceRunner, DeviceState
from gateway.types import Quality, SampleBatch
from hil.devices.scale import ScaleReading, ScaleSimulator
from tests.waiting import until

IDS = [20, 21, 22, 23]
WEIGHT, STABLE, NET, UNIT = IDS
REGEX = r"(?P<stable>ST|US),(?P<mode>GS|NT),(?P<weight>[+-]\d+\.\d+) (?P<unit>\w+)"


def scale_config(sim: ScaleSimulator, **kw: Any) -> SerialLineDeviceConfig:
    body: dict[str, Any] = {
        "name": "scale",
        "protocol": "serial_line",
        "port": sim.serial_path,
        "framing": {"terminator": r"\r\n", "max_frame": 64},
        "parser": {"regex": REGEX},
        "stale_after": "2s",  # tests of silence use 600ms
        "tags": [
            {"name": "weight", "type": "float64", "field": "weight", "unit": "kg"},
            {"name": "stable", "type": "bool", "field": "stable", "map": {"ST": True, "US": False}},
            {"name": "net", "type": "bool", "field": "mode", "map": {"NT": True, "GS": False}},
            {"name": "unit", "type": "string", "field": "unit"},
        ],
    }
    if sim.mode == "poll":
        body |= {"mode": "poll", "poll_command": r"SI\r\n", "poll_interval": "20ms",
                 "response_timeout": "200ms"}
    return SerialLineDeviceConfig.model_validate(body | kw)


class Collector:
    def __init__(self) -> None:
        self.batches: list[SampleBatch] = []

    def __call__(self, batch: SampleBatch) -> None:
        self.batches.append(batch)

    @property
    def all(self) -> SampleBatch:
        return SampleBatch.concat(self.batches)

    def count(self, quality: Quality, tag: int = WEIGHT) -> int:
        if not self.batches:
            return 0
        b = self.all
        return int(np.count_nonzero((b.quality == quality) & (b.tag_ids == tag)))

    def last_quality(self, tag: int = WEIGHT) -> Quality | None:
        for batch in reversed(self.batches):
            hit = np.flatnonzero(batch.tag_ids == tag)
            if len(hit):
                return Quality(int(batch.quality[hit[-1]]))
        return None


def readings_of(collector: Collector) -> list[ScaleReading]:
    """The good frames received, as the readings they stand for."""
    out = []
    for b in collector.batches:
        if len(b) == len(IDS) and (b.quality == Quality.GOOD).all():
            weight, stable, net, unit = b.values.tolist()
            out.append(ScaleReading(bool(stable), bool(net), weight, unit))
    return out


def assert_contiguous_run_of_sent(sim: ScaleSimulator, got: list[ScaleReading]) -> None:
    sent = list(sim.history)
    assert got, "no good frames"
    for start in range(len(sent)):
        if sent[start : start + len(got)] == got:
            return
    raise AssertionError(f"received readings are not what the scale sent: {got[:5]}...")


def fast_runner(driver: SerialLineDriver, sink: Collector) -> DeviceRunner:
    return DeviceRunner(
        "scale", lambda: driver, sink,
        reconnect=Backoff(initial=0.05, maximum=0.2, rng=random.Random(0)),
    )


@pytest.fixture
async def stream_sim() -> AsyncIterator[ScaleSimulator]:
    async with ScaleSimulator(mode="stream", rate=50, seed=4) as sim:
        yield sim


@pytest.fixture
async def poll_sim() -> AsyncIterator[ScaleSimulator]:
    async with ScaleSimulator(mode="poll", seed=5) as sim:
        yield sim


async def test_stream_mode_delivers_every_line_as_sent(stream_sim: ScaleSimulator) -> None:
    driver = SerialLineDriver(scale_config(stream_sim), IDS)
    got = Collector()
    started = time.time_ns()
    await driver.connect()
    task = asyncio.create_task(driver.subscribe(got))
    try:
        await until(lambda: driver.frames_ok >= 30)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await driver.close()
    readings = readings_of(got)
    assert_contiguous_run_of_sent(stream_sim, readings)
    assert {r.stable for r in readings} == {True, False}  # parts placed and settling
    assert driver.frames_bad == 0 and not driver.errors
    ts = got.all.ts_ns
    assert (np.diff(ts) >= 0).all() and started <= ts[0] and ts[-1] <= time.time_ns()


async def test_poll_mode_answers_each_request(poll_sim: ScaleSimulator) -> None:
    driver = SerialLineDriver(scale_config(poll_sim), IDS)
    await driver.connect()
    (group,) = driver.poll_groups()
    got = Collector()
    try:
        for _ in range(15):
            got(await driver.read(group))
    finally:
        await driver.close()
    readings = readings_of(got)
    assert len(readings) == 15
    assert readings == list(poll_sim.history)[-15:]
    assert poll_sim.commands_received == 15 and poll_sim.unknown_commands == 0


async def test_garbage_and_partial_lines_resync_with_bad_quality_and_counters(
    stream_sim: ScaleSimulator,
) -> None:
    driver = SerialLineDriver(scale_config(stream_sim), IDS)
    got = Collector()
    await driver.connect()
    task = asyncio.create_task(driver.subscribe(got))
    try:
        await until(lambda: driver.frames_ok >= 5)
        stream_sim.inject_garbage(20)  # spoils the next line
        await until(lambda: driver.frames_bad >= 1)
        ok = driver.frames_ok
        await until(lambda: driver.frames_ok >= ok + 5)
        stream_sim.send_partial_line()  # the next line runs into it
        await until(lambda: driver.frames_bad >= 2)
        stream_sim.send_raw(b"\x07" * 200)  # no terminator, longer than max_frame
        await until(lambda: driver.errors["frame_overflow"] >= 1)
        ok = driver.frames_ok
        await until(lambda: driver.frames_ok >= ok + 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await driver.close()
    assert driver.errors["frame_decode"] == 1  # the garbage is not ASCII
    assert driver.errors["frame_no_match"] == 1  # half a line glued to a whole one
    assert driver.errors["bytes_discarded"] >= 20 + 200
    assert got.count(Quality.BAD) >= 2
    assert got.last_quality() is Quality.GOOD  # resynchronised
    assert_contiguous_run_of_sent(stream_sim, readings_of(got)[-5:])


async def test_wrong_baud_rate_is_bad_then_down_with_the_reason(
    stream_sim: ScaleSimulator,
) -> None:
    driver = SerialLineDriver(scale_config(stream_sim, stale_after="600ms"), IDS)
    got = Collector()
    runner = fast_runner(driver, got)
    task = asyncio.create_task(runner.run())
    try:
        await until(lambda: driver.frames_ok >= 5)
        stream_sim.wrong_baud = 2400  # the scale was set to 9600, we read at 2400
        await until(lambda: runner.stats.state is DeviceState.DOWN)
        assert got.last_quality() is Quality.BAD  # garbage is bad, not stale
        assert driver.errors["no_valid_frame"] >= 1
        await until(lambda: "check baud rate" in (runner.stats.last_error or ""))
        stream_sim.wrong_baud = None
        await until(lambda: runner.stats.state is DeviceState.UP)
        await until(lambda: got.last_quality() is Quality.GOOD)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert got.count(Quality.STALE) == 0
    assert driver.errors["reconnects"] >= 1


async def test_poll_answers_at_a_wrong_baud_rate_are_bad(poll_sim: ScaleSimulator) -> None:
    driver = SerialLineDriver(scale_config(poll_sim, stale_after="600ms"), IDS)
    got = Collector()
    runner = fast_runner(driver, got)
    task = asyncio.create_task(runner.run())
    try:
        await until(lambda: driver.frames_ok >= 5)
        poll_sim.wrong_baud = 2400  # answers arrive, but as a few scrambled bytes each
        await until(lambda: got.last_quality() is Quality.BAD)
        await until(lambda: runner.stats.state is DeviceState.DOWN)
        assert driver.errors["frame_incomplete"] >= 1
        poll_sim.wrong_baud = None
        await until(lambda: got.last_quality() is Quality.GOOD)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert got.count(Quality.STALE) == 0


async def test_silent_scale_goes_stale_and_down_then_recovers(
    stream_sim: ScaleSimulator,
) -> None:
    driver = SerialLineDriver(scale_config(stream_sim, stale_after="600ms"), IDS)
    got = Collector()
    runner = fast_runner(driver, got)
    task = asyncio.create_task(runner.run())
    try:
        await until(lambda: driver.frames_ok >= 5)
        stream_sim.silent = True
        await until(lambda: got.last_quality() is Quality.STALE)
        assert runner.stats.state is DeviceState.DOWN
        assert driver.errors["silent"] == 1
        # reconnects hear nothing: still down, still stale, with the reason
        await until(lambda: "nothing received" in (runner.stats.last_error or ""))
        assert runner.stats.state is DeviceState.DOWN
        assert got.last_quality() is Quality.STALE
        stream_sim.silent = False
        await until(lambda: got.last_quality() is Quality.GOOD)
        assert runner.stats.state is DeviceState.UP
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert got.count(Quality.BAD) == 0


async def test_poll_timeouts_then_stale_then_recovery(poll_sim: ScaleSimulator) -> None:
    driver = SerialLineDriver(scale_config(poll_sim, stale_after="600ms"), IDS)
    got = Collector()
    runner = fast_runner(driver, got)
    task = asyncio.create_task(runner.run())
    try:
        await until(lambda: driver.frames_ok >= 5)
        poll_sim.silent = True
        await until(lambda: got.last_quality() is Quality.STALE)
        assert driver.errors["timeout"] >= 2 and driver.errors["silent"] == 1
        poll_sim.silent = False
        await until(lambda: got.last_quality() is Quality.GOOD)
        assert runner.stats.state is DeviceState.UP
        poll_sim.inject_garbage(10)  # an unsolicited burst between polls is not an answer
        ok = driver.frames_ok
        await until(lambda: driver.frames_ok >= ok + 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert got.last_quality() is Quality.GOOD


async def test_port_vanishes_then_reconnects_with_backoff(stream_sim: ScaleSimulator) -> None:
    driver = SerialLineDriver(scale_config(stream_sim), IDS)
    got = Collector()
    runner = fast_runner(driver, got)
    task = asyncio.create_task(runner.run())
    try:
        await until(lambda: driver.frames_ok >= 5)
        stream_sim.unplug()
        await until(lambda: runner.stats.state is DeviceState.DOWN)
        assert driver.errors["connection_lost"] == 1
        await until(lambda: runner.stats.connect_failures >= 2)  # retried with backoff
        assert "cannot open serial port" in (runner.stats.last_error or "")
        stream_sim.replug()
        ok = driver.frames_ok
        await until(lambda: driver.frames_ok >= ok + 5)
        assert runner.stats.state is DeviceState.UP
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert runner.stats.crashes == 0
    assert driver.errors["reconnects"] == 1
    assert got.last_quality() is Quality.GOOD


async def test_missing_port_and_a_port_in_use_are_unreachable(
    stream_sim: ScaleSimulator,
) -> None:
    config = scale_config(stream_sim, port=stream_sim.serial_path + "-missing")
    with pytest.raises(DeviceUnreachable, match="cannot open serial port"):
        await SerialLineDriver(config, IDS).connect()
    first = SerialLineDriver(scale_config(stream_sim), IDS)
    await first.connect()
    try:
        with pytest.raises(DeviceUnreachable, match="cannot open serial port"):
            await SerialLineDriver(scale_config(stream_sim), IDS).connect()
    finally:
        await first.close()
        await first.close()  # safe twice
    with pytest.raises(ConnectionLost):
        await first.subscribe(lambda _b: None)


async def test_struct_frames_between_stx_and_etx(stream_sim: ScaleSimulator) -> None:
    """A binary analyzer: the same driver with start/end framing and a struct format."""
    config = scale_config(
        stream_sim, stale_after=None, framing={"start": r"\x02", "end": r"\x03"},
        parser={"struct": ">Hh"}, encoding="latin-1",
        tags=[{"name": "sample", "type": "uint16", "field": 0},
              {"name": "temp", "type": "float64", "field": 1, "scale": 0.1}],
    )
    stream_sim.silent = True  # only our frames on the line
    driver = SerialLineDriver(config, [1, 2])
    got = Collector()
    await driver.connect()  # no stale_after: does not wait for a first frame
    task = asyncio.create_task(driver.subscribe(got))
    try:
        stream_sim.silent = False
        stream_sim.send_raw(b"junk\x02\x00\x07\xff\x38\x03\x02\x00\x08\x01\x2c\x03")
        stream_sim.silent = True
        await until(lambda: driver.frames_ok >= 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await driver.close()
    values = got.all.values.tolist()
    assert values == [7.0, -200.0, 8.0, 300.0]
    assert driver.errors["bytes_discarded"] >= 4


async def test_a_bug_downstream_ends_the_subscription_as_a_crash(
    stream_sim: ScaleSimulator,
) -> None:
    # no stale_after: connect holds no first frame, the failure comes from the port's reader
    driver = SerialLineDriver(scale_config(stream_sim, stale_after=None), IDS)

    def broken_sink(_batch: SampleBatch) -> None:
        raise RuntimeError("bug in the sink")

    await driver.connect()
    try:
        with pytest.raises(RuntimeError, match="bug in the sink"):
            await asyncio.wait_for(driver.subscribe(broken_sink), 5)
    finally:
        await driver.close()
