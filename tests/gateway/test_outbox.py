"""Memory outbox: order, acknowledgement, and the drop-oldest policy when full."""

from __future__ import annotations

from gateway.northbound.message import OutboundMessage
from gateway.northbound.outbox import MemoryOutbox


def msg(n: int, samples: int = 10) -> OutboundMessage:
    return OutboundMessage(f"t/{n}", str(n).encode(), "data", samples=samples)


async def test_messages_leave_in_order_and_only_on_ack() -> None:
    box = MemoryOutbox(max_messages=10)
    for n in range(3):
        box.put(msg(n))
    first, second = box.take(), box.take()
    assert first is not None and second is not None
    assert (first.topic, second.topic) == ("t/0", "t/1")
    stats = box.stats()
    assert (stats.queued, stats.inflight) == (1, 2)
    box.ack(first.id)
    assert box.stats().inflight == 1
    third = box.take()
    assert third is not None and third.topic == "t/2"
    assert box.take() is None


async def test_full_outbox_drops_the_oldest_waiting_and_counts_it() -> None:
    box = MemoryOutbox(max_messages=3)
    box.put(msg(0))
    inflight = box.take()  # handed to the broker: never dropped
    for n in range(1, 6):
        box.put(msg(n, samples=7))
    stats = box.stats()
    assert stats.queued + stats.inflight == 3
    assert (stats.dropped, stats.dropped_samples) == (3, 21)
    remaining = [box.take() for _ in range(2)]
    assert [m.topic for m in remaining if m] == ["t/4", "t/5"]
    assert inflight is not None and inflight.topic == "t/0"


async def test_wait_pending_wakes_on_put() -> None:
    import asyncio

    box = MemoryOutbox(max_messages=3)
    waiter = asyncio.create_task(box.wait_pending())
    await asyncio.sleep(0)  # one loop turn, no wait: the new task runs up to its first await
    assert not waiter.done()
    box.put(msg(1))
    await asyncio.wait_for(waiter, 1)
