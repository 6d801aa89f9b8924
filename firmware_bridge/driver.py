"""The MCU node driver: a push driver reading framed telemetry from one node on a serial port.

The port may be shared with other nodes (RS-485): drivers attach to the port's
:class:`~firmware_bridge.node_port.NodePort`, kept in the runtime's
:class:`~gateway.serial_ports.SerialPorts`, which reads it once and routes frames
by node id. A firmware update (``firmware_bridge/update.py``) borrows the port
through :meth:`McuNodeDriver.write_raw`, ``smp_sink`` and the HELLO listeners.

``connect`` opens the port, asks the node for its HELLO (``HELLO_REQUEST``) and
waits for it (``hello_timeout``); then it sends the configured settings
(``SET_CONFIG``; the ACK or NACK is logged and counted when it arrives).
``subscribe`` delivers every READINGS frame as one :class:`SampleBatch`, with the
node's ticks mapped to wall-clock time (:mod:`firmware_bridge.clock`). It raises
:class:`ConnectionLost` when the port fails or the node is silent for
``stale_after``; the runner then marks the tags STALE (``quality_while_lost``) and
reports the device down, and reconnecting waits for the node's HELLO again.

Error counters (``driver.errors``): ``frame_<reason>`` for dropped frames (cobs,
short, crc, version, type, oversize, smp_broken, payload), ``sequence_gaps`` and
``frames_missed``, ``sequence_backwards``, ``other_node``, ``node_reboots``,
``node_error``, ``config_nack``, ``unknown_sensor``, ``unit_mismatch``, ``silent``,
``connection_lost``; ``tick_jumps`` and ``time_out_of_range`` (READINGS times, see
``_timestamps``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from drivers.base import Driver, Emit
from firmware_bridge.clock import INT64_MAX, MAX_LEAP_NS, TickClock
from firmware_bridge.config import McuNodeDeviceConfig
from firmware_bridge.frames import Frame, MessageType
from firmware_bridge.messages import (
    FLAG_UNIX_MS,
    Ack,
    ConfigKey,
    Error,
    Heartbeat,
    Hello,
    HelloRequest,
    Message,
    Nack,
    SetConfig,
    decode_message,
    encode_message,
    readings_array,
)
from firmware_bridge.node_port import NodePort
from gateway.errors import ConnectionLost, DeviceUnreachable, MessageError
from gateway.repeated_log import RepeatedKinds, RepeatedLog
from gateway.serial_ports import PortLease, PortUse, SerialPorts
from gateway.types import BAD_CODE, IntArray, Quality, SampleBatch

log = logging.getLogger(__name__)

#: reading status -> quality (0 ok, 1 uncertain, anything else a fault)
_QUALITY_OF_STATUS = np.full(256, Quality.BAD, np.uint8)
_QUALITY_OF_STATUS[0] = Quality.GOOD
_QUALITY_OF_STATUS[1] = Quality.UNCERTAIN


class McuNodeDriver(Driver):
    """One MCU sensor node on a serial port (USB CDC-ACM, UART, or an RS-485 line shared by
    several nodes: :class:`~firmware_bridge.node_port.NodePort`).

    ``ports``: the runtime's serial ports, where the node port of each port is kept; a
    driver built without them has ports of its own (it shares its port with no other driver).
    """

    quality_while_lost = Quality.STALE

    def __init__(self, config: McuNodeDeviceConfig, tag_ids: Sequence[int],
                 ports: SerialPorts | None = None) -> None:
        super().__init__(config.name, tag_ids, len(config.tags))
        self.config = config
        self._ports = ports if ports is not None else SerialPorts()
        self._lease: PortLease[NodePort] | None = None
        #: the node's latest HELLO (firmware, hardware, sensors)
        self.node: Hello | None = None
        self.frames_received = 0
        self.readings_received = 0
        #: MCUmgr SMP frames seen on the port
        self.smp_frames = 0
        #: where SMP frames go while a firmware update runs (firmware_bridge/update.py)
        self.smp_sink: Callable[[bytes], None] | None = None
        self._tag_id_array = np.asarray(self.tag_ids, np.int32)
        self._position_of_channel = np.full(256, -1, np.int64)
        self._missing: list[int] = []
        self._port: NodePort | None = None
        self._hello_listeners: list[Callable[[Hello, bool], None]] = []
        self._lost: asyncio.Future[str] | None = None
        self._hello_seen: asyncio.Event | None = None
        self._emit: Emit | None = None
        self._clock = TickClock()
        self._last_seq: int | None = None
        self._last_good = 0.0
        self._tx_seq = 0
        self._pending: dict[int, SetConfig] = {}
        self._logged_other_node = False
        # clock anomalies (a tick that leapt, a time past 2262): the first, then summaries
        self._clock_warnings = RepeatedKinds(log, f"{config.name}: node {config.node_id} clock")
        # a node can send errors or reboot over and over: the first, then summaries
        self._node_errors = RepeatedKinds(log, f"{config.name}: node {config.node_id} error")
        self._reboots = RepeatedLog(log, f"{config.name}: node {config.node_id} rebooted",
                                    logging.WARNING)  # fmt: skip

    # -- connection ---------------------------------------------------------------------
    async def connect(self) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        await self.close()  # a claim still held from before the port was lost
        self._lost = loop.create_future()
        use = PortUse(cfg.name, cfg.protocol, cfg.line_settings)
        lease = self._ports.claim(cfg.port, use, lambda: NodePort(cfg.port, cfg.baudrate))
        try:
            lease.port.attach(cfg.node_id, self)
        except BaseException:
            lease.release()
            raise
        self._lease, self._port = lease, lease.port
        self._hello_seen = asyncio.Event()
        self._last_seq = None
        self._pending.clear()
        self._clock.reset()
        self.node = None
        try:
            self._send(HelloRequest())
            hello: asyncio.Future[Any] = asyncio.ensure_future(self._hello_seen.wait())
            try:
                done, _ = await asyncio.wait({hello, self._lost}, timeout=cfg.hello_timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
            finally:
                hello.cancel()
            if self._lost.done():
                raise DeviceUnreachable(f"{cfg.port}: {self._lost.result()}")
            if not done:
                raise DeviceUnreachable(
                    f"no HELLO from node {cfg.node_id} on {cfg.port} within {cfg.hello_timeout:g} s"
                )
            self._send_settings()
        except (DeviceUnreachable, ConnectionLost) as exc:
            await self.close()
            raise DeviceUnreachable(str(exc)) from None
        self._last_good = time.monotonic()

    async def close(self) -> None:
        port, self._port = self._port, None
        lease, self._lease = self._lease, None
        if port is not None:
            port.detach(self.config.node_id, self)
        if lease is not None:
            lease.release()  # the last device on the port closes it
        if self._lost is not None and not self._lost.done():
            self._lost.set_result("closed")
        self._node_errors.due(force=True)
        self._clock_warnings.due(force=True)
        self._reboots.due(force=True)

    @property
    def connected(self) -> bool:
        return self._port is not None and self._port.is_open

    @property
    def line_node_ids(self) -> list[int]:
        """The node ids attached to this driver's port (more than one: a shared line)."""
        return list(self._port.listeners) if self._port is not None else []

    # -- subscription -------------------------------------------------------------------
    async def subscribe(self, emit: Emit) -> None:
        cfg = self.config
        if self._port is None or self._lost is None:
            raise ConnectionLost("not connected")
        lost = self._lost
        self._emit = emit
        try:
            if self._missing:  # tags the node does not announce: BAD, not silently absent
                ids = self._tag_id_array[self._missing]
                emit(SampleBatch.of(ids, np.full(len(ids), np.nan), time.time_ns(), Quality.BAD))
            check = min(0.1, cfg.stale_after / 5)
            while True:
                done, _ = await asyncio.wait({lost}, timeout=check)
                if done:
                    self.errors["connection_lost"] += 1
                    raise ConnectionLost(f"{cfg.port}: {lost.result()}")
                silent = time.monotonic() - self._last_good
                if silent > cfg.stale_after:
                    self.errors["silent"] += 1
                    raise ConnectionLost(
                        f"node {cfg.node_id} silent for {silent:.1f} s "
                        f"(stale_after {cfg.stale_after:g} s)"
                    )
        finally:
            self._emit = None

    # -- firmware update hooks ----------------------------------------------------------
    def write_raw(self, data: bytes) -> None:
        """Write bytes as they are to the node's line (SMP frames); ConnectionLost if down."""
        if self._port is None:
            raise ConnectionLost(f"{self.config.port}: not connected")
        self._port.write(data)

    def add_hello_listener(self, callback: Callable[[Hello, bool], None]) -> Callable[[], None]:
        """Call ``callback(hello, fresh)`` on every HELLO (``fresh``: the first since connect,
        or the node rebooted); return the function that removes it."""
        self._hello_listeners.append(callback)
        return lambda: self._hello_listeners.remove(callback)

    def request_hello(self) -> None:
        """Ask the node for its HELLO now (ConnectionLost when not connected)."""
        self._send(HelloRequest())

    # -- receiving (NodePort calls these) -----------------------------------------------
    def on_port_lost(self, reason: str, exc: BaseException | None) -> None:
        self._port = None
        self._set_lost(reason, exc)

    def on_line_errors(self, counts: Counter[str]) -> None:
        self.errors.update(counts)

    def on_unknown_node(self, frame: Frame) -> None:
        self.errors["other_node"] += 1
        if not self._logged_other_node:
            self._logged_other_node = True
            log.warning("%s: frames from node %d on %s, no device configured for it; dropped",
                        self.device_name, frame.node_id, self.config.port)

    def _set_lost(self, reason: str, exc: BaseException | None = None) -> None:
        if self._lost is not None and not self._lost.done():
            if exc is None:
                self._lost.set_result(reason)
            else:
                self._lost.set_exception(exc)

    def on_frame(self, frame: Frame) -> None:
        cfg = self.config
        arrival_ns = time.time_ns()
        self.frames_received += 1
        self._last_good = time.monotonic()
        if frame.type is MessageType.READINGS:
            self._check_sequence(frame.sequence)
            self._on_readings(frame, arrival_ns)
            return
        try:
            message = decode_message(frame)
        except MessageError as exc:
            self.errors["frame_payload"] += 1
            log.debug("%s: bad %s payload: %s", self.device_name, frame.type.name, exc)
            return
        if isinstance(message, Hello):
            self._on_hello(message, frame.sequence)
            return
        self._check_sequence(frame.sequence)
        if isinstance(message, Heartbeat):
            if self.node is not None:
                self._observe_tick(message.tick, arrival_ns)
            self._node_errors.due()  # summaries of what a node repeated
            self._clock_warnings.due()
            self._reboots.due()
        elif isinstance(message, Ack):
            if self._pending.pop(message.sequence, None) is not None:
                log.info("%s: node %d accepted the settings", self.device_name, cfg.node_id)
        elif isinstance(message, Nack):
            self._pending.pop(message.sequence, None)
            self.errors["config_nack"] += 1
            key = _key_name(message.detail)
            log.warning("%s: node %d refused the settings: %s (key %s)", self.device_name,
                        cfg.node_id, message.reason.name.lower(), key)
        elif isinstance(message, Error):
            self.errors["node_error"] += 1
            where = "" if message.channel == 0xFF else f" on channel {message.channel}"
            self._node_errors.failure(f"0x{message.code:04x}{where}: {message.text}",
                                      f"{message.code}/{message.channel}")  # fmt: skip

    def _check_sequence(self, seq: int) -> None:
        last = self._last_seq
        self._last_seq = seq
        if last is None:
            return
        expected = (last + 1) & 0xFFFF
        if seq != expected:
            jump = (seq - expected) & 0xFFFF
            if jump < 0x8000:
                self.errors["sequence_gaps"] += 1
                self.errors["frames_missed"] += jump
            else:
                self.errors["sequence_backwards"] += 1

    def _on_hello(self, hello: Hello, seq: int) -> None:
        cfg = self.config
        first = self.node is None
        rebooted = not first and seq == 0
        if rebooted:
            self.errors["node_reboots"] += 1
            self._reboots.failure("its sequence started again at 0")
        if first or rebooted or hello.tick_hz != self._clock.tick_hz:
            self._clock.reset(hello.tick_hz)
        self._last_seq = seq
        self.node = hello
        if first:
            fw = ".".join(map(str, hello.firmware))
            log.info("%s: node %d is %s, firmware %s, %d sensors", self.device_name,
                     cfg.node_id, hello.hardware, fw, len(hello.sensors))
        self._map_channels(hello, log_problems=first)
        if rebooted and self._port is not None:
            self._send_settings()  # a rebooted node forgot them
        if self._hello_seen is not None:
            self._hello_seen.set()
        for listener in list(self._hello_listeners):
            listener(hello, first or rebooted)

    def _map_channels(self, hello: Hello, log_problems: bool) -> None:
        by_name = {s.name: s for s in hello.sensors}
        by_channel = {s.channel: s for s in hello.sensors}
        self._position_of_channel[:] = -1
        missing: list[int] = []
        for pos, tag in enumerate(self.config.tags):
            sensor = by_name.get(tag.sensor) if tag.sensor is not None else by_channel.get(
                tag.channel if tag.channel is not None else -1)
            if sensor is None:
                if tag.channel is not None:  # numbered channels work unannounced
                    self._position_of_channel[tag.channel] = pos
                    continue
                missing.append(pos)
                if log_problems:
                    self.errors["unknown_sensor"] += 1
                    log.warning("%s: tag %s: the node has no sensor %r (it has %s); the tag "
                                "is BAD", self.device_name, tag.name, tag.sensor,
                                ", ".join(sorted(by_name)) or "none")
                continue
            self._position_of_channel[sensor.channel] = pos
            if log_problems and tag.unit and sensor.unit and tag.unit != sensor.unit:
                self.errors["unit_mismatch"] += 1
                log.warning("%s: tag %s is configured in %s but the node reports %s in %s",
                            self.device_name, tag.name, tag.unit, sensor.name, sensor.unit)
        self._missing = missing

    def _on_readings(self, frame: Frame, arrival_ns: int) -> None:
        if self.node is None:  # no tick rate yet: ask again, drop these
            self._send(HelloRequest())
            return
        try:
            flags, base, rows = readings_array(frame.payload)
        except MessageError as exc:
            self.errors["frame_payload"] += 1
            log.debug("%s: bad READINGS payload: %s", self.device_name, exc)
            return
        if not len(rows):
            return
        ts = self._timestamps(flags, base, rows["offset"].astype(np.int64), arrival_ns)
        positions = self._position_of_channel[rows["channel"]]
        keep = positions >= 0
        self.readings_received += len(rows)
        if not keep.all():
            rows, positions, ts = rows[keep], positions[keep], ts[keep]
        if not len(rows):
            return
        quality = _QUALITY_OF_STATUS[rows["status"]]
        values = rows["value"].astype(np.float64)
        values[quality == BAD_CODE] = np.nan
        batch = SampleBatch(self._tag_id_array[positions], values, ts.astype(np.int64), quality)
        if self._emit is not None:
            self._emit(batch)

    def _timestamps(self, flags: int, base: int, offsets: IntArray, arrival_ns: int) -> IntArray:
        """Wall-clock ns of the readings at ``base + offsets``: any u64 base maps, none raises.

        Node ticks go through the tick clock (exact integers); a tick that leapt ahead
        restarts it at this frame (``tick_jumps``). Unix ms after 2262 do not fit int64
        ns: those readings keep their values and spacing, the newest stamped with the
        arrival time (``time_out_of_range``).
        """
        if flags & FLAG_UNIX_MS:
            first = base * 1_000_000
            if first + int(offsets.max()) * 1_000_000 <= INT64_MAX:
                return first + offsets * 1_000_000
            hz = 1000
        else:
            hz = self._clock.tick_hz
            self._observe_tick(base + int(offsets.max()), arrival_ns)
            ts = self._clock.to_ns(base, offsets)
            if ts is not None:
                return ts
        self.errors["time_out_of_range"] += 1
        self._clock_warnings.failure(
            f"READINGS base {base} (flags {flags:#04x}) is no time int64 ns can hold; stamped "
            "with the arrival time (counted in time_out_of_range)", "time_out_of_range")
        return arrival_ns - ((int(offsets.max()) - offsets) * 1_000_000_000) // hz

    def _observe_tick(self, tick: int, arrival_ns: int) -> None:
        """Feed the tick clock; count and log a tick that leapt ahead (it restarts there)."""
        if self._clock.observe(tick, arrival_ns):
            self.errors["tick_jumps"] += 1
            self._clock_warnings.failure(
                f"tick leapt to {tick}, more than {MAX_LEAP_NS // 1_000_000_000} s ahead of the "
                "gateway's clock; tick times restart at this frame (counted in tick_jumps)",
                "tick_jumps")

    # -- sending ------------------------------------------------------------------------
    def _send(self, message: Message) -> int:
        """Send one message to the node; return its sequence."""
        port = self._port
        if port is None:
            raise ConnectionLost("not connected")
        seq = self._tx_seq
        self._tx_seq = (seq + 1) & 0xFFFF
        port.write(encode_message(message, self.config.node_id, seq))
        return seq

    def _send_settings(self) -> None:
        cfg = self.config
        entries: list[tuple[int, int]] = []
        if cfg.sample_interval is not None:
            ms = max(1, round(cfg.sample_interval * 1000))
            entries.append((ConfigKey.SAMPLE_INTERVAL_MS, ms))
        if cfg.samples_per_frame is not None:
            entries.append((ConfigKey.SAMPLES_PER_FRAME, cfg.samples_per_frame))
        if cfg.heartbeat_interval is not None:
            entries.append(
                (ConfigKey.HEARTBEAT_INTERVAL_MS, max(1, round(cfg.heartbeat_interval * 1000)))
            )
        if entries:
            message = SetConfig(tuple(entries))
            self._pending[self._send(message)] = message


def _key_name(key: int) -> str:
    try:
        return ConfigKey(key).name.lower()
    except ValueError:
        return str(key)
