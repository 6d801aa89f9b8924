"""The inference thread: one daemon thread running submitted calls in order.

``loop.run_in_executor`` on a ``ThreadPoolExecutor`` goes through a work item, a
``concurrent.futures.Future``, its wrapping asyncio future and their callbacks on
every call. :meth:`InferenceWorker.call` hands a call to the thread over a
``SimpleQueue`` and resolves an asyncio future with one ``call_soon_threadsafe``.
The worker is also an :class:`~concurrent.futures.Executor`, so model loading goes
through ``run_in_executor`` to the same thread (loads and inferences never overlap).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from queue import SimpleQueue
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# a job: the call, and where its outcome goes (an asyncio future and its loop, or a
# concurrent future)
_Job = tuple[Callable[[], Any], "asyncio.Future[Any] | Future[Any]",
             "asyncio.AbstractEventLoop | None"]


def _resolve(fut: asyncio.Future[Any] | Future[Any], ok: bool, value: Any) -> None:
    if fut.cancelled():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class InferenceWorker(Executor):
    """A single named thread; calls run one at a time in submission order."""

    def __init__(self, name: str = "models") -> None:
        self._queue: SimpleQueue[_Job | None] = SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def call(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``fn(*args)`` in the thread; await the returned future on this loop."""
        if self._closed:
            raise RuntimeError("the inference worker is shut down")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.put((lambda: fn(*args), fut, loop))
        return fut

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """The :class:`Executor` interface (used for model loading)."""
        if self._closed:
            raise RuntimeError("the inference worker is shut down")
        fut: Future[T] = Future()
        self._queue.put((lambda: fn(*args, **kwargs), fut, None))
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        if cancel_futures:  # drop what has not started
            while True:
                try:
                    job = self._queue.get_nowait()
                except Exception:  # queue.Empty
                    break
                if job is None:
                    continue
                _, fut, loop = job
                if loop is None:
                    fut.cancel()
                elif not loop.is_closed():
                    loop.call_soon_threadsafe(fut.cancel)
        self._queue.put(None)
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()

    def _serve(self) -> None:
        while (job := self._queue.get()) is not None:
            fn, fut, loop = job
            if loop is None:
                assert isinstance(fut, Future)
                if not fut.set_running_or_notify_cancel():
                    continue
            try:
                value, ok = fn(), True
            except BaseException as exc:  # handed to the caller
                value, ok = exc, False
            if loop is None:
                assert isinstance(fut, Future)
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)
                continue
            try:
                loop.call_soon_threadsafe(_resolve, fut, ok, value)
            except RuntimeError:  # the loop closed while the call ran
                log.debug("inference result dropped: the event loop is closed")
