"""The ``test_counter`` driver: a poll reads every tag's next count."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence

from prometheus_client.core import CounterMetricFamily, Metric

from drivers.base import Driver, PollGroup
from gateway.errors import ConnectionLost
from gateway.types import Quality, SampleBatch
from tests.drivers.throwaway.config import CounterDeviceConfig


class CounterDriver(Driver):
    def __init__(self, config: CounterDeviceConfig, tag_ids: Sequence[int]) -> None:
        super().__init__(config.name, tag_ids, len(config.tags))
        self.config = config
        self.reads = 0
        self.connected = False

    async def connect(self) -> None:
        self.connected = True

    async def close(self) -> None:
        self.connected = False

    def poll_groups(self) -> Sequence[PollGroup]:
        return (PollGroup("default", self.config.poll_interval, self.tag_ids),)

    async def read(self, group: PollGroup) -> SampleBatch:
        if not self.connected:
            raise ConnectionLost("not connected")
        values = [self.config.start + self.reads * tag.step for tag in self.config.tags]
        self.reads += 1
        return SampleBatch.of(self.tag_ids, values, time.time_ns(), Quality.GOOD)


def counter_metrics(drivers: Mapping[str, Driver | None]) -> Iterator[Metric]:
    """``chenxing_test_counter_reads{device}``: polls answered by each counter."""
    reads = CounterMetricFamily("chenxing_test_counter_reads", "Polls answered",
                                labels=["device"])
    for name, driver in drivers.items():
        if isinstance(driver, CounterDriver):
            reads.add_metric([name], driver.reads)
    yield reads
