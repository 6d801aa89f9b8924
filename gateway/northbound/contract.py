"""The seam of the northbound: what a payload contract plugs into the publisher.

The :class:`~gateway.northbound.publisher.Publisher` is the same for every contract:
it gathers pipeline output, keeps messages in the outbox or disk spool, publishes them
with a bounded number in flight, replays the backlog at a bounded rate interleaved with
live data, and stops cleanly. A :class:`Contract` decides everything about the wire:
topics and payloads, when a session exists (the JSON contract: connected; Sparkplug:
connected and the primary host online), what a session starts with (births), what a
message carries when it is sent (Sparkplug's ``seq`` and ``is_historical``), the will,
commands and device state changes. JSON v1 (:mod:`.contract_json`) and Sparkplug B
(:mod:`.sparkplug.edge_node`) are the two implementations; a third format is one new
module implementing this protocol (and one branch where the runtime picks it).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client.core import Metric

from gateway.commands.parse import Command
from gateway.commands.result import CommandResult
from gateway.config.models import GatewayConfig
from gateway.northbound.message import OutboundMessage
from gateway.northbound.outbox import OutboxStats
from gateway.tags import TagCatalog
from gateway.types import SampleBatch

__all__ = ["BirthContext", "Contract", "DeviceChange", "PublisherControls"]


@dataclass(frozen=True, slots=True)
class BirthContext:
    """What a session's births describe, at the time they are sent."""

    ts_ns: int
    #: identifies this run of the gateway: ms since the epoch of its start
    run_id: int
    #: device name -> state (``up``, ``down``, ``starting``, ``stopped``)
    devices: dict[str, str]
    spool: OutboxStats | None


@dataclass(frozen=True, slots=True)
class DeviceChange:
    """What the publisher does when a device goes up or down."""

    #: messages to send now (only within a session)
    messages: list[OutboundMessage] = field(default_factory=list)
    #: flush and send what is buffered first (a device's last samples before its death)
    flush_first: bool = False
    #: send the births again (they list the devices' states)
    rebirth: bool = False


class PublisherControls(Protocol):
    """What a contract may ask of the publisher it is plugged into."""

    #: identifies this run of the gateway: ms since the epoch of its start
    session: int

    def in_session(self) -> bool:
        """A session is up and its births are out."""

    def wake(self) -> None:
        """Something changed (a host came online): look at the session again."""

    def rebirth(self) -> None:
        """Send the births again within the current session."""

    def send_control(self, message: OutboundMessage) -> None:
        """Publish a message outside the outbox (answers, events) if a session is up."""


class Contract(Protocol):
    """A payload contract and its session rules (see the module docstring)."""

    #: ``northbound.format``
    format: str
    #: unacknowledged QoS 1 messages of a dropped connection: re-sent by the MQTT client
    #: after the next CONNACK (False), or taken back to the outbox and replayed after the
    #: births (True: a message is only valid in the session it was sent in)
    take_back_unacked: bool
    #: the edge models in service, for the births (set by the runtime)
    models_info: Callable[[], list[dict[str, Any]]] | None
    #: the version of the config running (gateway/config/store.py), for the births (set by
    #: the runtime)
    config_version: Callable[[], int | None] | None
    #: the MCU firmware versions known (device, name, version, source), for the births (set
    #: by the runtime)
    firmware_info: Callable[[], list[dict[str, Any]]] | None

    def revise(self, config: GatewayConfig, catalog: TagCatalog) -> bool:
        """A live config change: the catalog and devices the births describe from now on.
        True: every birth must go again (the runtime asks for a rebirth); False: the births
        of the devices that restart say enough."""

    def attach(self, publisher: PublisherControls) -> None:
        """Called once by the publisher the contract is plugged into."""

    def subscriptions(self) -> tuple[tuple[str, int], ...]:
        """(topic filter, QoS) subscribed on every connect."""

    def will(self) -> OutboundMessage | None:
        """The will of the next connection; asked for before each CONNECT."""

    def connection_changed(self, connected: bool) -> None:
        """The broker connection came up or went down."""

    def session_key(self, connected: bool, generation: int) -> Hashable | None:
        """None while nothing may be published; a value that changes when a new session
        starts (its births go out first, what waited in the outbox is replayed)."""

    async def prepare_births(self) -> None:
        """Births are due: build now, in steps the event loop runs between, what takes
        long in them (the JSON birth's catalog: 34 MB and ~1 s at 200,000 tags), for
        :meth:`births` to use if nothing it depends on changed meanwhile. Nothing for a
        contract whose births are quick to build."""

    def births(self, context: BirthContext) -> list[OutboundMessage]:
        """The messages that start a session (or repeat its start on a rebirth)."""

    def withhold(self, batch: SampleBatch) -> SampleBatch:
        """``batch`` without the samples the contract does not publish (restricted tags
        are withheld by the publisher before)."""

    def split(self, batch: SampleBatch, max_samples: int) -> list[SampleBatch]:
        """How a flushed batch becomes messages: one part per data message."""

    def encode(self, part: SampleBatch, ts_ns: int, live: bool) -> OutboundMessage:
        """One data message; ``live``: a session is up, so it may go out as live data
        (else it can only be sent later, as replay)."""

    def on_send(self, message: OutboundMessage, replay: bool) -> OutboundMessage:
        """The message as it goes on the wire now (``replay``: it comes from the backlog)."""

    def death(self, reason: str, ts_ns: int) -> OutboundMessage:
        """The message a clean shutdown publishes."""

    def answer(self, result: CommandResult, ts_ns: int) -> list[OutboundMessage]:
        """The answer to a command from the brain."""

    def event(self, event: dict[str, Any], ts_ns: int) -> OutboundMessage:
        """An event (a model alarm raised or cleared)."""

    def device_state_changed(self, device: str, state: str, in_session: bool) -> DeviceChange:
        """What a device going up or down changes on the wire."""

    def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        """A message on one of :meth:`subscriptions`."""

    def parse_command(self, topic: str, payload: bytes) -> Command:
        """A command payload read into writes (raises MalformedCommand)."""

    def metrics(self) -> Iterable[Metric]:
        """The contract's own Prometheus families."""
