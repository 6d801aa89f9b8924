"""The northbound stage: gather pipeline output into messages, keep them in the
outbox, publish them in order with a bounded number in flight, births when a session
starts, death on shutdown. One publisher for every payload contract: what goes on the
wire is the :class:`~gateway.northbound.contract.Contract`'s business.

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
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.commands.result import CommandResult
from gateway.config.models import MqttConfig, NorthboundConfig
from gateway.histogram import AGE_BUCKETS, Histogram
from gateway.northbound.contract import BirthContext, Contract
from gateway.northbound.message import OutboundMessage
from gateway.northbound.mqtt_link import MqttLink, Will
from gateway.northbound.outbox import Outbox
from gateway.northbound.restricted import PublishableTags
from gateway.tags import TagCatalog
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
    #: unacknowledged QoS 1 messages of a dropped connection, replayed in the next session
    taken_back: int = 0
    #: seconds from the read of the oldest value of a data message to its handing to the
    #: broker (live and replayed): the pipeline, the publish interval and the spool
    value_age: Histogram = field(default_factory=lambda: Histogram(AGE_BUCKETS))
    #: the last round of births (counted by ``births``) whose every message the broker
    #: confirmed (a live config change is watched until the births after it are)
    births_confirmed: int = 0


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


class Link(Protocol):
    """The broker connection as the publisher uses it (:class:`MqttLink`; tests may give
    a recorder of their own)."""

    connected: asyncio.Event
    #: counts successful connects
    generation: int
    url: str
    last_error: str | None
    disconnects: int

    def start(self) -> None: ...

    def publish(self, message: OutboundMessage) -> None: ...

    def retry_now(self) -> None:
        """Connect again without waiting out the backoff (a rollback removed the cause)."""

    async def stop(self) -> None: ...


class LinkFactory(Protocol):
    """Builds the publisher's link; the arguments are :class:`MqttLink`'s."""

    def __call__(self, config: MqttConfig, client_id: str, will: Will, password: str | None,
                 on_ack: Callable[[int], None], on_state: Callable[[], None],
                 subscriptions: tuple[tuple[str, int], ...],
                 on_message: Callable[[str, bytes, bool], None] | None,
                 on_taken_back: Callable[[list[int]], None] | None,
                 take_back_qos1: bool, on_sent: Callable[[int], None] | None) -> Link: ...


class Publisher:
    """Outbox + link + contract: see the module docstring and :mod:`.contract`."""

    #: seconds of encoding a flush does before it lets the event loop run
    ENCODE_SLICE_S = 0.005

    def __init__(
        self,
        config: NorthboundConfig,
        catalog: TagCatalog,
        contract: Contract,
        outbox: Outbox,
        client_id: str,
        password: str | None,
        device_states: Callable[[], dict[str, str]],
        link_factory: LinkFactory = MqttLink,
    ) -> None:
        self.config = config
        self.contract = contract
        self.outbox = outbox
        self.session = now_ns() // 1_000_000  # identifies this run in births and deaths
        self.counters = NorthboundCounters()
        #: called with each message as it is sent (the web console's Messages tab)
        self.watchers: list[Callable[[OutboundMessage], None]] = []
        self._publishable = PublishableTags(catalog, config.publish_restricted)
        self._device_states = device_states
        self._buffer: list[SampleBatch] = []
        #: a flush in progress: the parts left to encode (with their flush's time and
        #: whether it was live), the messages encoded not yet in the outbox
        self._parts: deque[tuple[SampleBatch, int, bool]] = deque()
        self._encoded: list[OutboundMessage] = []
        self._flush_turn = asyncio.Lock()
        self._wake = asyncio.Event()
        self._inflight: dict[int, OutboundMessage] = {}
        #: the session the births were sent for (None: none yet on this connection)
        self._session_key: Hashable | None = None
        #: the session whose backlog was marked while its births were prepared
        self._backlog_marked: Hashable | None = None
        self._rebirth_requested = False
        #: ids of the last round of births not yet confirmed by the broker
        self._births_unconfirmed: set[int] = set()
        self._control_ids = itertools.count(-1, -1)  # ids of births and deaths
        self._ack_waiters: dict[int, asyncio.Event] = {}
        self._replay = ReplayBudget(config.spool.replay_rate, time.monotonic)
        self._backlog_turn = True  # whose turn it is when both streams wait
        self._replay_timer: asyncio.TimerHandle | None = None
        contract.attach(self)
        #: QoS 0 messages written, their in-flight slot free, not yet confirmed delivered
        self._awaiting: dict[int, OutboundMessage] = {}
        self.link = link_factory(
            config.mqtt, client_id, contract.will, password, self._acked, self._link_state,
            contract.subscriptions(), contract.on_message, self._taken_back,
            contract.take_back_unacked, self._sent,
        )  # fmt: skip

    # --- the session ------------------------------------------------------------------------
    def _current_key(self) -> Hashable | None:
        return self.contract.session_key(self.link.connected.is_set(), self.link.generation)

    def in_session(self) -> bool:
        """A session is up and its births are out: what is sent now goes out live."""
        key = self._current_key()
        return key is not None and key == self._session_key

    born = property(in_session)

    def _link_state(self) -> None:
        connected = self.link.connected.is_set()
        if not connected:
            self._session_key = None
        self.contract.connection_changed(connected)
        self._wake.set()

    def _taken_back(self, ids: list[int]) -> None:
        """Messages of a dead connection the broker may not have (QoS 0 not confirmed, and
        QoS 1 unacknowledged when the contract takes them back): back to the outbox,
        replayed in the next session."""
        self.counters.taken_back += len(ids)
        for message_id in ids:
            self._inflight.pop(message_id, None)
            self._awaiting.pop(message_id, None)
        self.outbox.release(ids)
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    # --- input from the pipeline --------------------------------------------------------
    def revise(self, catalog: TagCatalog) -> None:
        """A live config change: which tags may leave follows the catalog; buffered samples
        of retired tags are dropped (their device was stopped before the change)."""
        self._publishable = PublishableTags(catalog, self.config.publish_restricted)
        if self._buffer:
            kept = [b.select(catalog.live[b.tag_ids]) for b in self._buffer]
            self._buffer = [b for b in kept if len(b)]
            self.counters.buffered_samples = sum(len(b) for b in self._buffer)
        if self._parts:  # a flush in progress: its parts left follow the catalog too
            left = [(p.select(catalog.live[p.tag_ids]), ts, live) for p, ts, live in self._parts]
            self._parts = deque(item for item in left if len(item[0]))

    def submit(self, batch: SampleBatch) -> None:
        visible = self._publishable.select(batch)
        if visible is not batch:
            self.counters.restricted_withheld += len(batch) - len(visible)
        batch = self.contract.withhold(visible)
        if len(batch):
            self._buffer.append(batch)
            self.counters.buffered_samples += len(batch)

    def flush(self) -> None:
        """Encode everything buffered into data messages in the outbox."""
        messages = self._encode()
        if messages:
            self.outbox.put_many(messages)  # on disk before the sender can take it
            self._wake.set()

    async def flush_async(self) -> None:
        """:meth:`flush`, a few messages at a time with the event loop let run between them
        (200,000 values encoded at once held it 30-60 ms), and committing to the disk spool
        off the event loop, which keeps publishing meanwhile. One at a time; a :meth:`flush`
        meanwhile encodes what this one has left first, so the outbox takes every message in
        the order of its sequence number."""
        async with self._flush_turn:
            self._take_buffer()
            while self._parts:
                self._encode_parts(self.ENCODE_SLICE_S)
                if self._parts:
                    await asyncio.sleep(0)
            messages, self._encoded = self._encoded, []
            if messages:
                await self.outbox.put_many_async(messages)
                self._wake.set()

    def _encode(self) -> list[OutboundMessage]:
        """Everything buffered as data messages (not yet in the outbox), after what a flush
        in progress has left. A part that cannot be encoded (a bug) is dropped and counted;
        the others go on."""
        self._take_buffer()
        self._encode_parts(None)
        messages, self._encoded = self._encoded, []
        return messages

    def _take_buffer(self) -> None:
        """The buffer as the parts of data messages to encode, after those left."""
        if not self._buffer:
            return
        batch = SampleBatch.concat(self._buffer)
        self._buffer = []
        self.counters.buffered_samples = 0
        ts = now_ns()
        live = self.in_session()
        try:
            parts = self.contract.split(batch, self.config.max_samples_per_message)
        except Exception:  # a bug in encoding must not stop the publisher
            parts = []
            self._encode_failed(len(batch))
        self._parts.extend((part, ts, live) for part in parts)

    def _encode_parts(self, budget_s: float | None) -> None:
        """Encode parts in order into :attr:`_encoded`: all of them, or (``budget_s``) until
        that much time went."""
        deadline = None if budget_s is None else time.perf_counter() + budget_s
        while self._parts:
            part, ts, live = self._parts.popleft()
            try:
                self._encoded.append(self.contract.encode(part, ts, live))
            except Exception:
                self._encode_failed(len(part))
            if deadline is not None and time.perf_counter() >= deadline:
                return

    def _encode_failed(self, samples: int) -> None:
        self.counters.encode_failures += 1
        self.counters.encode_dropped_samples += samples
        log.exception("could not encode %d samples; they are dropped", samples)

    # --- acknowledgements -----------------------------------------------------------------
    def _sent(self, message_id: int) -> None:
        """A QoS 0 message was written: its slot is free; it stays in the outbox until its
        delivery is confirmed (:meth:`_acked`)."""
        message = self._inflight.pop(message_id, None)
        if message is not None:
            self._awaiting[message_id] = message
        self._wake.set()

    def _acked(self, message_id: int) -> None:
        message = self._inflight.pop(message_id, None) or self._awaiting.pop(message_id, None)
        waiter = self._ack_waiters.get(message_id)
        if waiter is not None:
            waiter.set()
        self.outbox.ack(message_id)
        if message is not None:
            self.counters.messages_published += 1
            self.counters.samples_published += message.samples
        if message_id in self._births_unconfirmed:
            self._births_unconfirmed.discard(message_id)
            if not self._births_unconfirmed:
                self.counters.births_confirmed = self.counters.births
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
            await self.flush_async()
            self.outbox.maintain()

    async def _sender(self) -> None:
        while True:
            self._wake.clear()
            key = self._current_key()
            if key is not None and (key != self._session_key or self._rebirth_requested):
                if key != self._session_key:
                    self._mark_backlog(key)  # what waited for this session, not what comes
                await self.contract.prepare_births()  # the slow part, in steps of the loop
            self.send_pending()
            await self._wake.wait()

    def _mark_backlog(self, key: Hashable) -> None:
        """A new session: what waits now is replayed (at the replay rate); what is encoded
        from now on goes out live, after the births."""
        self._backlog_marked = key
        backlog = self.outbox.mark_backlog()
        if backlog:
            log.info("replaying %d messages at up to %g/s", backlog, self._replay.rate)

    def send_pending(self) -> None:
        """One turn of the sender: start a session when one is due (backlog, births), then
        fill the in-flight window."""
        key = self._current_key()
        if key is None:
            return
        if key != self._session_key:
            self._session_key = key
            if self._backlog_marked != key:  # not while the births were prepared
                self._mark_backlog(key)
            self._backlog_marked = None
            self._send_births()
        elif self._rebirth_requested:
            self._send_births()
        self._rebirth_requested = False
        self._fill_window()

    def _send_births(self) -> None:
        context = BirthContext(now_ns(), self.session, self._device_states(),
                               self.outbox.stats())  # fmt: skip
        self.counters.births += 1
        self._births_unconfirmed = set()
        for message in self.contract.births(context):
            self._births_unconfirmed.add(self._send(message))

    def _fill_window(self) -> None:
        max_inflight = self.config.outbox.max_inflight
        while len(self._inflight) < max_inflight:
            message = self._next_message()
            if message is None:
                break
            self._send(message[0], replay=message[1])

    def _next_message(self) -> tuple[OutboundMessage, bool] | None:
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
                return message, backlog
        return None

    def _wake_for_replay(self) -> None:
        if self._replay_timer is None and self.outbox.stats().backlog:
            loop = asyncio.get_running_loop()
            self._replay_timer = loop.call_later(self._replay.wait_s(), self._replay_due)

    def _replay_due(self) -> None:
        self._replay_timer = None
        self._wake.set()

    def _send(self, message: OutboundMessage, replay: bool = False) -> int:
        """Publish ``message``; return its id (births, deaths and answers get one here)."""
        message = self.contract.on_send(message, replay)
        if message.id == 0:  # births, deaths and answers do not pass through the outbox
            message.id = next(self._control_ids)
        elif message.kind == "data" and message.oldest_ns:
            self.counters.value_age.observe(max(0, now_ns() - message.oldest_ns) / 1e9)
        self._inflight[message.id] = message
        self.link.publish(message)
        for watch in self.watchers:
            watch(message)
        return message.id

    def send_control(self, message: OutboundMessage) -> None:
        """Publish a message outside the outbox (a command answer, an event) within a
        session; otherwise it is dropped and counted (the audit log has the outcome)."""
        if not self.in_session():
            self.counters.answers_unsent += 1
            log.warning("no session: %s to %s not sent", message.kind, message.topic)
            return
        self._send(message)

    def rebirth(self) -> None:
        """Send the births again within the current session (e.g. the models changed)."""
        self._rebirth_requested = True
        self._wake.set()

    def device_state_changed(self, device: str, state: str) -> None:
        """A device went up or down: what the contract says about it goes out now."""
        change = self.contract.device_state_changed(device, state, self.in_session())
        if change.flush_first and self.in_session():
            self.flush()  # its last samples go first, as far as the window allows
            self._fill_window()
        for message in change.messages:
            self.send_control(message)
        if change.rebirth:
            self.rebirth()

    def answer_command(self, result: CommandResult) -> None:
        """Publish the outcome of a command from the brain."""
        for message in self.contract.answer(result, now_ns()):
            self.send_control(message)

    def publish_event(self, event: dict[str, Any]) -> None:
        """An event (a model alarm raised or cleared), within a session."""
        self.send_control(self.contract.event(event, now_ns()))

    # --- shutdown ---------------------------------------------------------------------------
    async def drain(self, timeout: float) -> bool:
        """Flush and wait until the outbox is empty and all is acknowledged."""
        self.flush()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            stats = self.outbox.stats()
            if stats.queued == 0 and not self._inflight and not self._awaiting:
                return True
            self._wake.set()
            await asyncio.sleep(0.02)
        return False

    async def publish_death(self, reason: str, timeout: float) -> bool:
        if not self.link.connected.is_set():
            return False
        death = self.contract.death(reason, now_ns())
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
