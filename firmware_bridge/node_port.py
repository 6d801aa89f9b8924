"""One serial port shared by the MCU nodes on it: one reader, frames routed by node id.

Several nodes may hang on one RS-485 line; the frame header carries the node id.
The device runner still creates one :class:`~firmware_bridge.driver.McuNodeDriver`
per node (own tags, own device state). The runtime's
:class:`~gateway.serial_ports.SerialPorts` keeps one :class:`NodePort` per port:
each driver claims it and *attaches* its node id on ``connect``, *detaches* and
releases its claim on ``close``. The port opens with the first attachment (again
after it was lost) and closes after the last release. Every byte is read once,
decoded once, and each frame goes to the driver of its node id.

Line errors (bad frames) and frames from unknown node ids cannot be attributed to
a node: they are counted on the port's *owner*, the earliest attached driver.
MCUmgr SMP frames carry no node id: they go to the one driver with an SMP sink
(a firmware update in progress), else they are counted on the owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from typing import Protocol

import serial

from firmware_bridge.frames import BadFrame, Frame, FrameDecoder
from gateway.errors import ConnectionLost, DeviceUnreachable
from gateway.serial_io import read_ready

log = logging.getLogger(__name__)

SERIAL_ERRORS = (serial.SerialException, OSError, ValueError)


class PortListener(Protocol):
    """What a :class:`NodePort` needs from a driver attached to it."""

    device_name: str

    def on_frame(self, frame: Frame) -> None: ...

    def on_port_lost(self, reason: str, exc: BaseException | None) -> None: ...

    #: where SMP frames go while a firmware update runs (None: counted only)
    smp_sink: Callable[[bytes], None] | None
    smp_frames: int

    def on_line_errors(self, counts: Counter[str]) -> None: ...

    def on_unknown_node(self, frame: Frame) -> None: ...


class NodePort:
    """A serial port with its reader and frame decoder, shared by the nodes on it."""

    def __init__(self, path: str, baudrate: int) -> None:
        self.path = path
        self.baudrate = baudrate
        self.listeners: dict[int, PortListener] = {}
        self.bytes_in = 0
        self._serial: serial.Serial | None = None
        self._fd = -1
        self._decoder = FrameDecoder(on_smp=self._on_smp)
        self._bad_synced: Counter[BadFrame] = Counter()

    def attach(self, node_id: int, listener: PortListener) -> None:
        """Route ``node_id``'s frames to ``listener``, opening the port if it is not open.

        Raise :class:`DeviceUnreachable` when the port cannot be opened or another
        device already listens for ``node_id``.
        """
        other = self.listeners.get(node_id)
        if other is not None and other is not listener:
            raise DeviceUnreachable(
                f"{self.path}: node {node_id} is already attached by device "
                f"{other.device_name!r}; device {listener.device_name!r} cannot attach it too"
            )
        if self._serial is None:
            self._open()
        self.listeners[node_id] = listener

    def detach(self, node_id: int, listener: PortListener) -> None:
        """Stop routing ``node_id``'s frames to ``listener`` (the port stays open until the
        last claim on it is released)."""
        if self.listeners.get(node_id) is listener:
            del self.listeners[node_id]

    def close(self) -> None:
        """Close the port (the registry calls this after the last device released it)."""
        self.listeners.clear()
        self._close()

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    @property
    def owner(self) -> PortListener | None:
        return next(iter(self.listeners.values()), None)

    def write(self, data: bytes) -> None:
        """Write ``data`` to the line; raise :class:`ConnectionLost` when the port fails."""
        port = self._serial
        if port is None:
            raise ConnectionLost(f"{self.path}: not open")
        try:
            port.write(data)
        except SERIAL_ERRORS as exc:
            self._lost(f"write failed: {exc}")
            raise ConnectionLost(f"{self.path}: write failed: {exc}") from exc

    # -- internals ----------------------------------------------------------------------
    def _open(self) -> None:
        try:
            port = serial.Serial(self.path, self.baudrate, timeout=0, write_timeout=1.0,
                                 exclusive=True)
        except SERIAL_ERRORS as exc:
            raise DeviceUnreachable(f"cannot open serial port {self.path}: {exc}") from exc
        self._serial, self._fd = port, port.fileno()
        self._decoder = FrameDecoder(on_smp=self._on_smp)  # nothing half-read from before
        self._bad_synced.clear()
        with contextlib.suppress(*SERIAL_ERRORS):
            port.reset_input_buffer()  # bytes of unknown age from before we listened
        asyncio.get_running_loop().add_reader(self._fd, self._on_readable)
        log.debug("opened %s at %d baud", self.path, self.baudrate)

    def _close(self) -> None:
        port, self._serial = self._serial, None
        if port is None:
            return
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._fd)
        self._fd = -1
        with contextlib.suppress(Exception):
            port.close()

    def _lost(self, reason: str, exc: BaseException | None = None) -> None:
        """The port failed: close it and tell every node (each reconnects on its own, and
        the first to attach again reopens it)."""
        listeners = list(self.listeners.values())
        self.listeners.clear()
        self._close()
        for listener in listeners:
            listener.on_port_lost(reason, exc)

    def _on_readable(self) -> None:
        data = read_ready(self._fd, self._lost)
        if data is None:
            return
        self.bytes_in += len(data)
        decoder = self._decoder
        before = decoder.bad_total
        try:
            for frame in decoder.feed(data):
                listener = self.listeners.get(frame.node_id)
                if listener is not None:
                    listener.on_frame(frame)
                elif (owner := self.owner) is not None:
                    owner.on_unknown_node(frame)
        except Exception as exc:  # a bug, not bad bytes: end the subscriptions as a crash
            self._lost("internal error", exc)
            raise
        if decoder.bad_total != before and (owner := self.owner) is not None:
            delta: Counter[str] = Counter()
            for reason, count in decoder.bad.items():
                if count - self._bad_synced[reason]:
                    delta[f"frame_{reason.value}"] += count - self._bad_synced[reason]
                    self._bad_synced[reason] = count
            owner.on_line_errors(delta)

    def _on_smp(self, data: bytes) -> None:
        taker = next((x for x in self.listeners.values() if x.smp_sink is not None), self.owner)
        if taker is None:
            return
        taker.smp_frames += 1
        if taker.smp_sink is not None:
            taker.smp_sink(data)
