"""A loopback TCP proxy between the gateway and the broker: latency, loss and cuts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

__all__ = ["FaultyProxy"]

log = logging.getLogger(__name__)


class FaultyProxy:
    """Forwards ``127.0.0.1:port`` to ``target``. ``latency`` delays every chunk (order kept),
    ``loss`` is the chance per chunk that the connection is reset (TCP cannot lose bytes
    silently), ``cut`` closes every connection and refuses new ones while set."""

    def __init__(self, target_host: str, target_port: int, seed: int = 0) -> None:
        self.target = (target_host, target_port)
        self.latency = 0.0
        self.loss = 0.0
        self._cut = False
        self._rng = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def cut(self) -> bool:
        """True while the link is cut."""
        return self._cut

    @cut.setter
    def cut(self, value: bool) -> None:
        self._cut = value
        if value:
            self.drop_connections()

    def drop_connections(self) -> None:
        """Reset every open connection now."""
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()

    async def start(self) -> FaultyProxy:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Close the listener and every connection."""
        if self._server is not None:
            self._server.close()
        self.drop_connections()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.transport.abort()
            return
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_w))
        pumps = [
            asyncio.create_task(self._pump(reader, up_w, writer)),
            asyncio.create_task(self._pump(up_r, writer, up_w)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
                self._tasks.discard(task)
            for w in (writer, up_w):
                self._writers.discard(w)
                w.transport.abort()

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, other: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                dst.write(chunk)
                await dst.drain()

        sender = asyncio.create_task(deliver())
        try:
            while not sender.done():
                chunk = await src.read(65536)
                if not chunk or self._cut:
                    return
                if self.loss and self._rng.random() < self.loss:
                    log.debug("proxy: chunk lost, resetting the connection")
                    return
                queue.put_nowait((loop.time() + self.latency, chunk))
        except (ConnectionError, OSError):
            return
        finally:
            sender.cancel()
            with contextlib.suppress(BaseException):
                await sender
