"""The mcu_node driver against the simulated node over a real pty pair."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from firmware_bridge.config import McuNodeDeviceConfig
from firmware_bridge.driver import McuNodeDriver
from firmware_bridge.messages import Error
from gateway.backoff import Backoff
from gateway.errors import DeviceUnreachable
from gateway.runtime.device_runner import DeviceRunner, DeviceState
from gateway.types import Quality, SampleBatch
from hil.devices.mcu_node import McuNodeSimulator
from tests.waiting import until

IDS = [10, 11, 12]
CHANNEL_OF_ID = {10: 0, 11: 1, 12: 2}
TAGS: list[dict[str, Any]] = [
    {"name": "vibration", "sensor": "vibration_rms", "unit": "mm/s"},
    {"name": "temperature", "sensor": "temperature", "unit": "degC"},
    {"name": "humidity", "channel": 2, "unit": "%RH"},
]


def node_config(sim: McuNodeSimulator, **kw: Any) -> McuNodeDeviceConfig:
    body = {
        "name": "node",
        "protocol": "mcu_node",
        "port": sim.serial_path,
        "node_id": sim.node_id,
        "sample_interval": "20ms",
        "samples_per_frame": 5,
        "stale_after": "600ms",
        "hello_timeout": "300ms",
        "tags": TAGS,
        **kw,
    }
    return McuNodeDeviceConfig.model_validate(body)


@pytest.fixture
async def sim() -> AsyncIterator[McuNodeSimulator]:
    async with McuNodeSimulator(node_id=7, seed=3) as node:
        yield node


class Collector:
    def __init__(self) -> None:
        self.batches: list[SampleBatch] = []

    def __call__(self, batch: SampleBatch) -> None:
        self.batches.append(batch)

    @property
    def all(self) -> SampleBatch:
        return SampleBatch.concat(self.batches)

    def good_count(self) -> int:
        return int(np.count_nonzero(self.all.quality == Quality.GOOD)) if self.batches else 0


def frame_errors(driver: McuNodeDriver) -> int:
    """Frames that did not decode, whatever the reason."""
    return sum(v for k, v in driver.errors.items() if k.startswith("frame_"))


def assert_values_were_sent(sim: McuNodeSimulator, batch: SampleBatch) -> None:
    """Each tag's values, in order, are a contiguous run of what the node sent on its channel."""
    for tag_id, channel in CHANNEL_OF_ID.items():
        got = batch.values[batch.tag_ids == tag_id].tolist()
        sent = [v for c, _t, v in sim.history if c == channel]
        assert got, f"no samples of tag {tag_id}"
        start = sent.index(got[0])
        assert got == sent[start : start + len(got)]


async def test_readings_arrive_with_values_timestamps_and_settings(
    sim: McuNodeSimulator,
) -> None:
    driver = McuNodeDriver(node_config(sim), IDS)
    out = Collector()
    started = time.time_ns()
    await driver.connect()
    task = asyncio.create_task(driver.subscribe(out))
    try:
        await until(lambda: out.good_count() >= 60)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await driver.close()
    batch = out.all
    assert set(batch.tag_ids.tolist()) == set(IDS)
    assert (batch.quality == Quality.GOOD).all()
    assert_values_were_sent(sim, batch)
    # the node took the settings: 20 ms samples, 5 per frame (15 readings a batch)
    assert sim.settings.sample_interval_ms == 20 and sim.settings.samples_per_frame == 5
    assert {len(b) for b in out.batches[1:]} == {15}
    assert driver.node is not None
    assert {s.name: s.unit for s in driver.node.sensors} == {
        "vibration_rms": "mm/s", "temperature": "degC", "humidity": "%RH"}
    # timestamps: in the past, not before the node was asked for readings (less the one
    # frame it may have buffered), 20 ms apart within a batch
    now = time.time_ns()
    assert (batch.ts_ns <= now).all() and (batch.ts_ns >= started - 1_000_000_000).all()
    temps = out.batches[-1].ts_ns[out.batches[-1].tag_ids == 11]
    assert np.diff(temps).tolist() == [20_000_000] * 4
    assert not any(k.startswith(("frame_", "sequence")) for k in driver.errors)
    assert driver.errors["unit_mismatch"] == 0


