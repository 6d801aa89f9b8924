"""Waiting for a condition, the one way tests wait.

A test never sleeps a fixed time and then asserts: on a loaded 2-core box any fixed
time is too short now and then, on an idle one it is time wasted. It waits for the
very condition it is about to assert, checked every ``interval`` seconds; the
``timeout`` only bounds a failure, so it is generous and never part of what is tested.
When the condition does not come, the test fails with the description of what was
awaited and, if given, what was seen last.

:func:`until` is for tests on the event loop (the predicate may be a coroutine
function, e.g. an HTTP request); :func:`wait_until` is its twin for thread-based code.
Both return the predicate's first truthy value, so ``msg = await until(find_it)``
hands over what was found.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

#: seconds; a bound for failures only: a condition that holds takes what it takes
TIMEOUT = 30.0
INTERVAL = 0.02


class ConditionTimeout(AssertionError):
    """The awaited condition did not hold within the timeout."""


def _describe(predicate: Callable[..., Any], what: str | None) -> str:
    if what:
        return what
    name = getattr(predicate, "__qualname__", repr(predicate))
    code = getattr(predicate, "__code__", None)
    if code is not None:
        name += f" ({code.co_filename.rpartition('/')[2]}:{code.co_firstlineno})"
    return name


def _failure(
    predicate: Callable[..., Any], what: str | None, timeout: float, seen: Callable[[], Any] | None
) -> ConditionTimeout:
    message = f"not within {timeout:g} s: {_describe(predicate, what)}"
    if seen is not None:
        message += f"; last seen: {seen()!r}"
    return ConditionTimeout(message)


@overload
async def until(
    predicate: Callable[[], Awaitable[T | None]],
    what: str | None = None,
    *,
    timeout: float = TIMEOUT,
    interval: float = INTERVAL,
    seen: Callable[[], Any] | None = None,
) -> T: ...


@overload
async def until(
    predicate: Callable[[], T | None],
    what: str | None = None,
    *,
    timeout: float = TIMEOUT,
    interval: float = INTERVAL,
    seen: Callable[[], Any] | None = None,
) -> T: ...


async def until(
    predicate: Callable[[], Any],
    what: str | None = None,
    *,
    timeout: float = TIMEOUT,
    interval: float = INTERVAL,
    seen: Callable[[], Any] | None = None,
) -> Any:
    """The first truthy value of ``predicate()``, checked every ``interval`` s.

    Raises :class:`ConditionTimeout` (an ``AssertionError``) naming ``what`` (or the
    predicate) and ``seen()`` when nothing truthy came within ``timeout`` s.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() >= deadline:
            raise _failure(predicate, what, timeout, seen)
        await asyncio.sleep(interval)  # polling: the condition decides, not this interval


def wait_until(
    predicate: Callable[[], T | None],
    what: str | None = None,
    *,
    timeout: float = TIMEOUT,
    interval: float = INTERVAL,
    seen: Callable[[], Any] | None = None,
) -> T:
    """:func:`until` for code that runs in threads: blocks the calling thread."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise _failure(predicate, what, timeout, seen)
        time.sleep(interval)  # polling: the condition decides, not this interval
