"""Read-back verification: wait for a fresh sample of a written tag.

The simplest path that is correct for every driver: the device runner keeps polling
(or the subscription keeps delivering), and every raw batch passes :meth:`observe`
before the pipeline. A write is verified by the first good sample of the tag
*taken after the write completed* (``ts_ns`` at or after the write's end; Modbus stamps
a sample when its request leaves, and requests on one link are serialised, so such a
sample was read after the device acknowledged the write) whose raw value matches.
No extra device read, no race with the poller. A tag whose value does not change
on a subscription (OPC UA with the same value written) sends no new sample: its
verification ends at the timeout as unverified.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from gateway.types import GOOD_CODE, SampleBatch


@dataclass(slots=True)
class ReadBack:
    """What a verification saw: whether a matching sample came, and the last value seen."""

    matched: bool
    last_value: object = None
    samples: int = 0


@dataclass(slots=True)
class _Waiter:
    tag_id: int
    after_ns: int
    accept: Callable[[object], bool]
    done: asyncio.Future[None]
    seen: ReadBack = field(default_factory=lambda: ReadBack(False))


class ReadBackWatcher:
    """Matches incoming raw batches against pending verifications."""

    def __init__(self) -> None:
        self._waiters: list[_Waiter] = []

    def observe(self, batch: SampleBatch) -> None:
        """Called with every raw batch from the devices; cheap when nothing is pending."""
        if not self._waiters or not len(batch):
            return
        for waiter in self._waiters:
            if waiter.done.done():
                continue
            mask = (
                (batch.tag_ids == waiter.tag_id)
                & (batch.ts_ns >= waiter.after_ns)
                & (batch.quality == GOOD_CODE)
            )
            for value in batch.values[np.flatnonzero(mask)].tolist():
                waiter.seen.samples += 1
                waiter.seen.last_value = value
                if waiter.accept(value):
                    waiter.seen.matched = True
                    waiter.done.set_result(None)
                    break

    async def wait(
        self, tag_id: int, after_ns: int, accept: Callable[[object], bool], timeout: float
    ) -> ReadBack:
        """Wait up to ``timeout`` s for a good sample of ``tag_id`` at or after ``after_ns``
        that ``accept`` approves."""
        waiter = _Waiter(tag_id, after_ns, accept, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.done), timeout)
        except TimeoutError:
            pass
        finally:
            self._waiters.remove(waiter)
        return waiter.seen
