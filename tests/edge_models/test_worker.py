"""The inference thread: order, errors, the Executor interface, shutdown."""

from __future__ import annotations

import asyncio
import threading

import pytest

from edge_models.worker import InferenceWorker
from tests.waiting import until


async def test_every_result_is_delivered_in_order() -> None:
    worker = InferenceWorker("models-test")
    ran: list[int] = []
    threads: set[str] = set()

    def job(i: int) -> int:
        ran.append(i)
        threads.add(threading.current_thread().name)
        return i * i

    try:
        futures = [worker.call(job, i) for i in range(500)]
        assert await asyncio.gather(*futures) == [i * i for i in range(500)]
        assert ran == list(range(500)) and threads == {"models-test"}
    finally:
        worker.shutdown()


async def test_an_exception_reaches_the_caller_and_the_thread_goes_on() -> None:
    worker = InferenceWorker()

    def boom() -> None:
        raise ValueError("model exploded")

    try:
        with pytest.raises(ValueError, match="model exploded"):
            await worker.call(boom)
        assert await worker.call(lambda: 42) == 42
        loop = asyncio.get_running_loop()  # the Executor interface, as model loading uses it
        assert await loop.run_in_executor(worker, sum, [1, 2, 3]) == 6
        with pytest.raises(ValueError):
            await loop.run_in_executor(worker, boom)
        assert worker.submit(max, 3, 9).result(timeout=5) == 9
    finally:
        worker.shutdown()


async def test_shutdown_cancels_what_has_not_started() -> None:
    worker = InferenceWorker()
    gate, started = threading.Event(), threading.Event()

    def running() -> bool:
        started.set()
        return gate.wait(5)

    first = worker.call(running)
    assert started.wait(5)
    queued = worker.call(lambda: "never")
    pending = worker.submit(lambda: "never")
    worker.shutdown(wait=False, cancel_futures=True)
    gate.set()
    assert await first is True
    assert pending.cancelled()
    await until(queued.cancelled, "the cancellation, delivered through the loop")
    with pytest.raises(RuntimeError, match="shut down"):
        worker.call(lambda: None)