async def test_garbage_resync_and_sequence_gap(sim: McuNodeSimulator) -> None:
    driver = McuNodeDriver(node_config(sim), IDS)
    out = Collector()
    await driver.connect()
    task = asyncio.create_task(driver.subscribe(out))
    try:
        await until(lambda: out.good_count() >= 15)
        sim.skip_sequence(5)
        await until(lambda: driver.errors["sequence_gaps"] >= 1)
        gap = len(out.batches)
        await until(lambda: len(out.batches) >= gap + 2)  # the frames after the gap are in order
        assert driver.errors["sequence_gaps"] == 1 and driver.errors["frames_missed"] == 5
        after = len(out.batches)
        for i in range(3):  # each burst between two frames: at least one bad frame each
            sim.inject_garbage(64)
            await until(lambda: len(out.batches) >= after + i + 1)  # noqa: B023 (awaited here)
        await until(lambda: len(out.batches) >= after + 5)
        bad = frame_errors(driver)
        assert bad >= 3
        clean = SampleBatch.concat(out.batches[after:])
        sim.line.garble_answers = 2  # two frames corrupted on the cable: CRC or COBS errors
        await until(lambda: frame_errors(driver) >= bad + 2, "two more bad frames")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await driver.close()
    assert_values_were_sent(sim, clean)  # nothing lost or mangled around the garbage


async def test_silence_goes_stale_and_down_then_recovers(sim: McuNodeSimulator) -> None:
    out = Collector()
    states: list[DeviceState] = []
    runner = DeviceRunner(
        "node",
        lambda: McuNodeDriver(node_config(sim), IDS),
        out,
        lambda _name, state: states.append(state),
        reconnect=Backoff(initial=0.05, maximum=0.1, rng=random.Random(0)),
    )
    task = asyncio.create_task(runner.run())
    try:
        await until(lambda: out.good_count() >= 15)
        sim.silent = True
        await until(lambda: DeviceState.DOWN in states)
        assert runner.stats.last_error is not None and "silent" in runner.stats.last_error
        stale = [b for b in out.batches if (b.quality == Quality.STALE).any()]
        assert stale and set(stale[0].tag_ids.tolist()) == set(IDS)
        assert (stale[0].quality == Quality.STALE).all()
        failures = runner.stats.connect_failures
        await until(lambda: runner.stats.connect_failures >= failures + 2,
                    "two reconnects that find no hello")
        assert runner.stats.state is DeviceState.DOWN  # still down, still stale
        count = out.good_count()
        sim.silent = False
        await until(lambda: runner.stats.state is DeviceState.UP)
        await until(lambda: out.good_count() >= count + 15)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert states[:3] == [DeviceState.UP, DeviceState.DOWN, DeviceState.UP]
    assert runner.driver is not None and runner.driver.errors["silent"] == 1
    qualities = {int(q) for b in out.batches for q in b.quality}
    assert Quality.BAD not in qualities  # away means stale, never bad


async def test_reboot_resets_sequence_and_resends_settings(sim: McuNodeSimulator) -> None:
    driver = McuNodeDriver(node_config(sim), IDS)
    out = Collector()
    await driver.connect()
    task = asyncio.create_task(driver.subscribe(out))
    try:
        await until(lambda: out.good_count() >= 15)
        sim.reboot()
        await until(lambda: sim.configs_applied >= 2)
        count = out.good_count()
        await until(lambda: out.good_count() >= count + 30)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await driver.close()
    assert driver.errors["node_reboots"] == 1
    assert driver.errors["sequence_gaps"] == 0 and driver.errors["sequence_backwards"] == 0
    ts = out.all.ts_ns[out.all.tag_ids == 11]
    assert (np.diff(ts) > 0).all()  # time keeps going forward across the reboot


async def test_refused_settings_are_counted_and_data_flows(sim: McuNodeSimulator) -> None:
    driver = McuNodeDriver(node_config(sim, samples_per_frame=100), IDS)  # the node takes 42
    out = Collector()
    await driver.connect()
    task = asyncio.create_task(driver.subscribe(out))
    try:
        await until(lambda: driver.errors["config_nack"] == 1 and out.good_count() >= 15)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await driver.close()
    assert sim.configs_applied == 0 and sim.settings.samples_per_frame == 5


