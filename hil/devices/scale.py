"""Simulated weighing scale printing weight lines on a pty, with injectable faults.

Each reading is one line: ``ST,GS,+0012.345 kg\\r\\n`` (``ST`` stable / ``US``
unstable, ``GS`` gross / ``NT`` net, signed weight, unit). The weights come from a
seeded, deterministic sequence of parts placed and removed (:func:`weight_readings`):
an empty pan, a part placed (unstable while it settles), stable at the part's
weight, removed (unstable), empty again.

Modes: ``stream`` prints a line ``rate`` times a second; ``poll`` answers each
``poll_command`` (``SI\\r\\n`` by default, as MT-SICS "send immediately") with the
next reading and any other command with ``ES\\r\\n``.

The gateway opens :attr:`ScaleSimulator.serial_path`, a symlink (like
``/dev/serial/by-id/...``) that survives :meth:`unplug` / :meth:`replug`. Faults:
:meth:`inject_garbage`, :meth:`send_partial_line`, :attr:`silent`,
:attr:`wrong_baud` (every byte scrambled as a receiver at another baud rate would
see it, :func:`scramble_baud`), :meth:`unplug` / :meth:`replug` (the port vanishes
and comes back), and the line's own (``line.cut``, ``line.garble_answers``).
:attr:`history` keeps the readings sent, for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import tempfile
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from hil.devices.lifecycle import SimulatedDevice
from hil.devices.pty_link import PtyLink

log = logging.getLogger(__name__)

ScaleMode = Literal["stream", "poll"]


@dataclass(frozen=True, slots=True)
class ScaleReading:
    stable: bool
    net: bool
    weight: float
    unit: str

    def line(self) -> bytes:
        """The line the scale prints, e.g. ``b'ST,GS,+0012.345 kg\\r\\n'``."""
        return (
            f"{'ST' if self.stable else 'US'},{'NT' if self.net else 'GS'},"
            f"{self.weight:+09.3f} {self.unit}\r\n"
        ).encode("ascii")


def weight_readings(seed: int, unit: str = "kg") -> Iterator[ScaleReading]:
    """Endless deterministic readings: parts of random weight placed, settling, removed."""
    rng = random.Random(seed)
    while True:
        for _ in range(rng.randint(3, 8)):  # empty pan
            yield ScaleReading(True, False, 0.0, unit)
        part = round(rng.uniform(0.5, 25.0), 3)
        settle = rng.randint(2, 5)
        for k in range(settle):  # placed: a damped swing around the part's weight
            swing = part * 0.2 * (-0.6) ** k
            yield ScaleReading(False, False, round(part + swing, 3), unit)
        for _ in range(rng.randint(5, 15)):
            yield ScaleReading(True, False, part, unit)
        yield ScaleReading(False, False, round(part * 0.3, 3), unit)  # being lifted off


def scramble_baud(data: bytes, sent_baud: int, read_baud: int) -> bytes:
    """What a UART reading at ``read_baud`` makes of 8N1 ``data`` sent at ``sent_baud``.

    Models the receiver: wait for a falling edge (start bit), sample eight data bits
    in the middle of its own bit times, skip the stop bit, hunt for the next edge.
    """
    bits: list[int] = []
    for byte in data:
        bits.append(0)
        bits.extend((byte >> i) & 1 for i in range(8))
        bits.append(1)
    bits.extend([1] * 10)  # idle line after the burst
    ratio = read_baud and sent_baud / read_baud  # sender bits per receiver bit
    n = len(bits)

    def level(t: float) -> int:
        i = int(t)
        return bits[i] if i < n else 1

    out = bytearray()
    t = 0.0
    while True:
        i = int(t) if t == int(t) else int(t) + 1
        while i < n and bits[i] == 1:
            i += 1
        if i >= n:
            break
        t = float(i)
        value = 0
        for k in range(8):
            value |= level(t + (1.5 + k) * ratio) << k
        out.append(value)
        t += 9.5 * ratio  # the stop bit's sample; the next start comes after it
    return bytes(out)


class ScaleSimulator(SimulatedDevice):
    """A scale on the device end of a :class:`PtyLink`; use ``async with``."""

    def __init__(
        self,
        mode: ScaleMode = "stream",
        rate: float = 10.0,
        seed: int = 0,
        unit: str = "kg",
        poll_command: bytes = b"SI\r\n",
        baudrate: int = 9600,
        history: int = 10_000,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.mode = mode
        self.rate = rate
        self.seed = seed
        self.unit = unit
        self.poll_command = poll_command
        self.baudrate = baudrate
        #: the virtual serial line: faults on the cable (cut, garble_answers)
        self.line = PtyLink(seed)
        #: when True the scale prints and answers nothing
        self.silent = False
        #: when set, the baud rate the gateway reads at: every byte is scrambled accordingly
        self.wrong_baud: int | None = None
        #: readings sent whole (not cut, not scrambled), newest last
        self.history: deque[ScaleReading] = deque(maxlen=history)
        self.lines_sent = 0
        self.commands_received = 0
        self.unknown_commands = 0
        self._readings = weight_readings(seed, unit)
        self._rng = random.Random(seed ^ 0x5CA1E)
        self._dir = ""
        self._fd = -1
        self._rx = bytearray()
        self._task: asyncio.Task[None] | None = None

    @property
    def serial_path(self) -> str:
        """The serial device the gateway opens (stable across unplug and replug)."""
        if not self._dir:
            raise RuntimeError("start() the simulator first")
        return os.path.join(self._dir, "scale")

    @property
    def plugged(self) -> bool:
        return self._fd >= 0

    async def start(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="chenxing-scale-")
        self._plug()
        if self.mode == "stream":
            self._task = asyncio.create_task(self._stream(), name="scale-stream")
        log.info("scale on %s (%s, seed %d)", self.serial_path, self.mode, self.seed)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._unplug()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    # -- faults -------------------------------------------------------------------------
    def inject_garbage(self, count: int = 32) -> bytes:
        """Random bytes now, without CR or LF: they spoil the line they run into."""
        data = bytes(self._rng.choice([b for b in range(256) if b not in (10, 13)])
                     for _ in range(count))
        self._write(data, scramble=False)
        return data

    def send_partial_line(self) -> bytes:
        """The first half of the next reading, no terminator (the next line runs into it)."""
        line = next(self._readings).line()
        part = line[: len(line) // 2]
        self._write(part)
        return part

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (tests, scenarios)."""
        self._write(data, scramble=False)

    def unplug(self) -> None:
        """The port vanishes (USB unplugged): the gateway's reads fail, the path is gone."""
        self._unplug()

    def replug(self) -> None:
        """The port is back at the same path (a new pty behind the symlink)."""
        if not self.plugged:
            self._plug()

    # -- line ---------------------------------------------------------------------------
    def _plug(self) -> None:
        self.line = PtyLink(self.seed)
        self.line.start()
        self._fd = os.open(self.line.device_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        asyncio.get_running_loop().add_reader(self._fd, self._on_readable)
        tmp = self.serial_path + ".new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(self.line.gateway_path, tmp)
        os.replace(tmp, self.serial_path)  # atomic: the path is never half-made

    def _unplug(self) -> None:
        if self._fd >= 0:
            asyncio.get_running_loop().remove_reader(self._fd)
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        if self._dir:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.serial_path)
        self.line.stop()

    def _write(self, data: bytes, scramble: bool = True) -> bool:
        if self.silent or self._fd < 0:
            return False
        if scramble and self.wrong_baud is not None:
            data = scramble_baud(data, self.baudrate, self.wrong_baud)
        try:
            return os.write(self._fd, data) == len(data)
        except OSError:  # nobody reading (buffer full) or the line is gone
            return False

    def _send_reading(self) -> None:
        if self.silent or self._fd < 0:
            return
        reading = next(self._readings)
        if self._write(reading.line()):
            self.lines_sent += 1
            if self.wrong_baud is None:
                self.history.append(reading)

    async def _stream(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.rate
        next_at = loop.time()
        while True:
            now = loop.time()
            due = 0
            while next_at <= now and due < 1000:  # woke late: the lines due, back to back
                self._send_reading()
                next_at += period
                due += 1
            if next_at <= now:  # hopelessly behind: start afresh rather than flood
                next_at = now + period
            await asyncio.sleep(next_at - now)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except OSError:
            return
        self._rx += data
        del self._rx[:-256]  # commands are short: never hold more
        while (i := self._rx.find(b"\n")) >= 0:
            command = bytes(self._rx[: i + 1])
            del self._rx[: i + 1]
            self.commands_received += 1
            if self.mode != "poll" or self.silent:
                continue
            if command == self.poll_command or command.strip() == self.poll_command.strip():
                self._send_reading()
            else:
                self.unknown_commands += 1
                self._write(b"ES\r\n")
