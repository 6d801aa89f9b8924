"""A driver picks its tags' quality while a lost connection is away (``quality_while_lost``)."""

from __future__ import annotations

import asyncio

from gateway.errors import ConnectionLost, DeviceUnreachable
from gateway.runtime.device_runner import DeviceRunner
from gateway.types import Quality, SampleBatch
from tests.gateway.test_device_runner import ScriptedDriver, fast
from tests.waiting import until


class StaleWhenLost(ScriptedDriver):
    """Refuses the first connect and the two after the loss."""

    quality_while_lost = Quality.STALE

    def __init__(self, script: list[object]) -> None:
        super().__init__(0, script)
        self.attempts = 0

    async def connect(self) -> None:
        self.attempts += 1
        if self.attempts in (1, 3, 4):
            raise DeviceUnreachable("connection refused")


async def test_gap_after_a_lost_connection_has_the_drivers_quality_never_bad() -> None:
    qualities: list[int] = []

    def sink(batch: SampleBatch) -> None:
        qualities.extend(int(q) for q in batch.quality)

    # never connected yet: BAD; then connected, lost, two refused reconnects: STALE
    driver = StaleWhenLost([1.0, ConnectionLost("reset by peer"), 2.0])
    runner = DeviceRunner("dev", lambda: driver, sink, reconnect=fast(), crash_restart=fast())
    task = asyncio.create_task(runner.run())
    await until(lambda: driver.attempts == 5 and qualities[-1:] == [Quality.GOOD],
                "a good sample after the second connection", seen=lambda: qualities)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    assert qualities[0] == Quality.BAD  # before the first connection
    first_good = qualities.index(Quality.GOOD)
    first_stale = qualities.index(Quality.STALE)
    assert first_good < first_stale
    gap = qualities[first_stale : qualities.index(Quality.GOOD, first_stale)]
    assert gap and set(gap) == {Quality.STALE}
    assert runner.stats.connection_losses == 1 and runner.stats.connect_failures == 3
