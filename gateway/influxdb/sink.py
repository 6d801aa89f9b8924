"""The gateway's optional InfluxDB sink (``northbound.influxdb``).

Fed with the same pipeline output as the MQTT northbound. Samples are encoded to line
protocol, gathered for ``flush_interval`` (or ``batch_size`` points) and each batch is
committed to a disk spool of its own (:class:`DiskSpool`, a separate SQLite file) before
it is sent. A batch leaves the spool only after a 2xx answer; while the server is down
the sender retries the oldest batch with backoff and everything newer waits on disk, in
order. A batch the server rejects for its content (400/413/422) is logged, counted and
removed, so one bad batch cannot block the rest. Nothing here blocks the event loop:
the HTTP write is aiohttp (influxdb-client's async client).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from gateway.backoff import Backoff
from gateway.config.influxdb import InfluxDbConfig
from gateway.config.models import GatewayConfig
from gateway.config.secrets import resolve_secret
from gateway.errors import InfluxBatchRefused
from gateway.influxdb.line_protocol import BatchEncoder
from gateway.influxdb.writer import (
    InfluxTarget,
    InfluxWriter,
    write_failures_log,
    write_until_done,
)
from gateway.northbound.message import OutboundMessage
from gateway.northbound.outbox import Outbox
from gateway.northbound.restricted import PublishableTags
from gateway.northbound.spool import SpoolLimits, open_spool
from gateway.repeated_log import RepeatedKinds
from gateway.tags import TagCatalog
from gateway.types import SampleBatch

log = logging.getLogger(__name__)


@dataclass(slots=True)
class InfluxSinkCounters:
    points_submitted: int = 0
    points_written: int = 0
    batches_written: int = 0
    #: failed attempts (each is retried)
    write_errors: int = 0
    batches_rejected: int = 0
    points_rejected: int = 0
    buffered_points: int = 0
    #: samples of restricted tags kept inside the gateway
    restricted_withheld: int = 0


class InfluxSink:
    def __init__(
        self,
        config: InfluxDbConfig,
        encoder: BatchEncoder,
        writer: InfluxWriter,
        spool: Outbox,
        catalog: TagCatalog,
        publish_restricted: bool,
    ) -> None:
        self.config = config
        self.encoder = encoder
        self.writer = writer
        self.spool = spool
        self.counters = InfluxSinkCounters()
        self.connected = False  # the last write was accepted
        self.last_error: str | None = None
        self._lines: list[str] = []
        self._wake = asyncio.Event()
        self._publishable = PublishableTags(catalog, publish_restricted)
        # a server that refuses every batch, or stays down, is not a line per batch
        self._write_failures = write_failures_log(writer)
        self._rejections = RepeatedKinds(log, "InfluxDB rejected a batch", logging.ERROR)

    # --- input from the pipeline -----------------------------------------------------------
    def revise(self, catalog: TagCatalog, publish_restricted: bool) -> None:
        """A live config change: the series and the tags that may leave follow the catalog."""
        self.encoder.revise(catalog)
        self._publishable = PublishableTags(catalog, publish_restricted)

    def submit(self, batch: SampleBatch) -> None:
        visible = self._publishable.select(batch)
        if visible is not batch:
            self.counters.restricted_withheld += len(batch) - len(visible)
            batch = visible
        if not len(batch):
            return
        self._lines.extend(self.encoder.encode(batch))
        self.counters.points_submitted += len(batch)
        self.counters.buffered_points = len(self._lines)
        if len(self._lines) >= self.config.batch_size:
            self.flush()

    def flush(self) -> None:
        """Gathered points to the spool, ``batch_size`` points per batch."""
        if not self._lines:
            return
        lines, self._lines = self._lines, []
        self.counters.buffered_points = 0
        step = self.config.batch_size
        batches = []
        for start in range(0, len(lines), step):
            chunk = lines[start : start + step]
            body = "\n".join(chunk).encode()
            batches.append(OutboundMessage(self.config.bucket, body, "data", samples=len(chunk)))
        self.spool.put_many(batches)
        self._wake.set()

    # --- tasks -----------------------------------------------------------------------------
    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._flusher(), name="influxdb-flusher")
            tasks.create_task(self._sender(), name="influxdb-sender")

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(self.config.flush_interval)
            self.flush()
            self.spool.maintain()
            self._write_failures.due()
            self._rejections.due()

    async def _sender(self) -> None:
        backoff = Backoff(self.config.retry_min, self.config.retry_max)
        while True:
            batch = self.spool.take()
            if batch is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._send(batch, backoff)

    def _on_retry(self, reason: str) -> None:
        self.counters.write_errors += 1
        self.connected = False
        self.last_error = reason

    async def _send(self, batch: OutboundMessage, backoff: Backoff) -> None:
        try:
            await write_until_done(self.writer, batch.payload, backoff, self._on_retry,
                                   self._write_failures)  # fmt: skip
        except InfluxBatchRefused as exc:
            self.counters.batches_rejected += 1
            self.counters.points_rejected += batch.samples
            self.last_error = f"batch of {batch.samples} points rejected: {exc}"
            self._rejections.failure(f"{batch.samples} points: {exc}; dropped", str(exc.status))
        else:
            self.connected = True
            self.last_error = None
            self.counters.batches_written += 1
            self.counters.points_written += batch.samples
        self.spool.ack(batch.id)

    # --- shutdown --------------------------------------------------------------------------
    async def drain(self, timeout: float) -> bool:
        """Flush and wait until every batch was written (the sender task must run)."""
        self.flush()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.spool.stats().messages == 0:
                return True
            await asyncio.sleep(0.05)
        return False

    async def close(self) -> None:
        """Close the HTTP client and the spool (what is unsent stays on disk)."""
        self.flush()
        await self.writer.close()
        self.spool.close()


def build_sink(config: GatewayConfig, catalog: TagCatalog,
               config_dir: Path | None = None) -> InfluxSink | None:
    """The sink of ``northbound.influxdb`` (None when absent or disabled). Raises
    :class:`ConfigError` for a missing token and :class:`OSError` for an unusable spool."""
    cfg = config.northbound.influxdb
    if cfg is None or not cfg.enabled:
        return None
    token = resolve_secret(cfg.token, config_dir) if cfg.token is not None else None
    ident = config.gateway
    identity = {"gateway": ident.id, "site": ident.site, "line": ident.line}
    encoder = BatchEncoder(catalog, cfg.measurement, identity, cfg.precision,
                           cfg.unsigned_integers)  # fmt: skip
    target = InfluxTarget(cfg.url, cfg.bucket, cfg.org, token, cfg.precision, cfg.timeout)
    path = cfg.spool.resolved_path(ident.state_dir)
    if not path.is_absolute() and config_dir is not None:
        path = config_dir / path
    limits = SpoolLimits(cfg.spool.max_bytes, cfg.spool.max_age)
    spool = open_spool(path, limits, "InfluxDB spool")
    return InfluxSink(cfg, encoder, InfluxWriter(target), spool, catalog,
                      config.northbound.publish_restricted)  # fmt: skip
