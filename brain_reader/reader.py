"""The brain-side reader: MQTT 5 shared subscription in, InfluxDB v2 write API out.

Messages arrive through :class:`MqttLink` (paho on the event loop;
failover over several brokers). Each becomes line-protocol points, gathered for
``flush_interval`` or ``batch_size`` points and written by one sender task that retries
with backoff while the server is away; meanwhile points wait in memory up to
``max_pending_points`` (then the oldest are dropped and counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from pathlib import Path

from brain_reader.config import IngestConfig
from brain_reader.counters import IngestCounters
from brain_reader.json_messages import JsonIngest
from brain_reader.points import PointEncoder
from brain_reader.sparkplug_messages import SparkplugIngest
from gateway.backoff import Backoff
from gateway.config.loader import resolve_secret
from gateway.errors import InfluxBatchRefused
from gateway.influxdb.writer import InfluxTarget, InfluxWriter, write_failures_log, write_until_done
from gateway.northbound.message import OutboundMessage
from gateway.northbound.mqtt_link import MqttLink
from gateway.repeated_log import RepeatedKinds, RepeatedLog

log = logging.getLogger(__name__)


class IngestReader:
    def __init__(self, config: IngestConfig, base_dir: Path | None = None) -> None:
        """Secrets are resolved here (ConfigError when missing); ``base_dir`` for
        relative secret files."""
        self.config = config
        self.counters = IngestCounters()
        influx = config.influxdb
        self.writer: InfluxWriter | None = None
        self._write_failures: RepeatedLog | None = None
        self._rejections = RepeatedKinds(log, "InfluxDB refused points", logging.ERROR)
        if influx is not None:
            token = resolve_secret(influx.token, base_dir) if influx.token else None
            self.writer = InfluxWriter(InfluxTarget(
                influx.url, influx.bucket, influx.org, token, influx.precision, influx.timeout))
            self._write_failures = write_failures_log(self.writer)
        self._password = (
            resolve_secret(config.password, base_dir) if config.password is not None else None
        )
        encoder = PointEncoder(influx.measurement if influx else "{device}",
                               influx.precision if influx else "ms",
                               influx.unsigned_integers if influx else True)  # fmt: skip
        self.json = JsonIngest(encoder, self.counters, config.sequence_check)
        self.sparkplug = SparkplugIngest(
            encoder, self.counters, config.sequence_check,
            self._publish if config.rebirth else None, config.rebirth_holdoff,
        )  # fmt: skip
        self._pending: deque[str] = deque()
        self._front_dropped = 0  # dropped from the front while a write was in progress
        self._wake = asyncio.Event()
        self._batch_size = influx.batch_size if influx else 5000
        self.link: MqttLink | None = None
        self._command_ids = 0

    # --- input -------------------------------------------------------------------------
    def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        self.counters.received += 1
        if topic.startswith("spBv1.0/"):
            lines = self.sparkplug.handle(topic, payload)
        else:
            lines = self.json.handle(topic, payload)
        if not lines:
            return
        self.counters.points += len(lines)
        if self.writer is None:
            return
        self._pending.extend(lines)
        limit = self.config.influxdb.max_pending_points if self.config.influxdb else 0
        excess = len(self._pending) - limit
        if excess > 0:
            for _ in range(excess):
                self._pending.popleft()
            self.counters.dropped += excess
            self._front_dropped += excess
        if len(self._pending) >= self._batch_size:
            self._wake.set()

    def _publish(self, topic: str, payload: bytes) -> None:
        if self.link is None or not self.link.connected.is_set():
            return
        self._command_ids -= 1
        self.link.publish(OutboundMessage(topic, payload, "event", qos=0, id=self._command_ids))

    # --- output ------------------------------------------------------------------------
    async def _sender(self) -> None:
        assert self.writer is not None and self.config.influxdb is not None
        cfg = self.config.influxdb
        backoff = Backoff(cfg.retry_min, cfg.retry_max)
        while True:
            if len(self._pending) < self._batch_size:  # gather for flush_interval
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), cfg.flush_interval)
            await self._write_some(backoff)

    async def _write_some(self, backoff: Backoff) -> None:
        assert self.writer is not None
        count = min(len(self._pending), self._batch_size)
        if not count:
            return
        body = "\n".join(self._pending[i] for i in range(count)).encode()
        self._front_dropped = 0
        try:
            await write_until_done(self.writer, body, backoff, self._write_failed,
                                   self._write_failures)  # fmt: skip
        except InfluxBatchRefused as exc:
            self.counters.rejected += count
            self._rejections.failure(f"{count} points: {exc}; dropped", str(exc.status))
        else:
            self.counters.written += count
        # the oldest points (these) may have been dropped meanwhile: remove the rest of them
        for _ in range(max(0, count - self._front_dropped)):
            self._pending.popleft()

    def _write_failed(self, reason: str) -> None:
        self.counters.write_errors += 1

    async def _reporter(self) -> None:
        while True:
            await asyncio.sleep(self.config.report_interval)
            log.info("ingest: %s", self.counters.summary())
            self.sum_up_logs()

    def sum_up_logs(self, force: bool = False) -> None:
        """Summaries of repeating failures counted but not yet logged."""
        for repeated in (self._write_failures, self._rejections):
            if repeated is not None:
                repeated.due(force)
        self.json.sum_up_logs(force)
        self.sparkplug.sum_up_logs(force)

    # --- lifecycle -----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, drain_timeout: float = 10.0) -> IngestCounters:
        """Subscribe, write, report; on ``stop`` write what is pending (up to
        ``drain_timeout`` seconds) and disconnect."""
        self.link = MqttLink(self.config.mqtt(), self.config.client_id, None, self._password,
                             lambda message_id: None, subscriptions=self.config.subscriptions(),
                             on_message=self.on_message)  # fmt: skip
        self.link.start()
        log.info("ingest %s: group %s, brokers %s", self.config.client_id, self.config.group,
                 ", ".join(self.config.brokers))  # fmt: skip
        tasks = [asyncio.create_task(self._reporter(), name="ingest-report")]
        if self.writer is not None:
            tasks.append(asyncio.create_task(self._sender(), name="ingest-writer"))
        try:
            await stop.wait()
        finally:
            await self.link.stop()
            await self._drain(tasks, drain_timeout)
            if self.writer is not None:
                await self.writer.close()
            self.sum_up_logs(force=True)
            log.info("ingest stopped: %s", self.counters.summary())
        return self.counters

    async def _drain(self, tasks: list[asyncio.Task[None]], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.writer is not None and self._pending and loop.time() < deadline:
            self._wake.set()
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._pending:
            log.warning("ingest: %d points not written at exit", len(self._pending))
            self.counters.dropped += len(self._pending)
            self._pending.clear()
