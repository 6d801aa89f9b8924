"""The brain-side reader: MQTT in, InfluxDB v2 write API out.

Messages arrive through :class:`MqttLink` (paho on the event loop; failover over several
brokers). Births and deaths feed every reader's aliases and catalog; data of a stream (a
JSON gateway, a Sparkplug edge node) is decoded and written by the reader of the group
that owns the stream (:mod:`.cluster`), held by the others until it is committed.
Points are gathered for ``flush_interval`` or ``batch_size`` points and written by one
sender task that retries with backoff while the server is away; meanwhile points wait
in memory up to ``max_pending_points`` (then the oldest are dropped and counted). After
each write the streams' commits are published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from pathlib import Path
from typing import Any

from brain_reader.catalog import Catalog
from brain_reader.cluster import Cluster, Commit, Takeover
from brain_reader.config import IngestConfig
from brain_reader.counters import IngestCounters
from brain_reader.json_messages import JsonIngest
from brain_reader.points import PointEncoder
from brain_reader.primary_host import PrimaryHost
from brain_reader.sparkplug_messages import EdgeNode, SparkplugIngest
from brain_reader.streams import Allowed, Origin, origin
from gateway.backoff import Backoff
from gateway.config.secrets import resolve_secret
from gateway.errors import InfluxBatchRefused
from gateway.influxdb.writer import InfluxTarget, InfluxWriter, write_failures_log, write_until_done
from gateway.northbound.message import OutboundMessage
from gateway.northbound.mqtt_link import MqttLink
from gateway.repeated_log import RepeatedKinds, RepeatedLog

log = logging.getLogger(__name__)


class IngestReader:
    def __init__(self, config: IngestConfig, base_dir: Path | None = None) -> None:
        """Secrets are resolved here (ConfigError when missing); ``base_dir`` for
        relative secret files and the state folder."""
        self.config = config
        self.counters = IngestCounters()
        base = self._base = base_dir or Path.cwd()
        influx = config.influxdb
        self.writer: InfluxWriter | None = None
        self._write_failures: RepeatedLog | None = None
        self._rejections = RepeatedKinds(log, "InfluxDB refused points", logging.ERROR)
        self._refusals = RepeatedKinds(log, "messages refused (gateway not in the allow-list)")
        if influx is not None:
            token = resolve_secret(influx.token, base_dir) if influx.token else None
            self.writer = InfluxWriter(InfluxTarget(
                influx.url, influx.bucket, influx.org, token, influx.precision, influx.timeout))
            self._write_failures = write_failures_log(self.writer)
        self._password = (
            resolve_secret(config.password, base_dir) if config.password is not None else None
        )
        self.catalog: Catalog | None = None
        if config.catalog:
            state_dir = base / config.state_dir
            state_dir.mkdir(parents=True, exist_ok=True)
            self.catalog = Catalog(state_dir / "catalog.sqlite", config.grading)
        encoder = PointEncoder(influx.measurement if influx else "{device}",
                               influx.precision if influx else "ms",
                               influx.unsigned_integers if influx else True)  # fmt: skip
        self.json = JsonIngest(encoder, self.counters, config.sequence_check,
                               on_birth=self._json_birth)  # fmt: skip
        self.sparkplug = SparkplugIngest(
            encoder, self.counters, config.sequence_check,
            self._publish_command if config.rebirth else None, config.rebirth_holdoff,
            on_birth=self._sparkplug_birth,
        )  # fmt: skip
        self.allowed = Allowed(config.allow)
        self.cluster = Cluster(config.group, config.client_id, self._publish_control,
                               self._take_over, self._release, config.takeover_buffer)  # fmt: skip
        self.host: PrimaryHost | None = None
        if config.primary_host_id is not None:
            self.host = PrimaryHost(config.primary_host_id, config.mqtt(),
                                    f"{config.client_id}-host", self._password,
                                    lambda: self.cluster.joined)  # fmt: skip
        self._pending: deque[str] = deque()
        self._front = 0  # lines ever taken off the front of _pending (written or dropped)
        self._enqueued = 0  # lines ever put in _pending
        #: (end of a message's lines in _enqueued terms, stream, message id)
        self._marks: deque[tuple[int, str, str]] = deque()
        self._marks_per_stream: dict[str, int] = {}
        self._decoded: dict[str, str] = {}  # stream -> id of the last message decoded
        self._written: dict[str, str] = {}  # stream -> id of the last message written
        self._wake = asyncio.Event()
        self._batch_size = influx.batch_size if influx else 5000
        self.link: MqttLink | None = None
        self._command_ids = 0
        self._unacked: set[int] = set()
        self._all_acked = asyncio.Event()
        self._stopping = False
        self.catalog_server: Any = None

    # --- input -------------------------------------------------------------------------
    def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        if self.cluster.is_control(topic):
            self.cluster.on_control(topic, payload)
            return
        self.counters.received += 1
        where = origin(topic, self.config.topic_root)
        if where is None:
            return
        if not self.allowed(where):
            self.counters.refused += 1
            self._refusals.failure(f"{where.contract} {where.publisher} on {topic}",
                                   f"{where.contract} {where.publisher}")  # fmt: skip
            return
        if where.stream is None:  # JSON birth or death: every reader keeps the catalog
            self.json.handle(topic, payload, where.publisher)
            return
        mid = self.cluster.route(where.stream, topic, payload)
        if mid is not None:
            self._process(where, topic, payload, mid)
            return
        if where.contract == "sparkplug":
            group, _, edge = where.publisher.partition("/")
            if where.birth:  # held for the owner; the aliases (and catalog) for everyone
                self.sparkplug.learn(topic, payload)
            elif where.kind in ("NDATA", "DDATA") and not self.sparkplug.born(group, edge):
                self.sparkplug.ask_rebirth(group, edge)  # to be ready to take it over

    def _process(self, where: Origin, topic: str, payload: bytes, mid: str,
                 check_sequence: bool = True) -> None:  # fmt: skip
        assert where.stream is not None
        if where.contract == "json":
            lines = self.json.handle(topic, payload, where.publisher, check_sequence)
        else:
            lines = self.sparkplug.handle(topic, payload, check_sequence)
        self._decoded[where.stream] = mid
        self._enqueue(where.stream, mid, lines)

    def _enqueue(self, stream: str, mid: str, lines: list[str]) -> None:
        self.counters.points += len(lines)
        if self.writer is not None:
            self._pending.extend(lines)
        self._enqueued += len(lines)
        self._marks.append((self._enqueued, stream, mid))
        self._marks_per_stream[stream] = self._marks_per_stream.get(stream, 0) + 1
        limit = self.config.influxdb.max_pending_points if self.config.influxdb else 0
        excess = len(self._pending) - limit
        if self.writer is not None and excess > 0:
            for _ in range(excess):
                self._pending.popleft()
            self.counters.dropped += excess
            self._front += excess
        if len(self._pending) >= self._batch_size:
            self._wake.set()

    # --- the group -----------------------------------------------------------------------
    def _take_over(self, takeover: Takeover) -> None:
        commit = takeover.commit
        stream = takeover.stream
        if commit is not None:
            if commit.released:
                self.counters.handovers += 1
            elif commit.worker != self.config.client_id:
                self.counters.takeovers += 1
            self._restore(stream, commit.state)
            if commit.written is not None:
                self._written[stream] = commit.written
        for held in takeover.rewrite:
            where = origin(held.topic, self.config.topic_root)
            if where is not None and where.stream == stream:
                self.counters.rewritten += 1
                self._process(where, held.topic, held.payload, held.id, check_sequence=False)
        for held in takeover.decode:
            where = origin(held.topic, self.config.topic_root)
            if where is not None and where.stream == stream:
                self._process(where, held.topic, held.payload, held.id)
        if commit is None or not (takeover.rewrite or takeover.decode):
            self._commit(stream)  # claim it: a reader joining later waits for its release

    def _restore(self, stream: str, state: dict[str, Any]) -> None:
        contract, _, publisher = stream.partition("/")
        parts = tuple(publisher.split("/"))
        if contract == "json" and len(parts) == 3:
            self.json.restore(parts, state)
        elif contract == "spb" and len(parts) == 2:
            node = self.sparkplug.nodes.setdefault(parts, EdgeNode())
            node.restore(state)

    def _export(self, stream: str) -> dict[str, Any]:
        contract, _, publisher = stream.partition("/")
        parts = tuple(publisher.split("/"))
        if contract == "json" and len(parts) == 3:
            return self.json.export(parts)
        if contract == "spb" and len(parts) == 2:
            node = self.sparkplug.nodes.get(parts)
            return node.export() if node is not None else {}
        return {}

    def _release(self, stream: str) -> None:
        if not self._marks_per_stream.get(stream):
            self._commit(stream, released=True)

    def _commit(self, stream: str, released: bool = False) -> None:
        commit = Commit(self.config.client_id, self._written.get(stream),
                        self._decoded.get(stream, self._written.get(stream)),
                        self._export(stream), released)  # fmt: skip
        self._publish_control(self.cluster.commit_topic(stream), commit.payload(), True)
        if released:
            self.cluster.released(stream)

    def _done_up_to(self, front: int) -> None:
        """Lines up to ``front`` are written (or dropped): commit their streams."""
        streams: set[str] = set()
        while self._marks and self._marks[0][0] <= front:
            _, stream, mid = self._marks.popleft()
            self._written[stream] = mid
            self._marks_per_stream[stream] -= 1
            streams.add(stream)
        for stream in streams:
            if stream in self.cluster.active:
                releasing = stream in self.cluster.releasing
                self._commit(stream, released=releasing and not self._marks_per_stream[stream])

    # --- MQTT --------------------------------------------------------------------------
    def _publish_control(self, topic: str, payload: bytes, retain: bool) -> None:
        self._send(topic, payload, 1, retain)

    def _publish_command(self, topic: str, payload: bytes) -> None:
        self._send(topic, payload, 0, False)

    def _send(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        if self.link is None or not self.link.connected.is_set():
            return
        self._command_ids -= 1
        if qos:
            self._unacked.add(self._command_ids)
        self.link.publish(OutboundMessage(topic, payload, "event", qos=qos, retain=retain,
                                          id=self._command_ids))  # fmt: skip

    def _acked(self, message_id: int) -> None:
        self._unacked.discard(message_id)
        if not self._unacked:
            self._all_acked.set()

    async def _sent(self, timeout: float = 5.0) -> None:
        """Wait until the broker acknowledged the control messages sent so far (a leaving
        reader's released commits must reach the others before its member message goes)."""
        if not self._unacked or self.link is None or not self.link.connected.is_set():
            return
        self._all_acked.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_acked.wait(), timeout)

    def _link_state(self) -> None:
        assert self.link is not None
        if self.link.connected.is_set():
            if not self.cluster.joined:
                self.cluster.announce()
        else:
            self._unacked.clear()
            self._all_acked.set()
            if self.cluster.joined and not self._stopping:
                log.warning("reader %s: connection lost: streams left to the group",
                            self.config.client_id)  # fmt: skip
            self.cluster.disconnected()
            if self.host is not None:
                asyncio.get_running_loop().create_task(self.host.stop(announce_offline=False))

    def _joined_check(self) -> None:
        """The primary host says online once this reader is subscribed (joined)."""
        if self.host is not None and self.cluster.joined and self.link is not None and (
                self.link.connected.is_set()):  # fmt: skip
            self.host.start()

    # --- catalog -------------------------------------------------------------------------
    def _json_birth(self, key: tuple[str, str, str], body: dict[str, Any]) -> None:
        if self.catalog is not None:
            self.catalog.json_birth(key, body)

    def _sparkplug_birth(self, topic: Any, payload: dict[str, Any]) -> None:
        if self.catalog is not None:
            self.catalog.sparkplug_birth(topic, payload)

    # --- output ------------------------------------------------------------------------
    async def _sender(self) -> None:
        cfg = self.config.influxdb
        flush = cfg.flush_interval if cfg is not None else 1.0
        backoff = Backoff(cfg.retry_min, cfg.retry_max) if cfg is not None else None
        while True:
            if len(self._pending) < self._batch_size:  # gather for flush_interval
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), flush)
            if backoff is None or self.writer is None:
                self._front = self._enqueued
                self._done_up_to(self._front)
            else:
                await self._write_some(backoff)

    async def _write_some(self, backoff: Backoff) -> None:
        assert self.writer is not None
        count = min(len(self._pending), self._batch_size)
        if not count:
            self._done_up_to(self._front)  # messages without points
            return
        body = "\n".join(self._pending[i] for i in range(count)).encode()
        front = self._front
        try:
            await write_until_done(self.writer, body, backoff, self._write_failed,
                                   self._write_failures)  # fmt: skip
        except InfluxBatchRefused as exc:
            self.counters.rejected += count
            self._rejections.failure(f"{count} points: {exc}; dropped", str(exc.status))
        else:
            self.counters.written += count
        # the oldest points (these) may have been dropped meanwhile: remove the rest of them
        for _ in range(max(0, front + count - self._front)):
            self._pending.popleft()
        self._front = max(self._front, front + count)
        self._done_up_to(self._front)

    def _write_failed(self, reason: str) -> None:
        self.counters.write_errors += 1

    async def _reporter(self) -> None:
        while True:
            await asyncio.sleep(self.config.report_interval)
            log.info("ingest: %s", self.counters.summary())
            self.sum_up_logs()

    def sum_up_logs(self, force: bool = False) -> None:
        """Summaries of repeating failures counted but not yet logged."""
        for repeated in (self._write_failures, self._rejections, self._refusals):
            if repeated is not None:
                repeated.due(force)
        self.json.sum_up_logs(force)
        self.sparkplug.sum_up_logs(force)

    def streams(self) -> dict[str, dict[str, Any]]:
        """Per stream, from the latest commit any reader of the group published: its
        writer and counts (messages, gaps, late, duplicates)."""
        return {stream: {"worker": c.worker, **(c.state.get("counts") or {})}
                for stream, c in sorted(self.cluster.commits.items())}  # fmt: skip

    # --- lifecycle -----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, drain_timeout: float = 10.0) -> IngestCounters:
        """Subscribe, write, report; on ``stop`` write what is pending (up to
        ``drain_timeout`` seconds), release the streams and disconnect."""
        control = self.cluster.subscriptions()
        will = OutboundMessage(self.cluster.member_topic, b"", "death", qos=1, retain=True)
        self.link = MqttLink(self.config.mqtt(), self.config.client_id, will, self._password,
                             self._acked, on_state=self._link_state,
                             subscriptions=control + self.config.subscriptions(),
                             on_message=self._on_message)  # fmt: skip
        self.link.start()
        log.info("ingest %s: group %s, brokers %s", self.config.client_id, self.config.group,
                 ", ".join(self.config.brokers))  # fmt: skip
        tasks = [asyncio.create_task(self._reporter(), name="ingest-report"),
                 asyncio.create_task(self._sender(), name="ingest-writer")]  # fmt: skip
        server = self.catalog_server = None
        if self.config.http.enabled and self.catalog is not None:
            from brain_reader.catalog_http import CatalogServer

            token = self.config.http.token
            server = CatalogServer(self.catalog, self.config.http,
                                   resolve_secret(token, self._base) if token else None)
            await server.start()
            self.catalog_server = server
        try:
            await stop.wait()
        finally:
            if server is not None:
                await server.stop()
            if self.host is not None:
                await self.host.stop()
            await self._drain(tasks, drain_timeout)
            self._stopping = True
            if self.link.connected.is_set():
                for stream in list(self.cluster.active):
                    self._commit(stream, released=True)
                await self._sent()
                self.cluster.leave()
                await self._sent()
            await self.link.stop()
            if self.writer is not None:
                await self.writer.close()
            if self.catalog is not None:
                self.catalog.close()
            self.sum_up_logs(force=True)
            log.info("ingest stopped: %s", self.counters.summary())
        return self.counters

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        joined = self.cluster.joined
        self.on_message(topic, payload, retained)
        if self.cluster.joined and not joined:
            self._joined_check()

    async def _drain(self, tasks: list[asyncio.Task[None]], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.writer is not None and self._pending and loop.time() < deadline:
            self._wake.set()
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.writer is None:
            self._done_up_to(self._enqueued)
        if self._pending:
            log.warning("ingest: %d points not written at exit", len(self._pending))
            self.counters.dropped += len(self._pending)
            self._pending.clear()
