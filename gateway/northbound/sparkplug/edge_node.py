"""The Sparkplug B 3.0 Edge Node: the contract of ``northbound.format: sparkplug``.

It plugs into the one publisher (:class:`~gateway.northbound.publisher.Publisher`:
batcher, outbox or disk spool, in-flight window, backlog replay at a bounded rate) as a
:class:`~gateway.northbound.contract.Contract`, and decides what a session is:

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
- The will of every CONNECT is an NDEATH with the bdSeq of that connection, and QoS 1
  messages unacknowledged when a connection dropped are taken back (their ``seq``
  belongs to the dead session) and replayed after the next births.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import numpy as np
from prometheus_client.core import CounterMetricFamily, Metric

from gateway.commands.parse import Command
from gateway.commands.result import CommandResult
from gateway.config.models import GatewayConfig
from gateway.errors import SparkplugDecodeError
from gateway.northbound.contract import BirthContext, DeviceChange, PublisherControls
from gateway.northbound.message import OutboundMessage
from gateway.northbound.sparkplug.bdseq import BdSeqStore
from gateway.northbound.sparkplug.commands import SparkplugCommandParser, command_id, is_rebirth
from gateway.northbound.sparkplug.decode import (
    SparkplugTopic,
    decode_payload,
    decode_state,
    parse_topic,
)
from gateway.northbound.sparkplug.payloads import (
    DEVICES,
    NAMESPACE,
    CurrentValue,
    SparkplugPayloads,
    command_result_text,
)
from gateway.northbound.sparkplug.wire import as_historical, is_historical, with_seq
from gateway.repeated_log import RepeatedKinds
from gateway.tags import TagCatalog
from gateway.types import SampleBatch, now_ns

log = logging.getLogger(__name__)

#: device states (gateway.runtime.device_runner.DeviceState values) without a DBIRTH
DEAD_STATES = frozenset({"down", "stopped"})
#: seconds device state changes gather before one ``Node Info/Devices`` NDATA lists them
DEVICES_SETTLE_S = 0.2
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
    #: bad-quality samples of dead devices, represented by their DDEATH instead
    dead_device_withheld: int = 0
    state_messages: int = 0
    bad_state_messages: int = 0


class SparkplugEdgeNode:
    """The Sparkplug contract: payloads (:class:`SparkplugPayloads`) and session rules."""

    format = "sparkplug"
    take_back_unacked = True  # seq belongs to the session a message was sent in

    def __init__(
        self,
        config: GatewayConfig,
        payloads: SparkplugPayloads,
        bdseq: BdSeqStore,
        device_states: Callable[[], dict[str, str]],
        current: Callable[[int], CurrentValue],
        on_command: Callable[[str, bytes, bool], None] | None,
        audit: Callable[..., None] | None = None,
    ) -> None:
        """``device_states()``: device name -> state, for ``Node Info/Devices``;
        ``current(tag_id)`` is a tag's latest value for DBIRTHs; ``on_command`` receives
        NCMD/DCMD writes (None: commands are disabled and answered so); ``audit(event,
        **fields)`` records rebirth requests in the command audit log."""
        self.spb = config.northbound.sparkplug
        self.payloads = payloads
        self.catalog = payloads.catalog
        self.bdseq = bdseq
        self.counters = SparkplugCounters()
        self.parser = SparkplugCommandParser(payloads, config.commands.max_writes_per_command)
        self._device_states = device_states
        self._current = current
        self._on_command = on_command
        self._audit = audit
        self._publisher: PublisherControls | None = None
        self._seq = 0
        #: the bdSeq of the will of the connection being made or up (None before the first)
        self.connection_bdseq: int | None = None
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
        #: a ``Node Info/Devices`` NDATA is due (device states changed)
        self._devices_timer: asyncio.TimerHandle | None = None
        self._dead_tags = np.zeros(len(payloads.catalog), dtype=bool)
        self._last_command_result: str | None = None
        #: :func:`parse_topic`, cached: every message sent needs its type and device
        self._topic: Callable[[str], SparkplugTopic | None] = functools.lru_cache(
            _TOPIC_CACHE)(parse_topic)

    @property
    def models_info(self) -> Callable[[], list[dict[str, Any]]] | None:
        return self.payloads.models_info

    @models_info.setter
    def models_info(self, value: Callable[[], list[dict[str, Any]]] | None) -> None:
        self.payloads.models_info = value

    @property
    def config_version(self) -> Callable[[], int | None] | None:
        return self.payloads.config_version

    @config_version.setter
    def config_version(self, value: Callable[[], int | None] | None) -> None:
        self.payloads.config_version = value

    @property
    def firmware_info(self) -> Callable[[], list[dict[str, Any]]] | None:
        return self.payloads.firmware_info

    @firmware_info.setter
    def firmware_info(self, value: Callable[[], list[dict[str, Any]]] | None) -> None:
        self.payloads.firmware_info = value

    def revise(self, config: GatewayConfig, catalog: TagCatalog) -> bool:
        """A live config change: payloads and aliases follow the new catalog; devices gone
        are forgotten (their DDEATH went out when their runner stopped). The NBIRTH goes
        again when new tag ids moved the node metrics' aliases; a device whose tags changed
        restarts, and its DDEATH and DBIRTH describe it."""
        rebirth = self.payloads.revise(config, catalog)
        self.catalog = catalog
        gone = self._dead_devices - set(catalog.devices())
        self._dead_devices -= gone
        self._dead_tags = np.zeros(len(catalog), dtype=bool)
        for device in self._dead_devices:
            self._dead_tags[catalog.ids_of_device(device)] = True
        return rebirth

    # --- the connection and the session --------------------------------------------------------
    def attach(self, publisher: PublisherControls) -> None:
        self._publisher = publisher

    def _controls(self) -> PublisherControls:
        if self._publisher is None:
            raise RuntimeError("the edge node is not attached to a publisher")
        return self._publisher

    def subscriptions(self) -> tuple[tuple[str, int], ...]:
        subscriptions = [
            (self.payloads.node_topic("NCMD"), 0),
            (self.payloads.device_topic("DCMD", "+"), 0),
        ]
        if self.spb.primary_host_id is not None:
            subscriptions.append((f"{NAMESPACE}/STATE/{self.spb.primary_host_id}", 1))
        return tuple(subscriptions)

    def will(self) -> OutboundMessage | None:
        """Before each CONNECT: the NDEATH will with this connect's bdSeq."""
        self.connection_bdseq = self.bdseq.next_for_connect()
        return self.payloads.ndeath(self.connection_bdseq, now_ns())

    def connection_changed(self, connected: bool) -> None:
        if connected:
            if self.connection_bdseq is not None:
                self.bdseq.connected(self.connection_bdseq)  # a broker saw it: next one next
            return
        self._host_online = False  # a new connection waits for the retained STATE again
        self._born_devices.clear()

    def session_key(self, connected: bool, generation: int) -> Hashable | None:
        """Connected, and the primary host (when configured) online."""
        if not connected or (self.spb.primary_host_id is not None and not self._host_online):
            return None
        return generation, self._host_epoch

    async def prepare_births(self) -> None:
        """Nothing ahead: NBIRTH and DBIRTHs carry the current values, read when sent."""

    def births(self, context: BirthContext) -> list[OutboundMessage]:
        """NBIRTH (seq 0, this connection's bdSeq) and a DBIRTH per live device."""
        bdseq = self.connection_bdseq if self.connection_bdseq is not None else 0
        messages = [self.payloads.nbirth(
            bdseq, context.ts_ns, context.run_id * 1_000_000, context.devices, context.spool,
            self._last_command_result, None,
        )]  # fmt: skip
        self._born_devices.clear()
        for device in self.payloads.devices():
            self._set_dead(device, context.devices.get(device, "up") in DEAD_STATES)
            if device not in self._dead_devices:
                messages.append(self._dbirth(device, context.ts_ns))
        return messages

    def _dbirth(self, device: str, ts_ns: int) -> OutboundMessage:
        self._born_devices.add(device)
        self.counters.dbirths += 1
        return self.payloads.dbirth(device, ts_ns, self._current)

    # --- data --------------------------------------------------------------------------------
    def withhold(self, batch: SampleBatch) -> SampleBatch:
        """The samples of dead devices are not published: their DDEATH says it."""
        if self._dead_devices and len(batch):
            alive = ~self._dead_tags[batch.tag_ids]
            if not alive.all():
                self.counters.dead_device_withheld += int(len(batch) - alive.sum())
                return batch.select(alive)
        return batch

    def split(self, batch: SampleBatch, max_samples: int) -> list[SampleBatch]:
        return self.payloads.split(batch, max_samples)

    def encode(self, part: SampleBatch, ts_ns: int, live: bool) -> OutboundMessage:
        """A DDATA without seq (set when sent). Without a session it can only be sent as
        replay: encoded historical right away."""
        return self.payloads.device_data(part, ts_ns, historical=not live)

    def on_send(self, message: OutboundMessage, replay: bool) -> OutboundMessage:
        """Replayed data (and data of a device that died since) goes out historical; every
        message but NDEATH gets the session's next seq, NBIRTH restarts it at 0."""
        topic = self._topic(message.topic)
        if message.kind == "data":
            message = self._for_session(message, topic, replay)
        kind = topic.message_type if topic is not None else ""
        if kind != "NDEATH":
            if kind == "NBIRTH":
                self._seq = 0
            message = message.with_payload(with_seq(message.payload, self._seq))
            self._seq = (self._seq + 1) % 256
        return message

    def _for_session(self, message: OutboundMessage, topic: SparkplugTopic | None,
                     historical: bool) -> OutboundMessage:  # fmt: skip
        """As it is when encoded historical (without a session), else re-encoded."""
        if topic is not None and topic.device_id is not None and (
            topic.device_id not in self._born_devices
        ):
            historical = True
        if not historical:
            return message
        self.counters.historical_messages += 1
        try:
            if is_historical(message.payload):
                return message
        except Exception:  # not a Payload: as_historical fails too and says so
            pass
        self.counters.historical_reencoded += 1
        try:
            payload = as_historical(message.payload)
        except Exception as exc:  # undecodable spool content: send it as it is, not lose it
            self._unmarkable.failure(f"message {message.id}: {exc!r}", type(exc).__name__)
            return message
        return message.with_payload(payload)

    def death(self, reason: str, ts_ns: int) -> OutboundMessage:
        """The NDEATH of the current connection (its will, published on a clean stop)."""
        bdseq = self.connection_bdseq if self.connection_bdseq is not None else 0
        return self.payloads.ndeath(bdseq, ts_ns)

    def event(self, event: dict[str, Any], ts_ns: int) -> OutboundMessage:
        return self.payloads.event(event, ts_ns)

    # --- devices -------------------------------------------------------------------------------
    def _set_dead(self, device: str, dead: bool) -> None:
        if dead == (device in self._dead_devices):
            return
        if dead:
            self._dead_devices.add(device)
        else:
            self._dead_devices.discard(device)
        self._dead_tags[self.catalog.ids_of_device(device)] = dead

    def device_state_changed(self, device: str, state: str, in_session: bool) -> DeviceChange:
        """DDEATH when a born device goes down (after its last samples), DBIRTH when it
        returns (that device's metrics only), and soon after the NDATA of ``Node
        Info/Devices``: one for the changes of :data:`DEVICES_SETTLE_S`, since it lists
        every device (2,000 devices coming up would otherwise send 2,000 lists of 2,000)."""
        dead = state in DEAD_STATES
        if not dead and state != "up":
            return DeviceChange()  # starting: nothing to say yet
        self._set_dead(device, dead)
        if not in_session:
            return DeviceChange()  # the next births describe it
        self._devices_changed()
        if dead and device in self._born_devices:
            self._born_devices.discard(device)
            self.counters.ddeaths += 1
            return DeviceChange([self.payloads.ddeath(device, now_ns())], flush_first=True)
        if not dead and device not in self._born_devices:
            return DeviceChange([self._dbirth(device, now_ns())])
        return DeviceChange()

    def _devices_changed(self) -> None:
        """Send ``Node Info/Devices`` once the states settled for :data:`DEVICES_SETTLE_S`."""
        if self._devices_timer is not None:
            return
        with contextlib.suppress(RuntimeError):  # no loop: the next births list the states
            self._devices_timer = asyncio.get_running_loop().call_later(
                DEVICES_SETTLE_S, self._send_devices)

    def _send_devices(self) -> None:
        self._devices_timer = None
        publisher = self._publisher
        if publisher is None or not publisher.in_session():
            return  # the next births list the states
        states = json.dumps(self._device_states(), separators=(",", ":"))
        publisher.send_control(self.payloads.node_data(DEVICES, states, now_ns()))

    # --- commands and STATE --------------------------------------------------------------------
    def parse_command(self, topic: str, payload: bytes) -> Command:
        return self.parser(topic, payload)

    def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
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
            rebirth = [m for m in metrics if is_rebirth(m, self.payloads)]
            if rebirth:
                if retained:
                    outcome, reason = "rejected", "retained commands are never executed"
                elif any(m["value"] is True for m in rebirth):
                    outcome, reason = "accepted", None
                    self.counters.rebirths_requested += 1
                    self._controls().rebirth()
                else:
                    outcome, reason = "rejected", "Node Control/Rebirth must be true"
                log.info("NCMD rebirth request: %s%s", outcome, f" ({reason})" if reason else "")
                if self._audit is not None:
                    self._audit("rebirth", id=command_id(topic, payload, None), topic=topic,
                                outcome=outcome, reason=reason)  # fmt: skip
                if len(rebirth) == len(metrics):
                    return
        if self._on_command is None:
            result = CommandResult(command_id(topic, payload, None), "rejected",
                                   "commands are disabled in this gateway (commands.enabled)")
            for message in self.answer(result, now_ns()):
                self._controls().send_control(message)
            return
        self._on_command(topic, payload, retained)

    def _on_state(self, payload: bytes) -> None:
        """The primary host's STATE (3.0: retained JSON {"online": bool, "timestamp": ms})."""
        self.counters.state_messages += 1
        try:
            state = decode_state(payload)
        except SparkplugDecodeError as exc:
            self.counters.bad_state_messages += 1
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
        self._controls().wake()

    def answer(self, result: CommandResult, ts_ns: int) -> list[OutboundMessage]:
        """``Node Control/Last Command Result`` in an NDATA; accepted values in a DDATA."""
        self._last_command_result = command_result_text(result)
        messages = [self.payloads.cmd_result(result, ts_ns)]
        if result.duplicate:
            return messages
        written: dict[str, list[tuple[Any, Any]]] = {}
        for outcome in result.results:
            tag = self.catalog.get(outcome.tag)
            if outcome.status == "accepted" and tag is not None and (
                self.payloads.publishable_mask[tag.id]
            ):
                written.setdefault(tag.device, []).append((tag, outcome.value))
        messages += [self.payloads.device_values(device, values, ts_ns)
                     for device, values in written.items()]  # fmt: skip
        return messages

    def metrics(self) -> Iterable[Metric]:
        for name, text in _METRIC_HELP.items():
            yield CounterMetricFamily(f"chenxing_sparkplug_{name}", text,
                                      value=getattr(self.counters, name))  # fmt: skip


_METRIC_HELP = {
    "rebirths_requested": "Rebirths requested by NCMD Node Control/Rebirth",
    "dbirths": "DBIRTH messages published",
    "ddeaths": "DDEATH messages published",
    "historical_messages": "Data messages replayed with is_historical",
    "historical_reencoded": "Replayed data messages encoded live, re-encoded as historical",
    "dead_device_withheld": "Bad-quality samples of dead devices not published (DDEATH says it)",
    "state_messages": "Primary host STATE messages received",
    "bad_state_messages": "Primary host STATE messages ignored as malformed",
}
