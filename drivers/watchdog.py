"""The deadline of the one request in flight on a link, kept by one timer per link.

A driver that sends thousands of requests a second would otherwise push a timer onto the
event loop's heap and cancel it for every request. :class:`Watchdog` keeps one timer and
moves it on to the current deadline when it fires early; the link says when a request
starts (:meth:`Watchdog.arm`) and ends (:meth:`Watchdog.disarm`), and the callback given
at construction runs when a request outlives its deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["Watchdog"]


class Watchdog:
    """``expire()`` runs when the request armed for is still in flight at its deadline."""

    __slots__ = ("_deadline", "_expire", "_handle", "_waiting")

    def __init__(self, expire: Callable[[], None]) -> None:
        self._expire = expire
        self._handle: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._waiting = False

    def arm(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        """A request starts: it expires ``timeout`` s from now."""
        self._waiting = True
        self._deadline = deadline = loop.time() + timeout
        handle = self._handle
        if handle is not None and handle.when() > deadline:
            handle.cancel()  # a shorter timeout than the one it waits for
            handle = None
        if handle is None:
            self._handle = loop.call_at(deadline, self._fire)

    def disarm(self) -> None:
        """The request ended (answered, failed or cancelled): nothing expires."""
        self._waiting = False

    def stop(self) -> None:
        """The link closed: no timer is left on the loop."""
        self._waiting = False
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.cancel()

    def _fire(self) -> None:
        self._handle = None
        if not self._waiting:
            return  # idle: the next request arms it again
        loop = asyncio.get_running_loop()
        if loop.time() >= self._deadline:
            self._waiting = False
            self._expire()
        else:
            self._handle = loop.call_at(self._deadline, self._fire)
