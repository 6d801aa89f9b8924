"""Property-based fuzzing of the mcu_node driver with whole, well-formed frames.

The decoder fuzz (test_fb_decoder_fuzz.py) stops at the frame; here every frame a
node can send (HELLO, READINGS, HEARTBEAT, ACK, NACK, ERROR, and any type with a
payload of any bytes), with any field values (u64 ticks up to 2**64 - 1, NaN and
infinite readings, tick rates of 0 and 2**32 - 1, foreign node ids), is encoded
by the project's encoders, written by the simulated node onto a real pty and read
by a running driver. After each example the node says its usual HELLO and sends
one good READINGS frame: the driver must still be running and turn it into
samples with the values sent and timestamps no later than their arrival.

Hypothesis runs in a worker thread (it is synchronous); each example is played on
the test's event loop, where the pty, the node and the driver live.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.config import McuNodeDeviceConfig
from firmware_bridge.driver import McuNodeDriver
from firmware_bridge.frames import MessageType, encode_frame
from firmware_bridge.messages import (
    MAX_READINGS,
    Ack,
    Error,
    Heartbeat,
    Hello,
    Message,
    Nack,
    NackReason,
    Reading,
    Readings,
    ReadingStatus,
    Sensor,
    encode_message,
)
from gateway.types import Quality, SampleBatch
from hil.devices.mcu_node import SENSORS, TICK_HZ, McuNodeSimulator, NodeSettings

NODE = 7
IDS = [10, 11, 12]
EXAMPLES = 150

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
u64 = st.integers(0, 2**64 - 1)
#: ticks and Unix ms: anything, and the edges of u64, int64 and float64 in particular
EDGES = [0, 1, 2**32 - 1, 2**53 + 1, 2**63 - 1000, 2**63 - 1, 2**63, 2**64 - 65536, 2**64 - 1,
         (2**63 - 1) // 1_000_000 - 65535, (2**63 - 1) // 1_000_000]
ticks = st.one_of(st.sampled_from(EDGES), st.integers(2**62, 2**64 - 1), st.integers(0, 2**40),
                  u64)
flags = st.one_of(st.just(0), st.just(1), u8)
short_text = st.text(max_size=12)
sensor_name = st.one_of(st.sampled_from([s.name for s in SENSORS]), short_text)
channel = st.one_of(st.integers(0, 3), u8)

hellos = st.builds(
    Hello,
    firmware=st.tuples(u8, u8, u8),
    tick_hz=st.one_of(st.just(TICK_HZ), st.sampled_from([0, 1, 32_768, 2**32 - 1]), u32),
    hardware=short_text,
    sensors=st.lists(st.builds(Sensor, channel, sensor_name, short_text), max_size=6).map(tuple),
    flags=u8,
)
readings = st.builds(
    Readings,
    base=ticks,
    readings=st.lists(
        st.builds(Reading, channel, u8, u16, st.floats(width=32)), max_size=MAX_READINGS
    ).map(tuple),
    flags=flags,
)
heartbeats = st.builds(Heartbeat, ticks, u16, u16)
message_type = st.one_of(st.sampled_from(list(MessageType)), u8)
acks = st.builds(Ack, u16, message_type)
nacks = st.builds(Nack, u16, message_type, st.one_of(st.sampled_from(list(NackReason)), u8), u8)
errors = st.builds(Error, u16, u8, short_text)
messages = st.one_of(readings, readings, heartbeats, hellos, acks, nacks, errors)
raw_payloads = st.tuples(st.sampled_from(list(MessageType)), st.binary(max_size=64))
#: (message, or a type with any payload; node id; sequence)
frames = st.tuples(st.one_of(messages, raw_payloads), st.one_of(st.just(NODE), u16), u16)


def wire(frame: tuple[Message | tuple[MessageType, bytes], int, int]) -> bytes:
    """One frame from the node's side, as the project's encoders put it on the line."""
    body, node_id, sequence = frame
    if isinstance(body, tuple):
        return encode_frame(body[0], node_id, sequence, body[1])
    return encode_message(body, node_id, sequence)


class Harness:
    """A simulated node on a pty and a subscribed driver, shared by the examples.

    When an example ended the driver's task, the next one starts on a fresh node,
    line and driver: no byte of the failed example reaches it (Hypothesis shrinks
    on clean state)."""

    def __init__(self) -> None:
        self.started_ns = time.time_ns()
        self.drivers = 0
        self.sim: McuNodeSimulator | None = None
        self.driver: McuNodeDriver | None = None
        self.task: asyncio.Task[None] | None = None
        self.batches: list[SampleBatch] = []
        self.arrived = asyncio.Event()
        self.examples = 0
        self.sent = 0

    def emit(self, batch: SampleBatch) -> None:
        self.batches.append(batch)
        self.arrived.set()

    async def start(self) -> None:
        await self.stop()
        quiet = NodeSettings(sample_interval_ms=60_000, samples_per_frame=5,
                             heartbeat_interval_ms=60_000)  # only the frames the test sends
        self.sim = McuNodeSimulator(node_id=NODE, seed=1, settings=quiet)
        await self.sim.start()
        config = McuNodeDeviceConfig.model_validate({
            "name": "node", "protocol": "mcu_node", "port": self.sim.serial_path,
            "node_id": NODE, "stale_after": "60s", "hello_timeout": "2s",
            "tags": [{"name": "vibration", "sensor": "vibration_rms"},
                     {"name": "temperature", "sensor": "temperature"},
                     {"name": "humidity", "channel": 2}],
        })
        self.driver = McuNodeDriver(config, IDS)
        self.drivers += 1
        await self.driver.connect()
        self.task = asyncio.create_task(self.driver.subscribe(self.emit))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.driver is not None:
            await self.driver.close()
        if self.sim is not None:
            await self.sim.stop()

    async def play(self, frames: list[bytes]) -> None:
        if self.task is None or self.task.done():
            await self.start()
        assert self.sim is not None
        self.examples += 1
        await self.wait_for(self.good_frame(hello_sequence=0))  # a reboot: the same start
        for frame in frames:
            self.sim.send_raw(frame)
        values = self.good_frame()
        batch = await self.wait_for(values)
        assert batch.tag_ids.tolist() == IDS * 2
        assert batch.values.tolist() == values
        assert (batch.quality == Quality.GOOD).all()
        now = time.time_ns()
        assert (batch.ts_ns <= now).all(), "a time after the frame arrived"
        assert (batch.ts_ns >= self.started_ns - 1_000_000_000).all(), "a time before the test"
        assert (np.diff(batch.ts_ns[::3]) == [10_000_000]).all()  # 10 ticks at 1 kHz

    def good_frame(self, hello_sequence: int = 1) -> list[float]:
        """The node's usual HELLO, then two rounds of all three sensors 10 ticks apart."""
        assert self.sim is not None
        self.sim.send_raw(encode_message(Hello((1, 0, 0), TICK_HZ, "cx-sim-node", SENSORS),
                                         NODE, hello_sequence))
        self.sent += 1
        values = [self.sent + c / 8 + r / 2 for r in range(2) for c in range(3)]
        rows = tuple(Reading(c, ReadingStatus.OK, 10 * r, values[3 * r + c])
                     for r in range(2) for c in range(3))
        tick = 10_000 + 20 * self.sent  # not the node's clock: the same ticks on every run
        self.sim.send_raw(encode_message(Readings(tick, rows), NODE, 2))
        return values

    async def wait_for(self, values: list[float]) -> SampleBatch:
        """The batch of the good frame with these values; fail when the driver's task ends."""
        assert self.task is not None
        deadline = asyncio.get_running_loop().time() + 5.0
        while True:
            for batch in self.batches:
                if values[0] in batch.values:
                    self.batches.clear()
                    return batch
            self.batches.clear()
            self.arrived.clear()
            left = deadline - asyncio.get_running_loop().time()
            assert left > 0, "the good frame after the example never became samples"
            waiter = asyncio.ensure_future(self.arrived.wait())
            await asyncio.wait({waiter, self.task}, timeout=left,
                               return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if self.task.done():
                raise AssertionError(f"the driver's task ended: {self.task.exception()!r}")


async def test_no_frame_a_node_can_send_stops_the_driver() -> None:
    harness = Harness()
    loop = asyncio.get_running_loop()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None)
    @given(st.lists(frames, min_size=1, max_size=6))
    def example(sent: list[tuple[Message | tuple[MessageType, bytes], int, int]]) -> None:
        data = [wire(frame) for frame in sent]
        asyncio.run_coroutine_threadsafe(harness.play(data), loop).result(timeout=30)

    try:
        await asyncio.to_thread(example)
    finally:
        await harness.stop()
    assert harness.drivers == 1, "a driver's task ended during the run"
    assert harness.examples >= EXAMPLES
    assert harness.driver is not None
    errors = harness.driver.errors
    assert errors["frame_payload"] > 0 and errors["tick_jumps"] > 0  # the fuzz reached both
