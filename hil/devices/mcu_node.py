"""Simulated MCU sensor node on a pty pair, speaking firmware_bridge/PROTOCOL.md.

The node measures vibration RMS (mm/s), temperature (degC) and humidity (%RH)
from seeded, deterministic signals (:func:`sensor_value`), says HELLO when it
starts, sends READINGS in batches at its sample interval, a HEARTBEAT when it has
nothing else to send, and answers HELLO_REQUEST and SET_CONFIG (ACK, or NACK for an
unknown key or a value out of range). Its tick is 1 kHz from its start.

The gateway opens :attr:`McuNodeSimulator.serial_path`. Faults: :meth:`inject_garbage`,
:attr:`silent` (sends and answers nothing, as a hung node), :meth:`skip_sequence`
(frames lost on the way), :meth:`reboot`, :meth:`send` / :meth:`send_raw` (any
message or bytes), and the line's own (``line.cut``,
``line.garble_answers``; ``line.baudrate`` paces the pty like a real line).
:attr:`history` keeps what was sent, for tests.

Firmware: the node answers MCUmgr SMP on the same line (:attr:`smp`, a
:class:`~hil.devices.smp_server.SmpServer` with MCUboot's slots and test /
confirm / revert); an SMP reset reboots it after ``boot_time`` into the image
MCUboot picks, and its HELLO reports that image's version (:attr:`firmware`).

:class:`McuNodeBus` puts several nodes on one pty: a half-duplex RS-485 line.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
from collections import deque
from dataclasses import dataclass

import numpy as np

from firmware_bridge.frames import BROADCAST, Frame, FrameDecoder, MessageType
from firmware_bridge.image import FirmwareImage, build_image
from firmware_bridge.messages import (
    MAX_READINGS,
    Ack,
    ConfigKey,
    Heartbeat,
    Hello,
    Message,
    Nack,
    NackReason,
    Reading,
    Readings,
    ReadingStatus,
    Sensor,
    SetConfig,
    decode_message,
    encode_message,
)
from gateway.errors import MessageError
from hil.devices.lifecycle import SimulatedDevice
from hil.devices.pty_link import PtyLink
from hil.devices.smp_server import SmpServer

log = logging.getLogger(__name__)

SENSORS: tuple[Sensor, ...] = (
    Sensor(0, "vibration_rms", "mm/s"),
    Sensor(1, "temperature", "degC"),
    Sensor(2, "humidity", "%RH"),
)
TICK_HZ = 1000
#: accepted SET_CONFIG ranges, by key
CONFIG_RANGES: dict[int, tuple[int, int]] = {
    ConfigKey.SAMPLE_INTERVAL_MS: (1, 60_000),
    ConfigKey.SAMPLES_PER_FRAME: (1, MAX_READINGS // len(SENSORS)),
    ConfigKey.HEARTBEAT_INTERVAL_MS: (100, 60_000),
    ConfigKey.CHANNEL_MASK: (1, 0b111),
}


def sensor_value(seed: int, channel: int, tick: int) -> float:
    """The node's reading of ``channel`` at ``tick``, rounded to float32 as sent."""
    t = tick / TICK_HZ
    # a cheap deterministic hash of (seed, channel, tick) in [-0.5, 0.5)
    noise = ((tick * 2654435761 + channel * 40503 + seed * 2246822519) % 65536) / 65536 - 0.5
    phase = (seed % 97) * 0.1
    if channel == 0:
        value = 2.0 + 0.8 * math.sin(2 * math.pi * t / 7 + phase) + 0.2 * noise
    elif channel == 1:
        value = 25.0 + 3.0 * math.sin(2 * math.pi * t / 600 + phase) + 0.05 * noise
    else:
        value = 45.0 + 5.0 * math.sin(2 * math.pi * t / 900 + phase) + 0.2 * noise
    return float(np.float32(value))


@dataclass(slots=True)
class NodeSettings:
    sample_interval_ms: int = 100
    samples_per_frame: int = 5
    heartbeat_interval_ms: int = 1000
    channel_mask: int = 0b111


