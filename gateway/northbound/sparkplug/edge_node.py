"""The Sparkplug B 3.0 Edge Node: the northbound publisher for ``northbound.format: sparkplug``.

It reuses the JSON publisher's machinery (:class:`~gateway.northbound.publisher.Northbound`:
batcher, outbox or disk spool, in-flight window, backlog replay at a bounded rate) and
changes what a session is:

- A Sparkplug session starts when the broker connection is up and, with
  ``primary_host_id`` set, the primary host's STATE says online. Only then NBIRTH
  (seq 0, the bdSeq of this connection's will) and a DBIRTH per live device go out;
  nothing is published before.
- ``seq`` (0-255, one counter for every message of the session) is set when a
  message is sent, not when it was spooled (see :mod:`.wire`). What waited in the
  spool when the session started (a broker outage, a restart, the primary host
  offline) is replayed after the births with ``is_historical`` on every metric. Data
  encoded while no session is up is encoded so (it can only go out as replay) and sent
  as it is; data encoded live that ends up replayed (in flight or queued when the
  connection dropped) is re-encoded historical when it is sent.
- Device state changes send DDEATH / DBIRTH instead of a full rebirth; an NCMD
  ``Node Control/Rebirth`` = true sends NBIRTH and every DBIRTH again.
- NCMD/DCMD writes go to the command executor; the outcome is published as the node
  metric ``Node Control/Last Command Result`` and accepted values in a DDATA.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Callable

import numpy as np

from gateway.commands.result import CommandResult
from gateway.config.models import GatewayConfig
from gateway.northbound.message import OutboundMessage
from gateway.northbound.outbox import Outbox
from gateway.northbound.publisher import Northbound
from gateway.northbound.sparkplug.bdseq import BdSeqStore
from gateway.northbound.sparkplug.commands import command_id, is_rebirth
from gateway.northbound.sparkplug.contract import (
    DEVICES,
    NAMESPACE,
    CurrentValue,
    SparkplugContract,
    command_result_text,
)
from gateway.northbound.sparkplug.decode import (
    SparkplugDecodeError,
    SparkplugTopic,
    decode_payload,
    decode_state,
    parse_topic,
)
from gateway.northbound.sparkplug.link import SparkplugLink
from gateway.northbound.sparkplug.wire import as_historical, is_historical, with_seq
from gateway.repeated_log import RepeatedKinds
from gateway.types import SampleBatch, now_ns

log = logging.getLogger(__name__)

#: device states (gateway.runtime.device_runner.DeviceState values) without a DBIRTH
DEAD_STATES = frozenset({"down", "stopped"})
#: bound of the parsed-topic cache (the contract's topics: node ones and one set per device)
_TOPIC_CACHE = 4096


@dataclasses.dataclass(slots=True)
class SparkplugCounters:
    rebirths_requested: int = 0
    ddeaths: int = 0
    dbirths: int = 0
    historical_messages: int = 0
    #: of those, encoded live (in flight or queued at a drop) and so re-encoded historical
    historical_reencoded: int = 0
    #: unacknowledged QoS 1 messages of a dropped connection, replayed in the next session
    taken_back: int = 0
    #: bad-quality samples of dead devices, represented by their DDEATH instead
    dead_device_withheld: int = 0
    state_messages: int = 0
    bad_state_messages: int = 0


class SparkplugEdgeNode(Northbound):
    def __init__(
        self,
        config: GatewayConfig,
        contract: SparkplugContract,
        outbox: Outbox,
        bdseq: BdSeqStore,
        client_id: str,
        password: str | None,
        device_states: Callable[[], dict[str, str]],
        current: Callable[[int], CurrentValue],
        on_command: Callable[[str, bytes, bool], None] | None,
        audit: Callable[..., None] | None = None,
    ) -> None:
        """``current(tag_id)`` is a tag's latest value for DBIRTHs; ``on_command`` receives
        NCMD/DCMD writes (None: commands are disabled and answered so); ``audit(event,
        **fields)`` records rebirth requests in the command audit log."""
        self.spb = config.northbound.sparkplug
        self.bdseq = bdseq
        self.spb_counters = SparkplugCounters()
        self._current = current
        self._on_command = on_command
        self._audit = audit
        self._seq = 0
        self._session_key: tuple[int, int] | None = None  # (link generation, host epoch)
        self._rebirth_requested = False
        self._host_online = False
        self._host_epoch = 0
        self._host_ts: int | None = None
        #: whoever may publish on the STATE topic can send junk at any rate
        self._bad_states = RepeatedKinds(log, "primary host STATE ignored")
        #: a damaged spool fails per message; sent as it is
        self._unmarkable = RepeatedKinds(log, "spooled message could not be marked historical",
                                         logging.ERROR)  # fmt: skip
        self._born_devices: set[str] = set()
        self._dead_devices: set[str] = set()
        self._dead_tags = np.zeros(len(contract.catalog), dtype=bool)
        self._last_command_result: str | None = None
        self._historical_turn = False
        #: :func:`parse_topic`, cached: every message sent needs its type and device
        self._topic: Callable[[str], SparkplugTopic | None] = functools.lru_cache(
            _TOPIC_CACHE)(parse_topic)
        mqtt_cfg = config.northbound.mqtt
        subscriptions = [
            (contract.node_topic("NCMD"), 0),
            (contract.device_topic("DCMD", "+"), 0),
        ]
        if self.spb.primary_host_id is not None:
            subscriptions.append((f"{NAMESPACE}/STATE/{self.spb.primary_host_id}", 1))

        def link_factory(will: OutboundMessage, on_ack, on_state) -> SparkplugLink:  # type: ignore[no-untyped-def]
            return SparkplugLink(
                mqtt_cfg, client_id, password, on_ack, self._link_state, tuple(subscriptions),
                self._on_message, will_for_connect=self._will_for_connect,
                on_connect_bdseq=self.bdseq.connected, on_taken_back=self._taken_back,
            )  # fmt: skip

        contract_any: object = contract
        super().__init__(
            config.northbound, contract_any, outbox, None, link_factory, device_states  # type: ignore[arg-type]
        )
        self.contract: SparkplugContract = contract  # type: ignore[assignment]
        contract.current_bdseq = lambda: self.link.bdseq or 0
        self.link: SparkplugLink  # type: ignore[assignment]

    # --- the session -------------------------------------------------------------------------
    @property
    def session_ready(self) -> bool:
        """Connected, and the primary host (when configured) is online."""
        return self.link.connected.is_set() and (
            self.spb.primary_host_id is None or self._host_online
        )

    @property
    def born(self) -> bool:
        return self.session_ready and self._session_key is not None

    def _in_session(self) -> bool:
        """Ready and the session's births are out: data encoded now may go out live."""
        return self.session_ready and self._session_key == (
            self.link.generation, self._host_epoch
        )  # fmt: skip

    def _will_for_connect(self) -> tuple[int, OutboundMessage]:
        """Before each CONNECT: the NDEATH will with this connect's bdSeq."""
        bdseq = self.bdseq.next_for_connect()
        return bdseq, self.contract.ndeath(bdseq, now_ns())

    def _link_state(self) -> None:
        if not self.link.connected.is_set():
            self._host_online = False  # a new connection waits for the retained STATE again
            self._session_key = None
            self._born_devices.clear()
        self._wake.set()

    def _taken_back(self, ids: list[int]) -> None:
        """QoS 1 messages of a dead connection: back to the outbox, replayed after the births."""
        self.spb_counters.taken_back += len(ids)
        for message_id in ids:
            self._inflight.pop(message_id, None)
        self.outbox.release(ids)

    # --- input from the pipeline ---------------------------------------------------------------
    def submit(self, batch: SampleBatch) -> None:
        if self._dead_devices and len(batch):
            alive = ~self._dead_tags[batch.tag_ids]
            if not alive.all():
                self.spb_counters.dead_device_withheld += int(len(batch) - alive.sum())
                batch = batch.select(alive)
        super().submit(batch)

    def _encode(self) -> list[OutboundMessage]:
        """What is buffered as DDATA messages (no seq yet), for the outbox. Without a
        session they can only be sent as replay: encoded historical right away."""
        if not self._buffer:
            return []
        batch = SampleBatch.concat(self._buffer)
        self._buffer = []
        self.counters.buffered_samples = 0
        try:
            return self.contract.data(batch, now_ns(), self.config.max_samples_per_message,
                                      not self._in_session())  # fmt: skip
        except Exception:  # a bug in encoding must not stop the publisher
            self.counters.encode_failures += 1
            self.counters.encode_dropped_samples += len(batch)
            log.exception("could not encode %d samples; they are dropped", len(batch))
            return []

    # --- sending -------------------------------------------------------------------------------
    async def _sender(self) -> None:
        while True:
            self._wake.clear()
            if self.session_ready:
                key = (self.link.generation, self._host_epoch)
                if key != self._session_key:
                    self._session_key = key
                    backlog = self.outbox.mark_backlog()  # replayed after the births, historical
                    if backlog:
                        log.info("replaying %d messages as historical at up to %g/s",
                                 backlog, self._replay.rate)  # fmt: skip
                    self._send_births()
                elif self._rebirth_requested:
                    self._send_births()
                self._rebirth_requested = False
                self._fill_window()
            await self._wake.wait()

    def _fill_window(self) -> None:
        while len(self._inflight) < self.config.outbox.max_inflight:
            message = self._next_message()
            if message is None:
                break
            self._send(message)

    def _send_births(self) -> None:
        ts = now_ns()
        states = self._device_states()
        bdseq = self.link.bdseq if self.link.bdseq is not None else 0
        self._send(self.contract.nbirth(
            bdseq, ts, self.session * 1_000_000, states, self.outbox.stats(),
            self._last_command_result, None,
        ))  # fmt: skip
        self.counters.births += 1
        self._born_devices.clear()
        for device in self.contract.devices():
            self._set_dead(device, states.get(device, "up") in DEAD_STATES)
            if device not in self._dead_devices:
                self._send_dbirth(device, ts)

    def _send_dbirth(self, device: str, ts_ns: int) -> None:
        self._send(self.contract.dbirth(device, ts_ns, self._current))
        self._born_devices.add(device)
        self.spb_counters.dbirths += 1

    def _prepare(self, message: OutboundMessage, backlog: bool) -> OutboundMessage:
        """Stamp this session's seq; backlog (replayed) data is flagged historical."""
        return self._for_session(message, historical=backlog)

    def _for_session(self, message: OutboundMessage, historical: bool) -> OutboundMessage:
        """Replayed data, and data of a device that died since, goes out historical: as it
        is when encoded so (without a session), else re-encoded."""
        topic = self._topic(message.topic)
        if topic is not None and topic.device_id is not None and (
            topic.device_id not in self._born_devices
        ):
            historical = True
        if not historical:
            return message
        self.spb_counters.historical_messages += 1
        try:
            if is_historical(message.payload):
                return message
        except Exception:  # not a Payload: as_historical fails too and says so
            pass
        self.spb_counters.historical_reencoded += 1
        try:
            payload = as_historical(message.payload)
        except Exception as exc:  # undecodable spool content: send it as it is, not lose it
            self._unmarkable.failure(f"message {message.id}: {exc!r}", type(exc).__name__)
            return message
        return message.with_payload(payload)

    def _send(self, message: OutboundMessage) -> None:
        """Every message but NDEATH gets the session's next seq; NBIRTH restarts it at 0."""
        topic = self._topic(message.topic)
        kind = topic.message_type if topic is not None else ""
        if kind != "NDEATH":
            if kind == "NBIRTH":
                self._seq = 0
            message = message.with_payload(with_seq(message.payload, self._seq))
            self._seq = (self._seq + 1) % 256
        super()._send(message)

    def send_control(self, message: OutboundMessage) -> None:
        """A message outside the outbox (command answer, event); only within a session."""
        if not self.born:
            self.counters.answers_unsent += 1
            log.warning("no Sparkplug session: %s to %s not sent", message.kind, message.topic)
            return
        self._send(message)

    def rebirth(self) -> None:
        self._rebirth_requested = True
        self._wake.set()

    # --- devices -------------------------------------------------------------------------------
    def _set_dead(self, device: str, dead: bool) -> None:
        if dead == (device in self._dead_devices):
            return
        if dead:
            self._dead_devices.add(device)
        else:
            self._dead_devices.discard(device)
        ids = self.contract.catalog.ids_of_device(device)
        self._dead_tags[ids] = dead

    def device_state_changed(self, device: str, state: str) -> None:
        """DDEATH when a born device goes down, DBIRTH when it returns."""
        dead = state in DEAD_STATES
        if state not in DEAD_STATES and state != "up":
            return  # starting: nothing to say yet
        self._set_dead(device, dead)
        if not self.born:
            return  # the next births describe it
        devices = json.dumps(self._device_states(), separators=(",", ":"))
        self._send(self.contract.node_data(DEVICES, devices, now_ns()))
        if dead and device in self._born_devices:
            self.flush()  # its last samples go before the DDEATH, as far as the window allows
            self._fill_window()
            self._born_devices.discard(device)
            self._send(self.contract.ddeath(device, now_ns()))
            self.spb_counters.ddeaths += 1
        elif not dead and device not in self._born_devices:
            self._send_dbirth(device, now_ns())

    # --- commands and STATE --------------------------------------------------------------------
    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        parsed = parse_topic(topic)
        if parsed is None:
            return
        if parsed.is_state:
            self._on_state(payload)
            return
        if parsed.message_type not in ("NCMD", "DCMD"):
            return
        if not payload:  # a retained command cleared: no command (the executor counts it)
            if self._on_command is not None:
                self._on_command(topic, payload, retained)
            return
        if parsed.message_type == "NCMD":
            try:
                metrics = decode_payload(payload)["metrics"]
            except SparkplugDecodeError:
                metrics = []
            rebirth = [m for m in metrics if is_rebirth(m, self.contract)]
            if rebirth:
                if retained:
                    outcome, reason = "rejected", "retained commands are never executed"
                elif any(m["value"] is True for m in rebirth):
                    outcome, reason = "accepted", None
                    self.spb_counters.rebirths_requested += 1
                    self.rebirth()
                else:
                    outcome, reason = "rejected", "Node Control/Rebirth must be true"
                log.info("NCMD rebirth request: %s%s", outcome, f" ({reason})" if reason else "")
                if self._audit is not None:
                    self._audit("rebirth", id=command_id(topic, payload, None), topic=topic,
                                outcome=outcome, reason=reason)  # fmt: skip
                if len(rebirth) == len(metrics):
                    return
        if self._on_command is None:
            self.answer_command(CommandResult(
                command_id(topic, payload, None), "rejected",
                "commands are disabled in this gateway (commands.enabled)",
            ))  # fmt: skip
            return
        self._on_command(topic, payload, retained)

    def _on_state(self, payload: bytes) -> None:
        """The primary host's STATE (3.0: retained JSON {"online": bool, "timestamp": ms})."""
        self.spb_counters.state_messages += 1
        try:
            state = decode_state(payload)
        except SparkplugDecodeError as exc:
            self.spb_counters.bad_state_messages += 1
            self._bad_states.failure(str(exc), str(exc).split(":", 1)[0])  # kind, no details
            return
        ts = state.get("timestamp")
        if isinstance(ts, int) and self._host_ts is not None and ts < self._host_ts:
            log.info("primary host STATE older than the last one ignored")
            return
        if isinstance(ts, int):
            self._host_ts = ts
        online = state["online"]
        if online and not self._host_online:
            self._host_epoch += 1
            log.info("primary host %s is online", self.spb.primary_host_id)
        elif not online and self._host_online:
            log.warning("primary host %s is offline: holding data", self.spb.primary_host_id)
        self._host_online = online
        self._wake.set()

    def answer_command(self, result: CommandResult) -> None:
        """``Node Control/Last Command Result`` in an NDATA; accepted values in a DDATA."""
        self._last_command_result = command_result_text(result)
        ts = now_ns()
        self.send_control(self.contract.cmd_result(result, ts))
        written: dict[str, list[tuple[object, object]]] = {}
        for outcome in result.results:
            tag = self.contract.catalog.get(outcome.tag)
            if outcome.status == "accepted" and tag is not None and (
                self.contract.publishable_mask[tag.id]
            ):
                written.setdefault(tag.device, []).append((tag, outcome.value))
        if result.duplicate:
            return
        for device, values in written.items():
            self.send_control(self.contract.device_values(device, values, ts))  # type: ignore[arg-type]
