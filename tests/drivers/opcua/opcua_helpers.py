"""Helpers of the OPC UA driver tests: device configs and a batch collector."""

from __future__ import annotations

from typing import Any

import numpy as np

from drivers.opcua.config import OpcUaDeviceConfig
from drivers.opcua.driver import OpcUaDriver
from gateway.types import SampleBatch


def device(endpoint: str, tags: list[dict[str, Any]], **kw: Any) -> OpcUaDeviceConfig:
    body: dict[str, Any] = {
        "name": "plc",
        "protocol": "opcua",
        "endpoint": endpoint,
        "publishing_interval": "100ms",
        "poll_interval": "100ms",
        "timeout": "2s",
        "watchdog_interval": "500ms",
        "tags": tags,
        **kw,
    }
    return OpcUaDeviceConfig.model_validate(body)


def driver(config: OpcUaDeviceConfig) -> OpcUaDriver:
    return OpcUaDriver(config, list(range(len(config.tags))))


class Collector:
    """Records emitted batches; ``samples(tag_id)`` gives (value, ts_ns, quality) tuples."""

    def __init__(self) -> None:
        self.batches: list[SampleBatch] = []

    def __call__(self, batch: SampleBatch) -> None:
        self.batches.append(batch)

    def samples(self, tag_id: int) -> list[tuple[Any, int, int]]:
        out = []
        for b in self.batches:
            for i in np.flatnonzero(b.tag_ids == tag_id):
                out.append((b.values[i], int(b.ts_ns[i]), int(b.quality[i])))
        return out

    def latest(self, tag_id: int) -> tuple[Any, int, int] | None:
        s = self.samples(tag_id)
        return s[-1] if s else None

    def quality(self, tag_id: int) -> int | None:
        s = self.latest(tag_id)
        return None if s is None else s[2]

    def value(self, tag_id: int) -> Any:
        s = self.latest(tag_id)
        return None if s is None else s[0]
