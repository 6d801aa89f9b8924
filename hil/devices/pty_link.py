"""A virtual serial line: two pseudo-terminals bridged in-process, with line faults.

``PtyLink`` opens two pty pairs and copies bytes between their master ends.
The simulated device opens :attr:`PtyLink.device_path`, the gateway opens
:attr:`PtyLink.gateway_path`, and every byte crosses this process, so a test
or a scenario can garble, drop or inject bytes like a noisy RS-485 cable.
(``socat -d -d pty,raw,echo=0 pty,raw,echo=0`` gives the same pair of paths
without the faults.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import tty
from types import TracebackType
from typing import Self

log = logging.getLogger(__name__)


class PtyLink:
    """Two pty pairs whose masters are bridged: ``device_path`` <-> ``gateway_path``."""

    def __init__(self, seed: int = 0, baudrate: int | None = None) -> None:
        #: when set, bytes take as long as on a real 8N1 line (10 bits a byte, each direction)
        self.baudrate = baudrate
        self._line_free_at = {True: 0.0, False: 0.0}
        self._fds: list[int] = []
        self._masters: tuple[int, int] | None = None
        self.device_path = ""
        self.gateway_path = ""
        #: when True the line carries nothing (cable pulled)
        self.cut = False
        #: answers (device -> gateway chunks) still to corrupt by flipping one byte
        self.garble_answers = 0
        self.bytes_to_gateway = 0
        self.bytes_to_device = 0
        self._rng = random.Random(seed)

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Open both pty pairs and start relaying (needs a running event loop)."""
        if self._masters is not None:
            return
        loop = asyncio.get_running_loop()
        dev_master, dev_slave = os.openpty()
        gw_master, gw_slave = os.openpty()
        self._fds = [dev_master, dev_slave, gw_master, gw_slave]
        for fd in (dev_slave, gw_slave):
            tty.setraw(fd)  # no echo, no line editing: a serial line carries raw bytes
        for fd in (dev_master, gw_master):
            os.set_blocking(fd, False)
        self.device_path = os.ttyname(dev_slave)
        self.gateway_path = os.ttyname(gw_slave)
        self._masters = (dev_master, gw_master)
        loop.add_reader(dev_master, self._relay, dev_master, gw_master, True)
        loop.add_reader(gw_master, self._relay, gw_master, dev_master, False)
        log.info("pty link %s (device) <-> %s (gateway)", self.device_path, self.gateway_path)

    def stop(self) -> None:
        """Stop relaying and close every descriptor."""
        masters, self._masters = self._masters, None
        if masters is not None:
            loop = asyncio.get_running_loop()
            for fd in masters:
                loop.remove_reader(fd)
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []

    def inject_garbage(self, count: int = 16) -> bytes:
        """Write ``count`` random bytes towards the gateway now; return them."""
        data = bytes(self._rng.randrange(256) for _ in range(count))
        if self._masters is not None:
            self._write(self._masters[1], data)
        return data

    def _relay(self, source: int, target: int, to_gateway: bool) -> None:
        try:
            data = os.read(source, 4096)
        except OSError:  # the other side closed: nothing to relay
            return
        if not data or self.cut:
            return
        if to_gateway and self.garble_answers > 0:
            self.garble_answers -= 1
            i = self._rng.randrange(len(data))
            data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
        if to_gateway:
            self.bytes_to_gateway += len(data)
        else:
            self.bytes_to_device += len(data)
        if self.baudrate:
            loop = asyncio.get_running_loop()
            start = max(loop.time(), self._line_free_at[to_gateway])
            done = start + len(data) * 10 / self.baudrate
            self._line_free_at[to_gateway] = done
            loop.call_at(done, self._write, target, data)
            return
        self._write(target, data)

    @staticmethod
    def _write(fd: int, data: bytes) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(fd, data)
