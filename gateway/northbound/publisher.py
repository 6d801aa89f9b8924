"""The northbound stage: gather pipeline output into messages, keep them in the
outbox, publish them in order with a bounded number in flight, birth on every
connect, death on shutdown.

Replay and live data: on every connect, what waits in the outbox becomes the
backlog (:meth:`Outbox.mark_backlog`). The sender then fills the in-flight window
alternating between the oldest backlog message and the oldest live message; the
backlog is further limited to ``spool.replay_rate`` messages/s by a token bucket.
Live data thus keeps at least every other send slot and never waits for the
backlog, and the backlog keeps its rate however busy live data is. Each stream is
in ``seq`` order; between them, receivers reorder by ``seq`` (see
docs/contract-json.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.commands.result import CommandResult
from gateway.config.models import NorthboundConfig
from gateway.northbound.contract_json import JsonContract
from gateway.northbound.message import OutboundMessage
from gateway.northbound.mqtt_link import MqttLink
from gateway.northbound.outbox import Outbox
from gateway.northbound.sequence import SequenceStore
from gateway.types import SampleBatch, now_ns

log = logging.getLogger(__name__)


@dataclass(slots=True)
class NorthboundCounters:
    messages_published: int = 0
    samples_published: int = 0
    births: int = 0
    buffered_samples: int = 0
    encode_failures: int = 0
    encode_dropped_samples: int = 0
    #: samples of restricted tags kept inside the gateway (northbound.publish_restricted off)
    restricted_withheld: int = 0
    answers_unsent: int = 0


class ReplayBudget:
    """Token bucket bounding backlog replay to ``rate`` messages/s (bursts of ``rate/10``)."""

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate / 10)
        self._clock = clock
        self._tokens = self.capacity
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def ready(self) -> bool:
        self._refill()
        return self._tokens >= 1.0

    def spend(self) -> None:
        self._tokens -= 1.0

    def wait_s(self) -> float:
        """Seconds until the next token."""
        self._refill()
        return max(0.0, (1.0 - self._tokens) / self.rate)


class Northbound:
    def __init__(
        self,
        config: NorthboundConfig,
        contract: JsonContract,
        outbox: Outbox,
        sequence: SequenceStore,
        link_factory: Callable[
            [OutboundMessage, Callable[[int], None], Callable[[], None]], MqttLink
        ],
        device_states: Callable[[], dict[str, str]],
    ) -> None:
        self.config = config
        self.contract = contract
        self.outbox = outbox
        self.sequence = sequence
        self.session = now_ns() // 1_000_000  # identifies this run in births and deaths
        self.counters = NorthboundCounters()
        self._device_states = device_states
        self._buffer: list[SampleBatch] = []
        self._wake = asyncio.Event()
        self._inflight: dict[int, OutboundMessage] = {}
        self._birth_generation = 0
        self._backlog_generation = 0
        self._control_ids = itertools.count(-1, -1)  # ids of births and deaths
        self._ack_waiters: dict[int, asyncio.Event] = {}
        self._replay = ReplayBudget(config.spool.replay_rate, time.monotonic)
        self._backlog_turn = True  # whose turn it is when both streams wait
        self._replay_timer: asyncio.TimerHandle | None = None
        will = contract.death(self.session, now_ns(), "connection lost")
        self.link = link_factory(will, self._acked, self._wake.set)

    # --- input from the pipeline --------------------------------------------------------
    def submit(self, batch: SampleBatch) -> None:
        visible = self.contract.publishable(batch)
        if visible is not batch:
            self.counters.restricted_withheld += len(batch) - len(visible)
            batch = visible
        if len(batch):
            self._buffer.append(batch)
            self.counters.buffered_samples += len(batch)

    def flush(self) -> None:
        """Encode everything buffered into data messages in the outbox."""
        messages = self._encode()
        if messages:
            self.outbox.put_many(messages)  # on disk before the sender can take it
            self._wake.set()

    async def _flush_async(self) -> None:
        """:meth:`flush`, committing to the disk spool off the event loop, which keeps
        publishing meanwhile."""
        messages = self._encode()
        if messages:
            await self.outbox.put_many_async(messages)
            self._wake.set()

    def _encode(self) -> list[OutboundMessage]:
        """Everything buffered as data messages (not yet in the outbox)."""
        if not self._buffer:
            return []
        batch = SampleBatch.concat(self._buffer)
        self._buffer = []
        self.counters.buffered_samples = 0
        step = self.config.max_samples_per_message
        ts = now_ns()
        messages: list[OutboundMessage] = []
        for start in range(0, len(batch), step):
            chunk = batch.select(slice(start, start + step))  # type: ignore[arg-type]
            try:
                message = self.contract.data(chunk, self.sequence.peek, self.session, ts)
            except Exception:  # a bug in encoding must not stop the publisher
                self.counters.encode_failures += 1
                self.counters.encode_dropped_samples += len(chunk)
                log.exception("could not encode %d samples; they are dropped", len(chunk))
                continue
            self.sequence.next()
            messages.append(message)
        return messages

    # --- acknowledgements -----------------------------------------------------------------
    def _acked(self, message_id: int) -> None:
        message = self._inflight.pop(message_id, None)
        waiter = self._ack_waiters.get(message_id)
        if waiter is not None:
            waiter.set()
        self.outbox.ack(message_id)
        if message is not None:
            self.counters.messages_published += 1
            self.counters.samples_published += message.samples
        self._wake.set()

    # --- tasks ------------------------------------------------------------------------------
    async def run(self) -> None:
        self.link.start()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._batcher(), name="northbound-batcher")
            tasks.create_task(self._sender(), name="northbound-sender")

    async def _batcher(self) -> None:
        """Flush every ``publish_interval``; the spool's commit time is part of the interval
        (a flush starts at once when the previous one took longer)."""
        interval = self.config.publish_interval
        loop = asyncio.get_running_loop()
        due = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            due = max(due + interval, loop.time())
            await self._flush_async()
            self.outbox.maintain()

    def _birth(self) -> OutboundMessage:
        return self.contract.birth(
            self.session, self.sequence.peek, now_ns(), self._device_states(), self.outbox.stats()
        )

    async def _sender(self) -> None:
        max_inflight = self.config.outbox.max_inflight
        while True:
            self._wake.clear()
            if self.link.connected.is_set():
                if self._backlog_generation != self.link.generation:
                    self._backlog_generation = self.link.generation
                    backlog = self.outbox.mark_backlog()  # a new connection: replay
                    if backlog:
                        log.info("replaying %d messages at up to %g/s", backlog, self._replay.rate)
                if self._birth_generation != self.link.generation:
                    self._birth_generation = self.link.generation
                    birth = self._birth()
                    self._send(birth)
                    self.counters.births += 1
                while len(self._inflight) < max_inflight:
                    message = self._next_message()
                    if message is None:
                        break
                    self._send(message)
            await self._wake.wait()

    def _next_message(self) -> OutboundMessage | None:
        """Alternate backlog and live; the backlog only with a replay token."""
        for backlog in (True, False) if self._backlog_turn else (False, True):
            if not backlog:
                message = self.outbox.take_live()
            elif self._replay.ready():
                message = self.outbox.take_backlog()
                if message is not None:
                    self._replay.spend()
            else:
                message = None
                self._wake_for_replay()
            if message is not None:
                self._backlog_turn = not backlog
                return self._prepare(message, backlog)
        return None

    def _prepare(self, message: OutboundMessage, backlog: bool) -> OutboundMessage:
        """The message as it goes on the wire (the JSON contract sends it as stored)."""
        return message

    def _wake_for_replay(self) -> None:
        if self._replay_timer is None and self.outbox.stats().backlog:
            loop = asyncio.get_running_loop()
            self._replay_timer = loop.call_later(self._replay.wait_s(), self._replay_due)

    def _replay_due(self) -> None:
        self._replay_timer = None
        self._wake.set()

    def _send(self, message: OutboundMessage) -> None:
        if message.id == 0:  # birth and death do not pass through the outbox
            message.id = next(self._control_ids)
        self._inflight[message.id] = message
        self.link.publish(message)

    def send_control(self, message: OutboundMessage) -> None:
        """Publish a message outside the outbox (a command answer) if connected; otherwise
        it is dropped and counted (the audit log has the outcome)."""
        if not self.link.connected.is_set():
            self.counters.answers_unsent += 1
            log.warning("not connected: %s to %s not sent", message.kind, message.topic)
            return
        self._send(message)

    def rebirth(self) -> None:
        """Send a fresh birth on the current connection (e.g. after a device state change)."""
        self._birth_generation = -1
        self._wake.set()

    def device_state_changed(self, device: str, state: str) -> None:
        """A device went up or down: the birth lists device states, so birth again."""
        if state in ("up", "down"):
            self.rebirth()

    def answer_command(self, result: CommandResult) -> None:
        """Publish the outcome of a command from the brain (``cmd-result``)."""
        self.send_control(self.contract.cmd_result(result, now_ns()))

    # --- shutdown ---------------------------------------------------------------------------
    async def drain(self, timeout: float) -> bool:
        """Flush and wait until the outbox is empty and all is acknowledged."""
        self.flush()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            stats = self.outbox.stats()
            if stats.queued == 0 and not self._inflight:
                return True
            self._wake.set()
            await asyncio.sleep(0.02)
        return False

    async def publish_death(self, reason: str, timeout: float) -> bool:
        if not self.link.connected.is_set():
            return False
        death = self.contract.death(self.session, now_ns(), reason)
        death.id = next(self._control_ids)
        acked = asyncio.Event()
        self._ack_waiters[death.id] = acked
        self._send(death)
        try:
            await asyncio.wait_for(acked.wait(), timeout)
        except TimeoutError:
            return False
        finally:
            self._ack_waiters.pop(death.id, None)
        return True

    async def stop(self) -> None:
        """Disconnect, then close the outbox (the spool commits what was acknowledged)."""
        with contextlib.suppress(Exception):
            await self.link.stop()
        if self._replay_timer is not None:
            self._replay_timer.cancel()
        self.outbox.close()
