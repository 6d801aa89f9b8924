"""Device supervision logic: crash restarts with backoff, isolation, reconnects, qualities.

The driver here is scripted (a unit test of the runner's pure logic); the same
behaviour against a real Modbus server is in tests/integration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from drivers.base import Driver, PollGroup
from gateway.backoff import Backoff
from gateway.errors import ConnectionLost, DeviceUnreachable
from gateway.runtime.device_runner import DeviceRunner, DeviceState
from gateway.types import Quality, SampleBatch
from tests.waiting import until


class ScriptedDriver(Driver):
    """Polls one tag; ``script`` says what each read does: a value, or an exception."""

    def __init__(self, tag_id: int, script: list[object], connect_failures: int = 0) -> None:
        super().__init__("dev", [tag_id])
        self.script = script
        self.connect_failures = connect_failures
        self.closed = 0

    async def connect(self) -> None:
        if self.connect_failures:
            self.connect_failures -= 1
            raise DeviceUnreachable("connection refused")

    async def close(self) -> None:
        self.closed += 1

    def poll_groups(self) -> Sequence[PollGroup]:
        return [PollGroup("default", 0.01, self.tag_ids)]

    async def read(self, group: PollGroup) -> SampleBatch:
        step = self.script.pop(0) if self.script else 1.0
        if isinstance(step, BaseException):
            raise step
        return SampleBatch.of(self.tag_ids, [step], 0)


def fast() -> Backoff:
    return Backoff(initial=0.01, maximum=0.02, rng=random.Random(0))


async def test_crash_is_counted_and_restarted_and_other_devices_keep_polling() -> None:
    received: dict[int, list[tuple[float, int]]] = {0: [], 1: []}

    def sink(batch: SampleBatch) -> None:
        for t, v, q in zip(batch.tag_ids, batch.values, batch.quality, strict=True):
            received[int(t)].append((float(v), int(q)))

    drivers_built: list[ScriptedDriver] = []

    def crashing() -> ScriptedDriver:
        # the first driver has a bug on its second read; the rebuilt one is fine
        script: list[object] = [1.0, KeyError("bug")] if not drivers_built else []
        drivers_built.append(ScriptedDriver(0, script))
        return drivers_built[-1]

    bad = DeviceRunner("bad", crashing, sink, reconnect=fast(), crash_restart=fast())
    good = DeviceRunner("good", lambda: ScriptedDriver(1, []), sink, reconnect=fast(),
                        crash_restart=fast())
    tasks = [asyncio.create_task(bad.run()), asyncio.create_task(good.run())]

    def restarted() -> bool:  # the rebuilt driver polls: a good sample after the bad ones
        marks = [q for _, q in received[0]]
        return Quality.BAD in marks and marks[-1] == Quality.GOOD and len(received[1]) > 10

    await until(restarted, "the crashed device polling again, the other one all along",
                seen=lambda: received)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    assert bad.stats.crashes == 1 and "KeyError" in (bad.stats.last_error or "")
    assert len(drivers_built) == 2 and drivers_built[0].closed >= 1  # rebuilt after the crash
    crash_marks = [v for v, q in received[0] if q == Quality.BAD]
    assert crash_marks and all(np.isnan(crash_marks))  # its tags went bad, with no value
    assert received[0][-1] == (1.0, Quality.GOOD)  # polling again after the restart
    assert good.stats.crashes == 0 and len(received[1]) > 10  # never held up
    assert bad.stats.state is DeviceState.STOPPED and good.stats.state is DeviceState.STOPPED


async def test_unreachable_device_backs_off_then_connects() -> None:
    qualities: list[int] = []
    states: list[DeviceState] = []
    runner = DeviceRunner(
        "dev",
        lambda: ScriptedDriver(0, [], connect_failures=3),
        lambda b: qualities.extend(b.quality.tolist()),
        on_state_change=lambda _n, s: states.append(s),
        reconnect=fast(),
    )
    task = asyncio.create_task(runner.run())
    await until(lambda: runner.stats.connects and qualities[-1:] == [Quality.GOOD],
                "a good sample after the connect", seen=lambda: runner.stats)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert runner.stats.connect_failures == 3 and runner.stats.connects == 1
    assert states[:2] == [DeviceState.DOWN, DeviceState.UP]
    assert qualities[0] == Quality.BAD and qualities[-1] == Quality.GOOD


async def test_connection_lost_marks_bad_and_reconnects() -> None:
    qualities: list[int] = []
    runner = DeviceRunner(
        "dev",
        lambda: ScriptedDriver(0, [1.0, ConnectionLost("reset by peer"), 2.0]),
        lambda b: qualities.extend(b.quality.tolist()),
        reconnect=fast(),
    )
    task = asyncio.create_task(runner.run())
    await until(lambda: runner.stats.connects == 2 and qualities[-1:] == [Quality.GOOD],
                "a good sample after the reconnect", seen=lambda: runner.stats)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert runner.stats.connection_losses == 1 and runner.stats.connects == 2
    assert runner.stats.crashes == 0
    first_bad = qualities.index(Quality.BAD)
    assert qualities[:first_bad] == [Quality.GOOD] and Quality.GOOD in qualities[first_bad:]


class LinkDropsOnCue(ScriptedDriver):
    """A read that waits until the test drops the link."""

    def __init__(self) -> None:
        super().__init__(0, [])
        self.reading = asyncio.Event()
        self.link: asyncio.Future[None] | None = None

    async def read(self, group: PollGroup) -> SampleBatch:
        self.link = asyncio.get_running_loop().create_future()
        self.reading.set()
        await self.link
        return SampleBatch.of(self.tag_ids, [1.0], 0)


async def test_connection_lost_at_the_moment_of_shutdown_still_stops() -> None:
    driver = LinkDropsOnCue()
    runner = DeviceRunner("dev", lambda: driver, lambda b: None, reconnect=fast())
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(driver.reading.wait(), 2)
    assert driver.link is not None
    driver.link.set_exception(ConnectionLost("peer reset"))  # the link drops...
    task.cancel()  # ...in the same instant as the stop signal
    done, _ = await asyncio.wait([task], timeout=2)
    assert task in done, "the device task kept running after it was cancelled"
    assert task.cancelled()
    assert runner.stats.state is DeviceState.STOPPED


async def test_a_device_breaking_every_connection_is_reconnected_ever_more_slowly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """It connects, then its first answer breaks the connection, again and again: the
    backoff restarts only once a value came; the losses are one WARNING (then summaries)."""
    caplog.set_level(logging.DEBUG, "gateway.runtime.device_runner")
    losses = [ConnectionLost("dev: garbled answer; closed") for _ in range(6)]
    backoff = Backoff(initial=0.01, maximum=10.0, jitter=0.0)
    attempts_at_loss: list[int] = []
    value_came = asyncio.Event()

    def sink(batch: SampleBatch) -> None:
        if batch.quality[0] == Quality.GOOD:
            value_came.set()
        else:  # all tags BAD after a loss, before the reconnect delay
            attempts_at_loss.append(backoff.attempts)

    runner = DeviceRunner("dev", lambda: ScriptedDriver(0, [*losses, 3.0]), sink,
                          reconnect=backoff)  # fmt: skip
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(value_came.wait(), 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    # 0.01, 0.02, 0.04, ... s: each connect did not reset the backoff, the value did
    assert attempts_at_loss == [0, 1, 2, 3, 4, 5] and backoff.attempts == 0
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    assert lines[:2] == [
        ("INFO", "device dev: connected"),
        ("WARNING", "device dev: connection lost: dev: garbled answer; closed; reconnecting"),
    ]
    assert len(lines) == 3 and lines[2][0] == "INFO"
    assert re.fullmatch(r"device dev: connected and reading values again "
                        r"\(after 6 failures in \d+ s\)", lines[2][1])


def test_prepare_builds_the_driver_before_the_task_runs() -> None:
    """The gateway builds every driver (its request plans) before any device connects; a
    factory that fails leaves it to run(), which logs, counts and retries."""
    built: list[int] = []

    def factory() -> Any:
        built.append(1)
        return object()

    runner = DeviceRunner("dev", factory, lambda _b: None)
    runner.prepare()
    runner.prepare()  # once
    assert built == [1] and runner.driver is not None

    def broken() -> Any:
        raise ValueError("no plan")

    failing = DeviceRunner("bad", broken, lambda _b: None)
    failing.prepare()
    assert failing.driver is None


class SwallowingDriver(ScriptedDriver):
    """Its connect swallows a cancellation, as Python 3.11's ``asyncio.wait_for`` does when
    the awaited connect finishes at the moment of the cancel (pymodbus connects so)."""

    def __init__(self) -> None:
        super().__init__(0, [])
        self.connecting = asyncio.Event()

    async def connect(self) -> None:
        self.connecting.set()
        with contextlib.suppress(asyncio.CancelledError):  # returns as if it connected
            await asyncio.sleep(10)


async def test_a_cancel_swallowed_by_a_driver_still_stops_the_runner() -> None:
    driver = SwallowingDriver()
    runner = DeviceRunner("dev", lambda: driver, lambda _b: None, reconnect=fast())
    task = asyncio.create_task(runner.run())
    await driver.connecting.wait()
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    assert done, "the runner went on polling after its cancel"
    assert runner.stats.state is DeviceState.STOPPED and runner.stats.polls == 0
