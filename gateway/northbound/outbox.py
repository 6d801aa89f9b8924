"""Messages waiting for the broker's acknowledgement.

:class:`Outbox` is the seam for store-and-forward: a message enters before it
is published and leaves only when acknowledged. :class:`MemoryOutbox` keeps
them in RAM (lost on a process kill); :class:`gateway.northbound.spool.DiskSpool`
keeps them in SQLite with the same interface.

Two streams come out of an outbox. :meth:`Outbox.mark_backlog` (called on every
connect to the broker) turns everything waiting into the *backlog*; what is put
afterwards is *live*. :meth:`Outbox.take_backlog` and :meth:`Outbox.take_live`
hand out the oldest message of each stream, so the publisher can interleave
replay and live data; :meth:`Outbox.take` hands out the oldest of all.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.northbound.message import OutboundMessage

#: why messages left the outbox without reaching the broker: the size limit, the age
#: limit, ``spool purge``, or a failed disk write (disk full, I/O error)
DROP_REASONS = ("full", "age", "purged", "error")


@dataclass(slots=True)
class DropCount:
    messages: int = 0
    samples: int = 0


@dataclass(slots=True)
class OutboxStats:
    #: waiting to be handed to the broker (backlog and live)
    queued: int = 0
    #: handed to the broker, not yet acknowledged
    inflight: int = 0
    #: all drops, every reason
    dropped: int = 0
    dropped_samples: int = 0
    #: of ``queued``: put before the last reconnect, replayed at the replay rate
    backlog: int = 0
    #: payload and topic bytes held (queued and in flight)
    bytes: int = 0
    #: age of the oldest message held, seconds (0 when empty)
    oldest_age_s: float = 0.0
    #: drops by reason (see :data:`DROP_REASONS`)
    drops: dict[str, DropCount] = field(default_factory=dict)

    @property
    def messages(self) -> int:
        return self.queued + self.inflight


class Outbox(ABC):
    @abstractmethod
    def put(self, message: OutboundMessage) -> None:
        """Store a message; when full, drop the oldest (counted), never block."""

    def put_many(self, messages: Iterable[OutboundMessage]) -> None:
        """Store several messages at once (one disk transaction for the spool)."""
        for message in messages:
            self.put(message)

    async def put_many_async(self, messages: Iterable[OutboundMessage]) -> None:
        """:meth:`put_many`; the disk spool commits in a worker thread meanwhile."""
        self.put_many(messages)

    @abstractmethod
    def take_backlog(self) -> OutboundMessage | None:
        """The oldest backlog message, now in flight; None when the backlog is empty."""

    @abstractmethod
    def take_live(self) -> OutboundMessage | None:
        """The oldest message put since the last :meth:`mark_backlog`, now in flight."""

    def take(self) -> OutboundMessage | None:
        """The oldest message not yet handed out, now in flight; None when none waits."""
        return self.take_backlog() or self.take_live()

    @abstractmethod
    def mark_backlog(self) -> int:
        """Everything waiting now becomes backlog (on a reconnect); returns the backlog size."""

    @abstractmethod
    def ack(self, message_id: int) -> None:
        """The broker acknowledged it: forget it. Unknown ids are ignored."""

    def release(self, message_ids: Iterable[int]) -> None:
        """Messages handed out will not be acknowledged (their connection is gone and the
        client dropped them): they wait again, in their original order, as backlog
        after the next :meth:`mark_backlog`. Unknown ids are ignored."""
        raise NotImplementedError

    @abstractmethod
    def stats(self) -> OutboxStats: ...

    @abstractmethod
    async def wait_pending(self) -> None:
        """Return when a message is waiting to be taken."""

    def maintain(self) -> None:
        """Periodic work: make acknowledgements durable, apply the age limit."""
        return None

    def close(self) -> None:
        """Release resources; the outbox is not used afterwards."""
        return None


class MemoryOutbox(Outbox):
    """Bounded in-memory outbox with a drop-oldest policy."""

    def __init__(self, max_messages: int) -> None:
        self.max_messages = max_messages
        self._backlog: OrderedDict[int, OutboundMessage] = OrderedDict()
        self._live: OrderedDict[int, OutboundMessage] = OrderedDict()
        self._inflight: dict[int, OutboundMessage] = {}
        self._put_ns: dict[int, int] = {}
        self._bytes = 0
        self._next_id = 1
        self._full = DropCount()
        self._pending = asyncio.Event()

    def put(self, message: OutboundMessage) -> None:
        message.id = self._next_id
        self._next_id += 1
        self._live[message.id] = message
        self._put_ns[message.id] = time.time_ns()
        self._bytes += message.size
        while self._waiting() + len(self._inflight) > self.max_messages and self._waiting():
            queue = self._backlog or self._live
            _, old = queue.popitem(last=False)
            self._forget(old)
            self._full.messages += 1
            self._full.samples += old.samples
        self._pending.set()

    def _waiting(self) -> int:
        return len(self._backlog) + len(self._live)

    def _forget(self, message: OutboundMessage) -> None:
        self._bytes -= message.size
        self._put_ns.pop(message.id, None)

    def _hand_out(self, queue: OrderedDict[int, OutboundMessage]) -> OutboundMessage | None:
        if not queue:
            if not self._waiting():
                self._pending.clear()
            return None
        _, message = queue.popitem(last=False)
        self._inflight[message.id] = message
        if not self._waiting():
            self._pending.clear()
        return message

    def take_backlog(self) -> OutboundMessage | None:
        return self._hand_out(self._backlog)

    def take_live(self) -> OutboundMessage | None:
        return self._hand_out(self._live)

    def mark_backlog(self) -> int:
        self._backlog.update(self._live)  # backlog ids are all lower: order is kept
        self._live.clear()
        return len(self._backlog)

    def ack(self, message_id: int) -> None:
        message = self._inflight.pop(message_id, None)
        if message is not None:
            self._forget(message)

    def release(self, message_ids: Iterable[int]) -> None:
        back = {i: m for i in message_ids if (m := self._inflight.pop(i, None)) is not None}
        if back:
            self._backlog = OrderedDict(sorted({**self._backlog, **back}.items()))
            self._pending.set()

    def stats(self) -> OutboxStats:
        oldest = next(iter(self._put_ns.values()), None)  # ids, hence put times, ascend
        age = 0.0 if oldest is None else max(0.0, (time.time_ns() - oldest) / 1e9)
        drops = {reason: DropCount() for reason in DROP_REASONS}
        drops["full"] = DropCount(self._full.messages, self._full.samples)
        return OutboxStats(
            queued=self._waiting(),
            inflight=len(self._inflight),
            dropped=self._full.messages,
            dropped_samples=self._full.samples,
            backlog=len(self._backlog),
            bytes=self._bytes,
            oldest_age_s=age,
            drops=drops,
        )

    async def wait_pending(self) -> None:
        await self._pending.wait()

    def inflight_count(self) -> int:
        return len(self._inflight)
