"""The gateway moves long-lived objects out of the garbage collector's sight twice: once
started, and once every device has tried its first connect (issue 21: the connections of
1,000 devices, left in sight, made each full collection a pause of 100-400 ms). The
collector, off while start-up builds them, is on again from the first freeze, without
automatic full collections until the second (they would walk the connections)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from gateway.cli.main import NO_FULL_COLLECTION, _freeze_when_started
from gateway.runtime.device_runner import DeviceState, DeviceStats
from tests.waiting import until


@pytest.fixture
def thresholds() -> Iterator[tuple[int, int, int]]:
    """The collector's thresholds before; off, as ``run`` leaves it for start-up; as it was
    after the test."""
    before = gc.get_threshold()
    gc.disable()
    yield before
    gc.unfreeze()
    gc.enable()
    gc.set_threshold(*before)


async def test_objects_made_by_the_first_connects_are_frozen_once_every_device_tried(
        thresholds: tuple[int, int, int]) -> None:
    runners = {n: SimpleNamespace(stats=DeviceStats()) for n in ("a", "b")}
    gateway = SimpleNamespace(built=asyncio.Event(), started=asyncio.Event(), runners=runners)
    task = asyncio.create_task(_freeze_when_started(gateway, check_every=0.01))  # type: ignore[arg-type]  # the attributes it reads
    try:
        gateway.built.set()
        await until(lambda: gc.get_freeze_count() > 0, "the first freeze")
        assert gc.isenabled()  # collecting again once start-up's objects are frozen
        assert gc.get_threshold()[:2] == thresholds[:2]  # the young generations as always
        assert gc.get_threshold()[2] == NO_FULL_COLLECTION  # no full one until the second
        gateway.started.set()  # the devices started
        connection = [[object()] for _ in range(1000)]  # what a connect builds, long-lived
        runners["a"].stats.state = DeviceState.UP
        await asyncio.sleep(0.05)
        assert not task.done()  # device b has not tried yet
        assert any(o is connection for o in gc.get_objects())  # still in sight
        runners["b"].stats.state = DeviceState.DOWN
        await until(task.done, "the second freeze")
        assert not any(o is connection for o in gc.get_objects())  # frozen: out of sight
        assert gc.get_threshold() == thresholds
    finally:
        task.cancel()


async def test_thresholds_come_back_when_stopped_before_the_second_freeze(
        thresholds: tuple[int, int, int]) -> None:
    gateway = SimpleNamespace(built=asyncio.Event(), started=asyncio.Event(), runners={})
    task = asyncio.create_task(_freeze_when_started(gateway))  # type: ignore[arg-type]  # the attributes it reads
    gateway.built.set()
    await until(lambda: gc.get_threshold()[2] == NO_FULL_COLLECTION, "the first freeze")
    task.cancel()  # the gateway stopped while starting
    await asyncio.gather(task, return_exceptions=True)
    assert gc.get_threshold() == thresholds