async def test_unknown_sensor_and_unit_mismatch(sim: McuNodeSimulator) -> None:
    tags = [
        {"name": "vibration", "sensor": "vibration_rms", "unit": "m/s2"},
        {"name": "pressure", "sensor": "pressure", "unit": "bar"},
        {"name": "humidity", "channel": 2, "unit": "%RH"},
    ]
    driver = McuNodeDriver(node_config(sim, tags=tags), IDS)
    out = Collector()
    await driver.connect()
    task = asyncio.create_task(driver.subscribe(out))
    try:
        await until(lambda: out.good_count() >= 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await driver.close()
    assert driver.errors["unit_mismatch"] == 1 and driver.errors["unknown_sensor"] == 1
    first = out.batches[0]
    assert first.tag_ids.tolist() == [11] and first.quality.tolist() == [Quality.BAD]
    assert set(out.all.tag_ids[out.all.quality == Quality.GOOD].tolist()) == {10, 12}


async def test_wrong_node_id_or_missing_port_is_unreachable(sim: McuNodeSimulator) -> None:
    driver = McuNodeDriver(node_config(sim, node_id=8, hello_timeout="1.2s"), IDS)
    with pytest.raises(DeviceUnreachable, match="no HELLO from node 8"):
        await driver.connect()
    assert driver.errors["other_node"] >= 1
    await driver.close()
    missing = McuNodeDriver(node_config(sim, port="/dev/does-not-exist"), IDS)
    with pytest.raises(DeviceUnreachable, match="cannot open serial port"):
        await missing.connect()


async def test_smp_frames_and_unix_time_readings(sim: McuNodeSimulator) -> None:
    from firmware_bridge.messages import FLAG_UNIX_MS, Reading, Readings, ReadingStatus

    driver = McuNodeDriver(node_config(sim), IDS)
    out = Collector()
    await driver.connect()
    task = asyncio.create_task(driver.subscribe(out))
    try:
        await until(lambda: out.good_count() >= 15)
        # MCUmgr SMP frames share the line: set aside, not counted as bad
        sim.send_raw(b"\x06\x09AAoAAAABAAA=\n\x04\x14QUJD\n")
        base_ms = 1_750_000_000_000
        sim.send(Readings(base_ms, (Reading(1, ReadingStatus.OK, 0, 21.5),
                                    Reading(1, ReadingStatus.UNCERTAIN, 250, 22.5)),
                          FLAG_UNIX_MS))
        # the line is one ordered stream: the SMP frames sent first were handled first
        await until(lambda: any(21.5 in b.values for b in out.batches))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await driver.close()
    assert driver.smp_frames == 2
    assert not any(k.startswith("frame_") or k.startswith("sequence") for k in driver.errors)
    batch = next(b for b in out.batches if 21.5 in b.values)
    assert batch.ts_ns.tolist() == [base_ms * 1_000_000, (base_ms + 250) * 1_000_000]
    assert batch.quality.tolist() == [Quality.GOOD, Quality.UNCERTAIN]


async def test_a_port_in_use_is_refused(sim: McuNodeSimulator) -> None:
    first = McuNodeDriver(node_config(sim), IDS)
    await first.connect()
    try:
        second = McuNodeDriver(node_config(sim), IDS)
        with pytest.raises(DeviceUnreachable, match=r"already attached|cannot open serial port"):
            await second.connect()
    finally:
        await first.close()
    again = McuNodeDriver(node_config(sim), IDS)
    await again.connect()  # closed ports are free again
    await again.close()


async def test_a_bug_downstream_ends_the_subscription_as_a_crash(
    sim: McuNodeSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    driver = McuNodeDriver(node_config(sim), IDS)

    def broken(_batch: SampleBatch) -> None:
        raise RuntimeError("bug in the sink")

    await driver.connect()
    try:
        with pytest.raises(RuntimeError, match="bug in the sink"):
            await asyncio.wait_for(driver.subscribe(broken), 3)
    finally:
        await driver.close()


def running_device(sim: McuNodeSimulator, out: Collector,
                   states: list[DeviceState]) -> DeviceRunner:
    return DeviceRunner(
        "node",
        lambda: McuNodeDriver(node_config(sim), IDS),
        out,
        lambda _name, state: states.append(state),
        reconnect=Backoff(initial=0.05, maximum=0.1, rng=random.Random(0)),
    )


@pytest.mark.parametrize("base", [2**63 - 1000, 2**63, 2**64 - 1])
async def test_a_tick_near_2_64_is_counted_and_the_device_keeps_running(
    sim: McuNodeSimulator, base: int
) -> None:
    """A well-formed READINGS whose u64 base tick leapt to the top of its range (issue 20,
    item 7: it crashed the device task). Its readings keep their values, stamped from
    the arrival time; the frames after it still become samples."""
    from firmware_bridge.messages import Reading, Readings, ReadingStatus

    out = Collector()
    states: list[DeviceState] = []
    runner = running_device(sim, out, states)
    task = asyncio.create_task(runner.run())
    try:
        await until(lambda: out.good_count() >= 15)
        sent_ns = time.time_ns()
        sim.send(Readings(base, (Reading(0, ReadingStatus.OK, 0, -123.25),
                                 Reading(0, ReadingStatus.UNCERTAIN, 65535, -124.5),
                                 Reading(1, ReadingStatus.FAULT, 65535, 1.0))))
        await until(lambda: any(-123.25 in b.values for b in out.batches))
        got_ns = time.time_ns()
        after = len(out.batches)
        await until(lambda: len(out.batches) >= after + 4)
        done_ns = time.time_ns()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert runner.stats.crashes == 0 and DeviceState.DOWN not in states
    assert runner.driver is not None
    assert runner.driver.errors["tick_jumps"] == 1
    odd = next(b for b in out.batches if -123.25 in b.values)
    assert odd.tag_ids.tolist() == [10, 10, 11]
    assert odd.values[:2].tolist() == [-123.25, -124.5] and np.isnan(odd.values[2])
    assert odd.quality.tolist() == [Quality.GOOD, Quality.UNCERTAIN, Quality.BAD]
    # the newest reading at its frame's arrival, the first 65535 ticks (1 kHz) before it
    assert sent_ns <= odd.ts_ns[1] <= got_ns and odd.ts_ns[2] == odd.ts_ns[1]
    assert odd.ts_ns[1] - odd.ts_ns[0] == 65_535 * 1_000_000
    later = SampleBatch.concat(out.batches[after:])
    assert (later.quality == Quality.GOOD).all()
    assert_values_were_sent(sim, later)
    assert (later.ts_ns >= sent_ns - 1_000_000_000).all() and (later.ts_ns <= done_ns).all()


@pytest.mark.parametrize("base_ms", [(2**63 - 1) // 1_000_000 - 100, 2**63, 2**64 - 1])
async def test_unix_ms_past_int64_ns_is_counted_and_stamped_on_arrival(
    sim: McuNodeSimulator, base_ms: int
) -> None:
    """FLAG_UNIX_MS with a base whose ns do not fit int64 (after 2262): it crashed the task
    or wrapped to a time before 1970; now the values stay, stamped from the arrival."""
    from firmware_bridge.messages import FLAG_UNIX_MS, Reading, Readings, ReadingStatus

    out = Collector()
    states: list[DeviceState] = []
    runner = running_device(sim, out, states)
    task = asyncio.create_task(runner.run())
    try:
        await until(lambda: out.good_count() >= 15)
        sent_ns = time.time_ns()
        sim.send(Readings(base_ms, (Reading(2, ReadingStatus.OK, 0, -7.5),
                                    Reading(2, ReadingStatus.OK, 250, -8.5)), FLAG_UNIX_MS))
        await until(lambda: any(-7.5 in b.values for b in out.batches))
        got_ns = time.time_ns()
        after = len(out.batches)
        await until(lambda: len(out.batches) >= after + 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert runner.stats.crashes == 0 and DeviceState.DOWN not in states
    assert runner.driver is not None and runner.driver.errors["time_out_of_range"] == 1
    odd = next(b for b in out.batches if -7.5 in b.values)
    assert odd.values.tolist() == [-7.5, -8.5]
    assert sent_ns <= odd.ts_ns[1] <= got_ns and odd.ts_ns[1] - odd.ts_ns[0] == 250_000_000
    assert_values_were_sent(sim, SampleBatch.concat(out.batches[after:]))


async def test_a_node_repeating_errors_and_reboots_is_logged_once_each_and_counted(
    sim: McuNodeSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing sensor reports an error per reading, a browning-out node reboots over and
    over: the first of each, then a summary (here at close), every one counted."""
    caplog.set_level(logging.INFO, "firmware_bridge.driver")
    driver = McuNodeDriver(node_config(sim), IDS)
    out = Collector()
    await driver.connect()
    task = asyncio.create_task(driver.subscribe(out))
    try:
        await until(lambda: out.good_count() >= 5)
        for _ in range(30):
            sim.send(Error(0x0102, 1, "sensor not responding"))
        for _ in range(5):
            sim.send(Error(0x0201, 0xFF, "flash write failed"))
        await until(lambda: driver.errors["node_error"] == 35)
        for n in range(1, 4):
            sim.reboot()
            await until(lambda n=n: driver.errors["node_reboots"] == n)  # type: ignore[misc]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await driver.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings[:3] == [
        "node: node 7 error: 0x0102 on channel 1: sensor not responding",
        "node: node 7 error: 0x0201: flash write failed",
        "node: node 7 rebooted: its sequence started again at 0",
    ]
    assert sorted(re.sub(r"last \d+ s", "last N s", w) for w in warnings[3:]) == [
        "node: node 7 error 29 more times in the last N s: 0x0102 on channel 1: "
        "sensor not responding",
        "node: node 7 error 4 more times in the last N s: 0x0201: flash write failed",
        "node: node 7 rebooted 2 more times in the last N s: its sequence started again at 0",
    ]
