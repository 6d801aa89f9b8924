"""The lines a DL/T 645 request travels: an RS-485 port shared by its meters, or a TCP
connection to a serial device server (transparent mode: the same frames on TCP).

Both are half duplex: one request at a time (a lock), each answered by the frame that
comes back from the meter asked, within the timeout. Bytes are read as they arrive (an
event-loop reader on the port's descriptor, a reader task on the socket) into one
:class:`~drivers.dlt645.codec.FrameReader`; frames nobody waits for (answers that came
too late, an RS-485 adapter's echo of the request) are dropped.

The serial line is claimed in the runtime's :class:`~gateway.serial_ports.SerialPorts`
by every meter on it and closes after the last release; a meter that stops answering
makes only its own driver reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import termios
import time
from dataclasses import dataclass

import serial

from drivers.dlt645.codec import Frame, FrameReader
from drivers.watchdog import Watchdog
from gateway.errors import ConnectionLost, DeviceUnreachable
from gateway.serial_io import read_ready
from gateway.serial_ports import LineSettings

log = logging.getLogger(__name__)

#: what opening or using a port raises (termios.error: settings the tty refuses, e.g. parity
#: on a pseudo-terminal)
SERIAL_ERRORS = (serial.SerialException, OSError, ValueError, termios.error)
_PARITY = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}
_STOPBITS = {1: serial.STOPBITS_ONE, 2: serial.STOPBITS_TWO}


@dataclass(slots=True)  # not frozen: built for every request, a frozen __init__ costs
class Exchange:
    """What one request got: the answer (None: none in time) and what the line carried."""

    frame: Frame | None
    #: when the request left (ns since the epoch)
    sent_ns: int
    #: bytes received while waiting
    received: int = 0
    #: candidate frames dropped for a wrong checksum or end byte
    rejected: int = 0
    #: bytes that were no frame (preambles not counted)
    discarded: int = 0
    #: answers from other meters than the one asked
    foreign: int = 0
    #: answers of the meter asked to an earlier request (another data identifier)
    stale: int = 0
    #: bytes of a frame begun but not finished when the wait ended
    pending: int = 0
    #: why the last candidate frame was dropped
    rejection: str = ""


def _settle(answer: asyncio.Future[Frame | None], frame: Frame | None) -> None:
    if not answer.done():
        answer.set_result(frame)


class Line:
    """A half-duplex line to one or more meters: :meth:`exchange` a request for its answer."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.lock = asyncio.Lock()
        self._reader = FrameReader()
        self._waiting: tuple[asyncio.Future[Frame | None], str | None, bytes] | None = None
        self._foreign = 0
        self._stale = 0
        self._received = 0
        self._watchdog = Watchdog(self._expired)
        #: resolved with the reason when the line broke (a new one at each open)
        self.lost: asyncio.Future[str] | None = None

    @property
    def is_open(self) -> bool:
        return self.lost is not None and not self.lost.done()

    async def exchange(self, request: bytes, expect: str | None, timeout: float,
                       prefix: bytes = b"") -> Exchange:
        """Send ``request`` and wait ``timeout`` s for an answer from meter ``expect``
        (None: from any meter, for the broadcast address) whose data starts with
        ``prefix`` (the data identifier asked for; an exception answer has none): a late
        answer to an earlier request is not taken for this one's. Raise
        :class:`ConnectionLost` when the line broke."""
        async with self.lock:
            lost = self.lost
            if lost is None or lost.done():
                raise ConnectionLost(f"{self.where}: {lost.result() if lost else 'not open'}")
            reader = self._reader
            if reader.buffer:
                reader.reset()  # a half frame from before is not the answer
            before = (self._received, reader.rejected, reader.discarded, self._foreign,
                      self._stale)
            loop = asyncio.get_running_loop()
            answer: asyncio.Future[Frame | None] = loop.create_future()
            self._waiting = (answer, expect, prefix)
            # the line's watchdog ends the wait at the deadline (asyncio.wait costs twice the
            # whole exchange on a fast line); a lost line ends it through _set_lost
            self._watchdog.arm(loop, timeout)
            sent = time.time_ns()
            try:
                self._write(request)
                frame = await answer
            finally:
                self._watchdog.disarm()
                self._waiting = None
            if frame is None and lost.done():
                raise ConnectionLost(f"{self.where}: {lost.result()}")
            return Exchange(frame, sent, self._received - before[0],
                            reader.rejected - before[1], reader.discarded - before[2],
                            self._foreign - before[3], self._stale - before[4],
                            0 if frame is not None else sum(1 for b in reader.buffer if b != 0xFE),
                            reader.last_rejection)

    def _expired(self) -> None:
        """The request waiting outlived its timeout (one watchdog timer per line)."""
        if self._waiting is not None:
            _settle(self._waiting[0], None)

    def _on_bytes(self, data: bytes) -> None:
        self._received += len(data)
        for frame in self._reader.feed(data):
            waiting = self._waiting
            if not frame.is_reply or waiting is None or waiting[0].done():
                continue  # an echo of the request, or an answer nobody waits for any more
            answer, expect, prefix = waiting
            if expect is not None and frame.address != expect:
                self._foreign += 1
            elif not frame.is_error and not frame.data.startswith(prefix):
                self._stale += 1
            else:
                answer.set_result(frame)

    def _set_lost(self, reason: str) -> None:
        if self.lost is not None and not self.lost.done():
            self.lost.set_result(reason)
        if self._waiting is not None:
            _settle(self._waiting[0], None)
        self._watchdog.stop()

    def _write(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class SerialLine(Line):
    """An RS-485 port and the meters on it; kept in the runtime's serial ports."""

    def __init__(self, port: str, settings: LineSettings) -> None:
        super().__init__(port)
        self.port = port
        self.settings = settings
        self._serial: serial.Serial | None = None
        self._fd = -1

    def open(self) -> None:
        """Open the port if it is not open; raise :class:`DeviceUnreachable`."""
        if self.is_open:
            return
        self.close()
        baudrate, bytesize, parity, stopbits = self.settings
        try:
            port = serial.Serial(self.port, baudrate, bytesize=bytesize, parity=_PARITY[parity],
                                 stopbits=_STOPBITS[int(stopbits)], timeout=0, write_timeout=0,
                                 exclusive=True)
        except SERIAL_ERRORS as exc:
            raise DeviceUnreachable(f"cannot open serial port {self.port}: {exc}") from exc
        self._serial, self._fd = port, port.fileno()
        with contextlib.suppress(*SERIAL_ERRORS):
            port.reset_input_buffer()  # bytes of unknown age from before we listened
        self._reader = FrameReader()
        loop = asyncio.get_running_loop()
        self.lost = loop.create_future()
        loop.add_reader(self._fd, self._on_readable)
        log.info("DL/T 645 line %s open (%s)", self.port, self.settings)

    def _on_readable(self) -> None:
        data = read_ready(self._fd, self._lose)
        if data is not None:
            self._on_bytes(data)

    def _lose(self, reason: str) -> None:
        self._close_port()
        self._set_lost(reason)

    def _write(self, data: bytes) -> None:
        try:
            written = os.write(self._fd, data)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            self._lose(f"write failed: {exc}")
            raise ConnectionLost(f"{self.port}: write failed: {exc}") from exc
        if written < len(data):  # a full output buffer: the request is not on the line
            log.debug("%s: only %d of %d request bytes written", self.port, written, len(data))

    def _close_port(self) -> None:
        port, self._serial = self._serial, None
        if port is None:
            return
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._fd)
        self._fd = -1
        with contextlib.suppress(Exception):
            port.close()

    def close(self) -> None:
        """Close the port (after the last meter released it)."""
        self._close_port()
        self._set_lost("closed")


