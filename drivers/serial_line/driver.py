"""The serial-line driver: scales, barcode readers and analyzers that print frames on a port.

I/O never blocks the event loop: the port is opened non-blocking (pyserial with
``timeout=0``) and its file descriptor is watched with ``loop.add_reader``, which
works on ttys, USB serial adapters and ptys alike, needs no thread, and hands each
burst of bytes to the framer at once; the poll command is written with ``os.write``
on that non-blocking descriptor (a full output buffer is a counted failure, not a
stall).

Modes:
- ``stream``: a push driver (``subscribe``): every frame becomes one batch.
- ``poll``: one poll group at ``poll_interval``: send ``poll_command``, the next frame
  is the answer (``response_timeout``); leftovers from before the request are dropped.

``connect`` succeeds only once a valid frame arrived (within ``stale_after``; in poll
mode, polling meanwhile), so a silent device or one on the wrong baud rate is
reported down with the reason instead of flapping up and down. While connected, no
valid frame for ``stale_after`` raises :class:`ConnectionLost`: the runner marks the
tags STALE when the device went silent, BAD when bytes kept coming but none made a
valid frame (wrong baud rate, wrong framing), and reconnects with backoff, which is
also what happens when the port vanishes (USB unplugged, pty closed).

The port is the device's alone: it is claimed in the runtime's
:class:`~gateway.serial_ports.SerialPorts`, so a Modbus RTU device or an MCU node
configured on the same port is refused with both devices named.

A rejected frame makes every tag BAD (in stream mode once per run of bad frames),
and the framer resynchronises at the next frame boundary.

Counters in ``driver.errors``: ``frame_<reason>`` for rejected frames (``decode``,
``no_match``, ``size``, ``overflow``, ``partial``, ``incomplete``: a poll answered
with bytes but no whole frame), ``bytes_discarded``, ``bad_value``
(a field that did not convert; that tag BAD), ``timeout``, ``unsolicited``,
``write_failed``, ``silent``, ``connection_lost``, ``reconnects``. Good frames are
counted in :attr:`SerialLineDriver.frames_ok`, rejected ones in ``frames_bad``
(exported as ``chenxing_serial_frames{device, outcome}`` by :mod:`.metrics`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import serial

from drivers.base import Driver, Emit, PollGroup
from drivers.serial_line.config import SerialLineDeviceConfig
from drivers.serial_line.framing import make_framer
from drivers.serial_line.parsing import FrameParser, FrameReason, ParsedFrame
from gateway.errors import ConnectionLost, DeviceUnreachable, InstrumentFrameRejected
from gateway.serial_io import read_ready
from gateway.serial_ports import PortLease, PortUse, SerialPorts
from gateway.types import Quality, SampleBatch

log = logging.getLogger(__name__)

_SERIAL_ERRORS = (serial.SerialException, OSError, ValueError)
_PARITY = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD,
           "M": serial.PARITY_MARK, "S": serial.PARITY_SPACE}  # fmt: skip
_STOPBITS = {1: serial.STOPBITS_ONE, 1.5: serial.STOPBITS_ONE_POINT_FIVE,
             2: serial.STOPBITS_TWO}  # fmt: skip

#: a frame and when it arrived (ns), or why it was rejected
_Result = tuple[int, ParsedFrame | InstrumentFrameRejected]


class SerialLineDriver(Driver):
    """One instrument on one serial port.

    ``ports``: the runtime's serial ports, where the port is claimed for this device
    alone; a driver built without them has ports of its own.
    """

    #: set per loss: STALE when the device went silent, BAD when it sent only garbage
    quality_while_lost = Quality.STALE

    def __init__(self, config: SerialLineDeviceConfig, tag_ids: Sequence[int],
                 ports: SerialPorts | None = None) -> None:
        super().__init__(config.name, tag_ids, len(config.tags))
        self.config = config
        self._ports = ports if ports is not None else SerialPorts()
        self._lease: PortLease[serial.Serial] | None = None
        self.frames_ok = 0
        self.frames_bad = 0
        self._tag_id_array = np.asarray(self.tag_ids, np.int32)
        self._parser = FrameParser(config)
        self._framer = make_framer(config.framing)
        self._synced = {"bytes_discarded": 0, "overflow": 0, "partial": 0}
        self._group = PollGroup("default", config.poll_interval, self.tag_ids)
        self._serial: serial.Serial | None = None
        self._fd = -1
        self._lost: asyncio.Future[str] | None = None
        self._emit: Emit | None = None
        self._answer: asyncio.Future[_Result] | None = None
        self._first: _Result | None = None  # the frame that completed connect
        self._last_good = 0.0
        self._bad_since_good = 0  # rejected frames since the last valid one
        self._rx_since_good = 0  # bytes received since the last valid frame
        self._rx_total = 0
        self._bad_emitted = False
        self._last_rejection: InstrumentFrameRejected | None = None
        self._connected_before = False
        self._warned = False

    # -- connection ---------------------------------------------------------------------
    async def connect(self) -> None:
        cfg = self.config
        await self.close()
        use = PortUse(cfg.name, cfg.protocol, cfg.line_settings, shared=False)
        self._lease = self._ports.claim(cfg.port, use, self._open_port)
        port = self._lease.port
        loop = asyncio.get_running_loop()
        self._serial, self._fd = port, port.fileno()
        with contextlib.suppress(*_SERIAL_ERRORS):
            port.reset_input_buffer()  # bytes of unknown age from before we listened
        self._framer = make_framer(cfg.framing)
        self._synced = dict.fromkeys(self._synced, 0)
        self._lost = loop.create_future()
        self._first = None
        self._bad_since_good = 0
        self._rx_since_good = 0
        self._bad_emitted = False
        self._last_rejection = None
        self._warned = False
        loop.add_reader(self._fd, self._on_readable)
        try:
            await self._await_first_frame()
        except (DeviceUnreachable, ConnectionLost) as exc:
            await self.close()
            raise DeviceUnreachable(str(exc)) from None
        if self._connected_before:
            self.errors["reconnects"] += 1
        self._connected_before = True
        self._last_good = time.monotonic()

    async def _await_first_frame(self) -> None:
        """Wait for one valid frame, so that "up" means the instrument talks sense."""
        cfg = self.config
        if cfg.mode == "stream" and cfg.stale_after is None:
            return
        loop = asyncio.get_running_loop()
        window = cfg.stale_after if cfg.stale_after is not None else cfg.response_timeout
        deadline = loop.time() + window
        while (left := deadline - loop.time()) > 0:
            if cfg.mode == "poll":
                result = await self._request(min(left, cfg.response_timeout))
            else:
                result = await self._next_frame(left)
            if result is not None and isinstance(result[1], ParsedFrame):
                self._first = result
                return
            if cfg.mode == "poll":  # pace the retries like polls
                await asyncio.sleep(min(cfg.poll_interval, max(0.0, deadline - loop.time())))
        raise DeviceUnreachable(self._why_no_frame(window))

    def _why_no_frame(self, window: float) -> str:
        rejection = self._last_rejection
        if not self._rx_since_good:
            self.quality_while_lost = Quality.STALE
            what = "no answer" if self.config.mode == "poll" else "nothing received"
            return f"{self.config.port}: {what} within {window:g} s"
        self.quality_while_lost = Quality.BAD
        last = f" (last: {rejection.reason}: {rejection})" if rejection is not None else ""
        return (
            f"{self.config.port}: no valid frame within {window:g} s: "
            f"{self._bad_since_good} bad frames{last}, {self._rx_since_good} bytes received; "
            "check baud rate, parity, framing and regex"
        )

    def _open_port(self) -> serial.Serial:
        cfg = self.config
        try:
            return serial.Serial(
                cfg.port, cfg.baudrate, bytesize=cfg.bytesize, parity=_PARITY[cfg.parity],
                stopbits=_STOPBITS[cfg.stopbits], rtscts=cfg.rtscts, xonxoff=cfg.xonxoff,
                timeout=0, write_timeout=0, exclusive=True,
            )
        except _SERIAL_ERRORS as exc:
            raise DeviceUnreachable(f"cannot open serial port {cfg.port}: {exc}") from exc

    async def close(self) -> None:
        lease, self._lease = self._lease, None
        self._serial = None
        if lease is None:
            return
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._fd)
        self._fd = -1
        with contextlib.suppress(Exception):
            lease.release()  # the only user: the port closes
        if self._lost is not None and not self._lost.done():
            self._lost.set_result("closed")

    # -- stream mode ----------------------------------------------------------------------
    def poll_groups(self) -> Sequence[PollGroup]:
        return (self._group,) if self.config.mode == "poll" else ()

    async def subscribe(self, emit: Emit) -> None:
        cfg = self.config
        if self._serial is None or self._lost is None:
            raise ConnectionLost("not connected")
        lost = self._lost
        self._emit = emit
        try:
            if self._first is not None:
                first, self._first = self._first, None
                self._deliver(first)
            check = 0.1 if cfg.stale_after is None else min(0.1, cfg.stale_after / 5)
            while True:
                done, _ = await asyncio.wait({lost}, timeout=check)
                if done:
                    reason = lost.result()  # raises the error of a bug in the reader
                    self.errors["connection_lost"] += 1
                    raise ConnectionLost(f"{cfg.port}: {reason}")
                self._check_silence()
        finally:
            self._emit = None

    def _check_silence(self) -> None:
        stale_after = self.config.stale_after
        silent = time.monotonic() - self._last_good
        if stale_after is None or silent <= stale_after:
            return
        if self._rx_since_good:
            self.quality_while_lost = Quality.BAD
            self.errors["no_valid_frame"] += 1
            raise ConnectionLost(
                f"no valid frame for {silent:.1f} s ({self._bad_since_good} bad frames, "
                f"{self._rx_since_good} bytes; wrong baud rate or framing?)"
            )
        self.quality_while_lost = Quality.STALE
        self.errors["silent"] += 1
        raise ConnectionLost(f"silent for {silent:.1f} s (stale_after {stale_after:g} s)")

    # -- poll mode --------------------------------------------------------------------------
    async def read(self, group: PollGroup) -> SampleBatch:
        if self._lost is None or self._serial is None:
            raise ConnectionLost("not connected")
        if self._lost.done():
            self.errors["connection_lost"] += 1
            raise ConnectionLost(f"{self.config.port}: {self._lost.result()}")
        if self._first is not None:  # the answer that completed connect
            first, self._first = self._first, None
            return self._batch(first)
        rx_before = self._rx_total
        result = await self._request(self.config.response_timeout)
        if result is None and self._rx_total > rx_before:
            # bytes came back but never a whole frame (e.g. a wrong baud rate): a bad answer
            result = (time.time_ns(),
                      InstrumentFrameRejected("incomplete", "no whole frame in the answer"))
            self._account(result[1], b"")
        if result is None:
            self.errors["timeout"] += 1
            self._check_silence()
            return SampleBatch.empty()  # values keep their age until stale_after
        if isinstance(result[1], InstrumentFrameRejected):
            self._check_silence()
        return self._batch(result)

    async def _request(self, timeout: float) -> _Result | None:
        """Send the poll command; the next frame is the answer (None: timed out)."""
        self._framer.reset()  # a partial frame from before the request is not the answer
        self._sync_framer_counts()
        try:
            written = os.write(self._fd, self.config.poll_command_bytes)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            self._set_lost(f"write failed: {exc}")
            raise ConnectionLost(f"{self.config.port}: write failed: {exc}") from exc
        if written < len(self.config.poll_command_bytes):
            self.errors["write_failed"] += 1  # output buffer full (flow control held?)
            return None
        return await self._next_frame(timeout)

    async def _next_frame(self, timeout: float) -> _Result | None:
        assert self._lost is not None
        lost = self._lost
        answer: asyncio.Future[_Result] = asyncio.get_running_loop().create_future()
        self._answer = answer
        try:
            either: set[asyncio.Future[Any]] = {answer, lost}
            await asyncio.wait(either, timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._answer = None
        if answer.done():
            return answer.result()
        if lost.done():
            reason = lost.result()  # raises the error of a bug in the reader
            self.errors["connection_lost"] += 1
            raise ConnectionLost(f"{self.config.port}: {reason}")
        return None

    # -- receiving ----------------------------------------------------------------------------
    def _on_readable(self) -> None:
        data = read_ready(self._fd, self._set_lost)
        if data is None:
            return
        try:
            self._on_bytes(data)
        except Exception as exc:  # a bug, not bad bytes: end the connection as a crash
            self._set_lost("internal error", exc)
            raise

    def _on_bytes(self, data: bytes) -> None:
        now_ns = time.time_ns()
        self._rx_since_good += len(data)
        self._rx_total += len(data)
        frames = self._framer.feed(data)
        self._sync_framer_counts(now_ns)
        for payload in frames:
            try:
                result: _Result = (now_ns, self._parser.parse(payload))
            except InstrumentFrameRejected as rejected:
                self.errors["bytes_discarded"] += len(payload)
                result = (now_ns, rejected)
            self._on_result(result, payload)

    def _on_result(self, result: _Result, payload: bytes) -> None:
        """Count a frame, then hand it to the waiting request or the subscription."""
        self._account(result[1], payload)
        answer = self._answer
        if answer is not None and not answer.done():
            answer.set_result(result)
        elif self._emit is not None:
            self._deliver(result)
        elif self.config.mode == "poll":
            self.errors["unsolicited"] += 1

    def _account(self, frame: ParsedFrame | InstrumentFrameRejected, payload: bytes) -> None:
        if isinstance(frame, ParsedFrame):
            self.frames_ok += 1
            self._last_good = time.monotonic()
            self._bad_since_good = 0
            self._rx_since_good = 0
            if frame.bad_fields:
                self.errors["bad_value"] += frame.bad_fields
        else:
            self.frames_bad += 1
            self._bad_since_good += 1
            self._last_rejection = frame
            self.errors[f"frame_{frame.reason}"] += 1
            level = logging.DEBUG if self._warned else logging.WARNING
            self._warned = True
            log.log(level, "%s: bad frame (%s: %s): %r", self.device_name, frame.reason, frame,
                    payload[:80])

    def _deliver(self, result: _Result) -> None:
        """Stream mode: a batch per good frame; BAD once per run of rejected frames."""
        if self._emit is None:
            return
        if isinstance(result[1], InstrumentFrameRejected):
            if self._bad_emitted:
                return
            self._bad_emitted = True
        else:
            self._bad_emitted = False
        self._emit(self._batch(result))

    def _batch(self, result: _Result) -> SampleBatch:
        ts_ns, frame = result
        ids = self._tag_id_array
        if isinstance(frame, InstrumentFrameRejected):
            return SampleBatch.of(ids, np.full(len(ids), np.nan), ts_ns, Quality.BAD)
        return SampleBatch(ids, frame.values, np.full(len(ids), ts_ns, np.int64), frame.quality)

    def _sync_framer_counts(self, now_ns: int | None = None) -> None:
        """Add what the framer dropped to the counters; with ``now_ns`` (bytes just arrived),
        frames it dropped count as rejected frames too (BAD, an answer that was garbage)."""
        framer = self._framer
        discarded = framer.bytes_discarded - self._synced["bytes_discarded"]
        if discarded:
            self.errors["bytes_discarded"] += discarded
            self._synced["bytes_discarded"] = framer.bytes_discarded
        dropped: tuple[tuple[FrameReason, int, str], ...] = (
            ("overflow", framer.overflows, "longer than max_frame"),
            ("partial", framer.partials, "cut off by the start of another frame"),
        )
        for reason, total, detail in dropped:
            delta = total - self._synced[reason]
            if not delta:
                continue
            self._synced[reason] = total
            if now_ns is None:
                self.errors[f"frame_{reason}"] += delta
                self.frames_bad += delta
                continue
            self.errors[f"frame_{reason}"] += delta - 1  # _on_result counts one
            self.frames_bad += delta - 1
            self._on_result((now_ns, InstrumentFrameRejected(reason, detail)), b"")

    def _set_lost(self, reason: str, exc: BaseException | None = None) -> None:
        if self._fd >= 0:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._fd)
        if self._lost is not None and not self._lost.done():
            if exc is None:
                self._lost.set_result(reason)
            else:
                self._lost.set_exception(exc)