class McuNodeSimulator(SimulatedDevice):
    """A sensor node on the device end of a :class:`PtyLink`; use ``async with``."""

    def __init__(
        self,
        node_id: int = 1,
        seed: int = 0,
        settings: NodeSettings | None = None,
        firmware: tuple[int, int, int] = (1, 0, 0),
        hardware: str = "cx-sim-node",
        history: int = 10_000,
        image: bytes | None = None,
        boot_time: float = 0.2,
        line: PtyLink | None = None,
    ) -> None:
        self.node_id = node_id
        self.seed = seed
        self.hardware = hardware
        primary = FirmwareImage.parse(image or build_image(firmware, 4096, seed=seed))
        #: the MCUmgr SMP server (image and OS groups, MCUboot slots): hil/devices/smp_server.py
        self.smp = SmpServer(primary, self._reset_requested)
        #: seconds from an SMP reset to the HELLO of the image that boots
        self.boot_time = boot_time
        #: True while rebooting after an SMP reset: the node sends and answers nothing
        self.booting = False
        #: boots of an image that failed its self-test (the node reset again and reverted)
        self.self_test_failures = 0
        self._defaults = settings or NodeSettings()
        self.settings = dataclasses.replace(self._defaults)
        #: the virtual serial line: faults on the cable (cut, garble_answers), ``baudrate``
        #: pacing; on a shared line (:class:`McuNodeBus`) the bus opens it and hands frames
        #: to every node
        self._shared = False
        self.line = line if line is not None else PtyLink(seed)
        #: when True the node sends and answers nothing (a hung node)
        self.silent = False
        #: (channel, tick, value) of the readings sent, newest last
        self.history: deque[tuple[int, int, float]] = deque(maxlen=history)
        self.frames_sent = 0
        self.readings_sent = 0
        self.rx_bad = 0
        self.configs_applied = 0
        self.tx_dropped = 0
        self._seq = 0
        self._fd = -1
        self._boot = 0.0
        self._decoder = FrameDecoder(on_smp=self.on_smp_line)
        self._reset_task: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    @property
    def serial_path(self) -> str:
        """The serial device the gateway opens."""
        if not self.line.gateway_path:
            raise RuntimeError("start() the simulator first")
        return self.line.gateway_path

    @property
    def firmware(self) -> tuple[int, int, int]:
        """The version of the image running now (what HELLO reports)."""
        return self.smp.running.version

    @property
    def tick(self) -> int:
        """The node's tick now."""
        return int((asyncio.get_running_loop().time() - self._boot) * TICK_HZ)

    async def start(self, fd: int | None = None) -> None:
        """Open the line (or use the shared line's ``fd``), say HELLO and start sampling."""
        loop = asyncio.get_running_loop()
        self._shared = fd is not None
        if fd is None:
            self.line.start()
            self._fd = os.open(self.line.device_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            loop.add_reader(self._fd, self._on_readable)
        else:
            self._fd = fd
        self._boot = loop.time()
        self._send(self._hello())
        self._task = asyncio.create_task(self._run(), name=f"mcu-node-{self.node_id}")
        log.info("mcu-node %d on %s (seed %d)", self.node_id, self.serial_path, self.seed)

    async def stop(self) -> None:
        for task in (self._task, self._reset_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._reset_task = None
        if self._shared:
            self._fd = -1
            return
        if self._fd >= 0:
            asyncio.get_running_loop().remove_reader(self._fd)
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        self.line.stop()

    # -- faults -------------------------------------------------------------------------
    def inject_garbage(self, count: int = 32) -> bytes:
        """Random bytes to the gateway now (line noise)."""
        return self.line.inject_garbage(count)

    def skip_sequence(self, frames: int) -> None:
        """The next frame's sequence jumps by ``frames`` (as if they were lost)."""
        self._seq = (self._seq + frames) & 0xFFFF

    def reboot(self) -> None:
        """Restart: tick and sequence from 0, default settings, a new HELLO."""
        self._seq = 0
        self._boot = asyncio.get_running_loop().time()
        self.settings = dataclasses.replace(self._defaults)
        self._send(self._hello())
        self._wake.set()

    def send(self, message: Message) -> None:
        """Send any message now, with the node's id and next sequence (tests, scenarios)."""
        self._send(message)

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are from the node's side (e.g. an MCUmgr SMP frame)."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._fd, data)

    # -- sending ------------------------------------------------------------------------
    def _hello(self) -> Hello:
        return Hello(self.firmware, TICK_HZ, self.hardware, SENSORS)

    def _send(self, message: Message) -> None:
        if self.silent or self.booting:
            return
        data = encode_message(message, self.node_id, self._seq)
        self._seq = (self._seq + 1) & 0xFFFF
        self.frames_sent += 1
        try:
            written = os.write(self._fd, data)
        except (BlockingIOError, OSError):
            written = 0
        if written < len(data):
            self.tx_dropped += 1

    async def _run(self) -> None:
        """Sample on schedule (catching up in bursts after a late wake-up) and send."""
        loop = asyncio.get_running_loop()
        pending: list[Reading] = []
        base = 0
        rounds = 0
        next_tick = self.tick
        last_sent = loop.time()
        boot = self._boot
        while True:
            if self._boot != boot:  # rebooted: start over
                boot, pending, rounds, next_tick = self._boot, [], 0, 0
            s = self.settings
            interval = max(1, s.sample_interval_ms * TICK_HZ // 1000)
            now_tick = self.tick
            while next_tick <= now_tick:
                if not pending:
                    base = next_tick
                for sensor in SENSORS:
                    if s.channel_mask >> sensor.channel & 1:
                        value = sensor_value(self.seed, sensor.channel, next_tick)
                        pending.append(
                            Reading(sensor.channel, ReadingStatus.OK, next_tick - base, value)
                        )
                rounds += 1
                next_tick += interval
                full = rounds >= s.samples_per_frame or len(pending) + 3 > MAX_READINGS
                if full or next_tick - base > 0xFFFF:
                    if not self.silent:
                        self._send(Readings(base, tuple(pending)))
                        self.readings_sent += len(pending)
                        self.history.extend((r.channel, base + r.offset, r.value)
                                            for r in pending)
                        last_sent = loop.time()
                    pending, rounds = [], 0
            if loop.time() - last_sent >= s.heartbeat_interval_ms / 1000:
                self._send(Heartbeat(self.tick, 0, self.rx_bad))
                last_sent = loop.time()
            due = (next_tick - self.tick) / TICK_HZ
            heartbeat_due = last_sent + s.heartbeat_interval_ms / 1000 - loop.time()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0005, min(due, heartbeat_due)))

    # -- receiving ----------------------------------------------------------------------
    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except OSError:
            return
        before = self._decoder.bad_total
        frames = self._decoder.feed(data)
        self.rx_bad += self._decoder.bad_total - before
        for frame in frames:
            self._on_frame(frame)

    def on_smp_line(self, line: bytes) -> None:
        """One MCUmgr SMP fragment from the gateway: answer it between telemetry frames."""
        if self.silent or self.booting:
            return
        for answer in self.smp.feed_line(line):
            self.send_raw(answer)

    def _reset_requested(self) -> None:
        if self._reset_task is None or self._reset_task.done():
            self._reset_task = asyncio.get_running_loop().create_task(self._reset())

    async def _reset(self) -> None:
        """An SMP reset: answer first, then MCUboot picks the image, then the new HELLO."""
        await asyncio.sleep(0.02)
        self.booting = True
        try:
            await asyncio.sleep(self.boot_time)
            while self.smp.boot():  # a bad image crashes in its self-test: reset, revert
                self.self_test_failures += 1
                log.warning("mcu-node %d: image %s failed its self-test; resetting",
                            self.node_id, self.smp.running.version_text)
                await asyncio.sleep(self.boot_time)
        finally:
            self.booting = False
        log.info("mcu-node %d: booted firmware %s", self.node_id, self.smp.running.version_text)
        self.reboot()

    def on_frame(self, frame: Frame) -> None:
        """A telemetry frame from the gateway (the shared line calls this for every node)."""
        self._on_frame(frame)

    def _on_frame(self, frame: Frame) -> None:
        if self.silent or self.booting or frame.node_id not in (self.node_id, BROADCAST):
            return
        try:
            message = decode_message(frame)
        except MessageError:
            self.rx_bad += 1
            return
        if frame.type is MessageType.HELLO_REQUEST:
            self._send(self._hello())
        elif isinstance(message, SetConfig):
            self._send(self._apply(message, frame.sequence))
            self._wake.set()

    def _apply(self, message: SetConfig, seq: int) -> Ack | Nack:
        """All entries or none: ACK, or NACK naming the first key refused."""
        names = {
            ConfigKey.SAMPLE_INTERVAL_MS: "sample_interval_ms",
            ConfigKey.SAMPLES_PER_FRAME: "samples_per_frame",
            ConfigKey.HEARTBEAT_INTERVAL_MS: "heartbeat_interval_ms",
            ConfigKey.CHANNEL_MASK: "channel_mask",
        }
        for key, value in message.entries:
            if key not in CONFIG_RANGES:
                return Nack(seq, MessageType.SET_CONFIG, NackReason.UNKNOWN_KEY, key)
            low, high = CONFIG_RANGES[key]
            if not low <= value <= high:
                return Nack(seq, MessageType.SET_CONFIG, NackReason.OUT_OF_RANGE, key)
        for key, value in message.entries:
            setattr(self.settings, names[ConfigKey(key)], value)
        self.configs_applied += 1
        log.info("mcu-node %d: settings %s", self.node_id, self.settings)
        return Ack(seq, MessageType.SET_CONFIG)


class McuNodeBus(SimulatedDevice):
    """Several simulated nodes on one half-duplex RS-485 line (one pty pair).

    One reader on the device end decodes what the gateway sends and hands every
    frame to every node; each node answers only its own id (or a broadcast). Nodes
    write whole frames, so their frames never interleave on the line. MCUmgr SMP
    frames carry no node id: they go to the node ``smp_node_id`` (default: the first).
    """

    def __init__(self, node_ids: list[int], seed: int = 0, smp_node_id: int | None = None,
                 **node_kw: object) -> None:
        if len(set(node_ids)) != len(node_ids) or not node_ids:
            raise ValueError(f"node ids must be distinct and not empty: {node_ids}")
        self.line = PtyLink(seed)
        self.nodes = {
            nid: McuNodeSimulator(node_id=nid, seed=seed + i, line=self.line, **node_kw)  # type: ignore[arg-type]
            for i, nid in enumerate(node_ids)
        }
        self.smp_node_id = node_ids[0] if smp_node_id is None else smp_node_id
        self.rx_bad = 0
        self._decoder = FrameDecoder(on_smp=self._on_smp_line)
        self._fd = -1

    @property
    def serial_path(self) -> str:
        """The serial device the gateway opens (all nodes' devices name it as ``port``)."""
        if not self.line.gateway_path:
            raise RuntimeError("start() the bus first")
        return self.line.gateway_path

    async def start(self) -> None:
        self.line.start()
        self._fd = os.open(self.line.device_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        asyncio.get_running_loop().add_reader(self._fd, self._on_readable)
        for node in self.nodes.values():
            await node.start(fd=self._fd)
        log.info("mcu-node bus on %s: nodes %s", self.serial_path,
                 ", ".join(map(str, self.nodes)))

    async def stop(self) -> None:
        for node in self.nodes.values():
            await node.stop()
        if self._fd >= 0:
            asyncio.get_running_loop().remove_reader(self._fd)
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        self.line.stop()

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except OSError:
            return
        before = self._decoder.bad_total
        frames = self._decoder.feed(data)
        self.rx_bad += self._decoder.bad_total - before
        for frame in frames:
            for node in self.nodes.values():
                node.on_frame(frame)

    def _on_smp_line(self, line: bytes) -> None:
        node = self.nodes.get(self.smp_node_id)
        if node is not None:
            node.on_smp_line(line)
