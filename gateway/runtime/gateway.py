"""The gateway process: device runners -> pipeline -> northbound, plus the local API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from drivers.registry import create_driver
from gateway import __version__
from gateway.config.loader import resolve_secret
from gateway.config.models import GatewayConfig
from gateway.northbound.contract_json import JsonContract
from gateway.northbound.message import OutboundMessage
from gateway.northbound.mqtt_link import MqttLink
from gateway.northbound.outbox import MemoryOutbox, Outbox
from gateway.northbound.publisher import Northbound
from gateway.northbound.sequence import SequenceStore
from gateway.northbound.spool import DiskSpool, SpoolLimits, SpoolLockedError
from gateway.pipeline import Pipeline
from gateway.runtime.device_runner import DeviceRunner, DeviceState
from gateway.tags import TagCatalog
from gateway.types import SampleBatch

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ShutdownReport:
    drained: bool
    death_published: bool


class Gateway:
    """Everything one configured gateway runs. Build it, then ``await run(stop)``."""

    #: seconds the device tasks get to stop on shutdown before they are left behind
    DEVICE_STOP_TIMEOUT = 5.0

    def __init__(self, config: GatewayConfig, config_dir: Path | None = None) -> None:
        self.config = config
        self.started_monotonic = time.monotonic()
        self.catalog = TagCatalog([d for d in config.devices if d.enabled])
        self.pipeline = Pipeline(self.catalog)
        self.runners: dict[str, DeviceRunner] = {}
        self.northbound: Northbound | None = None
        self.http_port: int | None = None
        #: set once devices, northbound and the local API are running
        self.started = asyncio.Event()
        self.config_dir = config_dir

    # --- wiring ---------------------------------------------------------------------------
    def _on_batch(self, batch: SampleBatch) -> None:
        out = self.pipeline.process(batch)
        if self.northbound is not None:
            self.northbound.submit(out)

    def _on_device_state(self, name: str, state: DeviceState) -> None:
        log.info("device %s is %s", name, state.value)
        if self.northbound is not None and state in (DeviceState.UP, DeviceState.DOWN):
            self.northbound.rebirth()

    def device_states(self) -> dict[str, str]:
        return {name: r.stats.state.value for name, r in self.runners.items()}

    def _build_northbound(self) -> Northbound:
        nb = self.config.northbound
        mqtt_cfg = nb.mqtt
        password = None
        if mqtt_cfg.password is not None:
            password = resolve_secret(mqtt_cfg.password, self.config_dir)
        client_id = mqtt_cfg.client_id or f"chenxing-{self.config.gateway.id}"
        contract = JsonContract(self.config, self.catalog, __version__)
        sequence = SequenceStore(self.config.gateway.state_dir / "sequence.json")

        def link_factory(will: OutboundMessage, on_ack, on_state) -> MqttLink:  # type: ignore[no-untyped-def]
            return MqttLink(mqtt_cfg, client_id, will, password, on_ack, on_state)

        return Northbound(
            nb,
            contract,
            self._build_outbox(),
            sequence,
            link_factory,
            self.device_states,
        )

    def _build_outbox(self) -> Outbox:
        """The disk spool (default), or the in-memory outbox when the spool is disabled."""
        spool = self.config.northbound.spool
        if not spool.enabled:
            return MemoryOutbox(self.config.northbound.outbox.max_messages)
        path = spool.resolved_path(self.config.gateway.state_dir)
        try:
            return DiskSpool(path, SpoolLimits(spool.max_bytes, spool.max_age))
        except SpoolLockedError as exc:
            raise OSError(f"{exc}: is another gateway running with this state?") from None
        except sqlite3.Error as exc:
            raise OSError(f"cannot open the spool {path}: {exc}") from exc

    # --- lifecycle --------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> ShutdownReport:
        """Run until ``stop`` is set; then stop polling, flush, publish the death."""
        from gateway.http_api import HttpApi

        self.northbound = self._build_northbound()
        for device in self.config.devices:
            if not device.enabled:
                continue
            self.runners[device.name] = DeviceRunner(
                device.name,
                lambda device=device: create_driver(device, self.catalog),
                self._on_batch,
                self._on_device_state,
            )
        http = HttpApi(self) if self.config.http.enabled else None
        if http is not None:
            self.http_port = await http.start()
        tasks = [asyncio.create_task(r.run(), name=f"device:{n}") for n, r in self.runners.items()]
        nb_task = asyncio.create_task(self.northbound.run(), name="northbound")
        log.info(
            "gateway %s running: %d devices, %d tags",
            self.config.gateway.id,
            len(self.runners),
            len(self.catalog),
        )
        self.started.set()
        stop_wait = asyncio.create_task(stop.wait())
        await asyncio.wait([stop_wait, nb_task], return_when=asyncio.FIRST_COMPLETED)
        if nb_task.done() and not stop.is_set():
            nb_task.result()  # the northbound died: re-raise its error
        log.info("stopping: polling ends, flushing telemetry")
        for task in tasks:
            task.cancel()
        stuck: set[asyncio.Task[None]] = set()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=self.DEVICE_STOP_TIMEOUT)
        for task in stuck:
            log.error("device task %s did not stop within %.0fs; leaving it behind",
                      task.get_name(), self.DEVICE_STOP_TIMEOUT)
        drained = await self.northbound.drain(timeout=5.0)
        if not drained:
            stats = self.northbound.outbox.stats()
            log.warning(
                "shutdown: %d messages not acknowledged by the broker",
                stats.queued + stats.inflight,
            )
        death = await self.northbound.publish_death("shutdown", timeout=2.0)
        nb_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await nb_task
        await self.northbound.stop()
        if http is not None:
            await http.stop()
        log.info("gateway stopped (drained=%s, death published=%s)", drained, death)
        return ShutdownReport(drained, death)

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self.started_monotonic