class TcpLine(Line):
    """A TCP connection to a serial device server's port (transparent mode)."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"{host}:{port}")
        self.host, self.port = host, port
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self, timeout: float) -> None:
        """Connect; raise :class:`DeviceUnreachable` with a readable reason."""
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port)
        except TimeoutError:
            raise DeviceUnreachable(f"no answer from {self.where} within {timeout:g} s "
                                    "(connect timed out)") from None
        except socket.gaierror as exc:
            raise DeviceUnreachable(f"cannot resolve host name {self.host!r} (DNS lookup "
                                    f"failed: {exc.strerror})") from None
        except ConnectionRefusedError:
            raise DeviceUnreachable(f"connection refused by {self.where}: nothing listens on "
                                    f"port {self.port} or a firewall rejects it") from None
        except (OSError, ValueError) as exc:
            raise DeviceUnreachable(f"cannot connect to {self.where}: "
                                    f"{getattr(exc, 'strerror', None) or exc}") from None
        self._writer = writer
        self._reader = FrameReader()
        self.lost = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._read(reader), name=f"dlt645 {self.where}")

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(4096):
                self._on_bytes(data)
            self._set_lost("the serial device server closed the connection")
        except (OSError, asyncio.IncompleteReadError) as exc:
            self._set_lost(f"connection broken: {exc}")

    def _write(self, data: bytes) -> None:
        writer = self._writer
        if writer is None or writer.is_closing():
            self._set_lost("connection closed")
            raise ConnectionLost(f"{self.where}: connection closed")
        writer.write(data)

    def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
        self._set_lost("closed")
