"""drivers/watchdog.py: one timer per link for the deadline of the request in flight."""

from __future__ import annotations

import asyncio

from drivers.base import PlanCache
from drivers.watchdog import Watchdog
from tests.waiting import until


async def test_a_request_past_its_deadline_expires_and_an_ended_one_does_not() -> None:
    loop = asyncio.get_running_loop()
    expired: list[int] = []
    watchdog = Watchdog(lambda: expired.append(1))
    watchdog.arm(loop, 0.01)
    await until(lambda: expired, "the request armed for expires")
    assert expired == [1]
    watchdog.arm(loop, 0.01)
    watchdog.disarm()  # answered in time
    watchdog.arm(loop, 60.0)  # the next request: the timer moves on, nothing expires
    await until(lambda: watchdog._handle is not None and watchdog._handle.when() > loop.time()
                + 30, "the timer moved on to the next request's deadline")
    assert expired == [1]
    watchdog.stop()
    assert watchdog._handle is None


async def test_a_shorter_timeout_replaces_the_timer_of_a_longer_one() -> None:
    loop = asyncio.get_running_loop()
    expired: list[int] = []
    watchdog = Watchdog(lambda: expired.append(1))
    watchdog.arm(loop, 60.0)
    watchdog.disarm()
    watchdog.arm(loop, 0.01)
    await until(lambda: expired, "the shorter deadline expires")
    watchdog.stop()


def test_a_plan_is_built_once_and_found_by_the_same_or_an_equal_tuple() -> None:
    built: list[tuple[int, ...]] = []

    def build(ids: tuple[int, ...]) -> int:
        built.append(ids)
        return len(built)

    cache: PlanCache[int] = PlanCache(build)
    ids = (1, 2, 3)
    assert cache.get(ids) == cache.get(ids) == cache.get(tuple([1, 2, 3])) == 1
    assert cache.get((4,)) == 2 and built == [(1, 2, 3), (4,)]
    cache.clear()
    assert cache.get(ids) == 3
