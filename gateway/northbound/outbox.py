"""Messages waiting for the broker's acknowledgement.

:class:`Outbox` is the seam for store-and-forward: a message enters before it
is published and leaves only when acknowledged. :class:`MemoryOutbox` keeps
them in RAM (lost on a process kill); the disk spool replaces it with the same
interface.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass

from gateway.northbound.message import OutboundMessage


@dataclass(slots=True)
class OutboxStats:
    queued: int = 0
    inflight: int = 0
    dropped: int = 0
    dropped_samples: int = 0


class Outbox(ABC):
    @abstractmethod
    def put(self, message: OutboundMessage) -> None:
        """Store a message; when full, drop the oldest (counted), never block."""

    @abstractmethod
    def take(self) -> OutboundMessage | None:
        """The oldest message not yet handed out, now in flight; None when none waits."""

    @abstractmethod
    def ack(self, message_id: int) -> None:
        """The broker acknowledged it: forget it."""

    @abstractmethod
    def stats(self) -> OutboxStats: ...

    @abstractmethod
    async def wait_pending(self) -> None:
        """Return when a message is waiting to be taken."""


class MemoryOutbox(Outbox):
    """Bounded in-memory outbox with a drop-oldest policy."""

    def __init__(self, max_messages: int) -> None:
        self.max_messages = max_messages
        self._waiting: OrderedDict[int, OutboundMessage] = OrderedDict()
        self._inflight: dict[int, OutboundMessage] = {}
        self._next_id = 1
        self._dropped = 0
        self._dropped_samples = 0
        self._pending = asyncio.Event()

    def put(self, message: OutboundMessage) -> None:
        message.id = self._next_id
        self._next_id += 1
        self._waiting[message.id] = message
        while len(self._waiting) + len(self._inflight) > self.max_messages and self._waiting:
            _, old = self._waiting.popitem(last=False)
            self._dropped += 1
            self._dropped_samples += old.samples
        self._pending.set()

    def take(self) -> OutboundMessage | None:
        if not self._waiting:
            self._pending.clear()
            return None
        _, message = self._waiting.popitem(last=False)
        self._inflight[message.id] = message
        if not self._waiting:
            self._pending.clear()
        return message

    def ack(self, message_id: int) -> None:
        self._inflight.pop(message_id, None)

    def stats(self) -> OutboxStats:
        return OutboxStats(
            len(self._waiting), len(self._inflight), self._dropped, self._dropped_samples
        )

    async def wait_pending(self) -> None:
        await self._pending.wait()

    def inflight_count(self) -> int:
        return len(self._inflight)
