"""The gateway process: device runners -> pipeline -> northbound, plus the local API."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from drivers.base import Driver
from drivers.registration import DriverRegistry
from drivers.registry import REGISTRY
from gateway import __version__
from gateway.audit import AuditLog
from gateway.backoff import Backoff
from gateway.bundles import AppliedVersions, BundleVerifier
from gateway.commands import CommandExecutor, CommandResult
from gateway.commands.firmware import FirmwareCommands, firmware_commands
from gateway.config.loader import ConfigDocument
from gateway.config.models import GatewayConfig
from gateway.config.secrets import resolve_secret
from gateway.config.store import ConfigStore
from gateway.errors import DriverError
from gateway.influxdb.sink import InfluxSink, build_sink
from gateway.listen_ports import ListenPorts
from gateway.northbound.contract import Contract
from gateway.northbound.contract_json import JsonContract
from gateway.northbound.outbox import MemoryOutbox, Outbox
from gateway.northbound.publisher import Publisher
from gateway.northbound.sequence import SequenceStore
from gateway.northbound.spool import SpoolLimits, open_spool
from gateway.pauses import Pauses
from gateway.pipeline import Pipeline
from gateway.recent_errors import RecentErrors
from gateway.runtime.config_apply import ConfigApplier
from gateway.runtime.device_runner import DeviceRunner, DeviceState
from gateway.runtime.reload import ReloadCounters, ReloadPlan
from gateway.serial_ports import SerialPorts
from gateway.tags import CatalogChange, TagCatalog
from gateway.types import SampleBatch

if TYPE_CHECKING:
    from edge_models.engine import AlarmEvent
    from edge_models.lifecycle import ModelService
    from edge_models.manifest import Manifest
    from gateway.config.device import DeviceConfig
    from gateway.http_api import HttpApi

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _CatalogFollowed:
    catalog: CatalogChange
    #: the contract asks for every birth again
    rebirth: bool


@dataclass(frozen=True, slots=True)
class ShutdownReport:
    drained: bool
    death_published: bool


class Gateway:
    """Everything one configured gateway runs. Build it, then ``await run(stop)``."""

    #: seconds a device task gets to stop (reload, commands) before it is left behind
    DEVICE_STOP_TIMEOUT = 5.0
    #: seconds from SIGTERM to the death sent: the devices stop (at most
    #: :attr:`SHUTDOWN_DEVICES_S`), the outbox drains, the death gets the last second
    SHUTDOWN_BUDGET = 5.0
    SHUTDOWN_DEVICES_S = 2.0
    #: device connects in progress at once; the others wait their turn (2,000 devices
    #: connecting at once to a loaded host timed out by the hundred)
    CONNECT_SLOTS = 32
    #: devices start this far apart (seconds), spread over at most one poll interval, so
    #: that thousands of devices do not poll on the same instant
    START_STAGGER = 0.002
    #: seconds of building the devices' runners at a time at start-up (the event loop
    #: runs between)
    BUILD_SLICE_S = 0.02

    def __init__(self, config: GatewayConfig, config_dir: Path | None = None,
                 config_path: Path | None = None, drivers: DriverRegistry = REGISTRY,
                 config_digest: bytes | None = None, config_text: str | None = None,
                 document: ConfigDocument | None = None) -> None:
        """``config_path``: the file re-read on SIGHUP and rewritten by live changes made
        another way (none without it). ``drivers``: the registered drivers (the config was
        validated against them). ``config_digest``: the SHA-256 of the file ``config`` was
        read from, taken before reading it (:func:`gateway.config.loader.config_digest`), if
        known. ``config_text``: the text ``config`` was read from (default: the file's),
        kept as the first version in the config store; ``document``: the config as read
        (text, data, lines), which spares reading it again for the first change."""
        self.config = config
        #: the drivers, their metrics and capabilities (drivers/registry.py)
        self.drivers = drivers
        self.config_path = config_path
        #: outcomes of config reloads (SIGHUP): applied, unchanged, refused, invalid,
        #: connect_failed, rolled_back
        self.reloads = ReloadCounters()
        self._device_tasks: dict[str, asyncio.Task[None]] = {}
        self._connect_slots = asyncio.Semaphore(self.CONNECT_SLOTS)
        self._reload_lock = asyncio.Lock()
        #: SHA-256 of the config file as last read by a reload (a SIGHUP with the file as
        #: it was then is answered without reading it again)
        self._applied_digest = config_digest
        #: set when shutdown begins: a live change being watched stops watching
        self.stopping = asyncio.Event()
        self.started_monotonic = time.monotonic()
        #: the synthetic device of the model outputs, declared at start-up
        self._model_devices = _model_devices(config)
        self.catalog = TagCatalog([d for d in config.devices if d.enabled] + self._model_devices)
        self.pipeline = Pipeline(self.catalog)
        #: the append-only audit log every part writes to (the file appears with its first line)
        self.audit = AuditLog(config.audit_path(), config.audit.max_bytes, config.audit.files)
        self.runners: dict[str, DeviceRunner] = {}
        #: the serial ports of the devices: one opened port per RS-485 line, shared
        self.serial_ports = SerialPorts()
        #: the TCP ports devices dial in to (4G DTUs): one listener per port, shared
        self.listen_ports = ListenPorts()
        self.northbound: Publisher | None = None
        #: the optional InfluxDB sink (``northbound.influxdb``), fed like the northbound
        self.influxdb: InfluxSink | None = None
        #: writes from the brain (``commands.enabled``)
        self.commands: CommandExecutor | None = None
        self.http_port: int | None = None
        #: the local API while it runs (its access counters feed /metrics)
        self.http_api: HttpApi | None = None
        #: set once devices, northbound and the local API are running
        self.started = asyncio.Event()
        #: set once start-up's long-lived objects (the drivers and their request plans among
        #: them) are built, the moment before the devices start (nothing polls yet: a full
        #: garbage collection then holds no poll)
        self.built = asyncio.Event()
        self.config_dir = config_dir
        #: edge models (``models.enabled``): windows, inference, hot reload
        self.models = self._build_models()
        #: for the status page: recent WARNING/ERROR records (root logger while running)
        #: and recent alarm events, both bounded
        self.recent_errors = RecentErrors(capacity=100)
        self.recent_alarms: deque[AlarmEvent] = deque(maxlen=50)
        #: garbage-collector pauses and event-loop stalls while running (/metrics)
        self.pauses = Pauses()
        self._config_text = config_text if document is None else document.text
        self._document = document
        #: a live change that added tags: models refused so far are tried again
        self._retry_models: asyncio.Task[object] | None = None
        #: live config changes: the versioned store, staged apply and rollback
        self.live = ConfigApplier(
            self, ConfigStore(config.gateway.state_dir / "config",
                              config.management.keep_versions),
            config_path, config_dir or (config_path.parent if config_path else Path.cwd()))
        #: the MCU firmware inventory the last births carried (None: none sent yet)
        self._births_firmware: list[dict[str, object]] | None = None
        #: the last applied version of each signed bundle (the replay check)
        self.applied_versions = AppliedVersions(config.gateway.state_dir)

    # --- signed bundles -------------------------------------------------------------------
    def bundle_verifier(self) -> BundleVerifier:
        """Checks signed bundles against the current config's ``bundles`` block (a live
        change alters the trusted keys for the next bundle); outcomes go to the audit log."""
        return BundleVerifier(self.config.bundles.trust(), self.applied_versions, self.audit)

    def firmware_inventory(self) -> list[dict[str, object]]:
        """The MCU firmware versions known, for the births: per device with firmware
        updates, the version applied last from a signed bundle (and its name) and the
        version the device reports running (None until it said)."""
        from gateway.runtime.brain_deploy import firmware_inventory

        self._births_firmware = firmware_inventory(self)
        return self._births_firmware

    def _firmware_reported(self, device: str) -> None:
        """A device with firmware updates came up: when it runs another version than the
        last births said (a node seen for the first time, a new image), they go again."""
        told = self._births_firmware
        if told is None or self.northbound is None or \
                not any(f["device"] == device for f in told):
            return
        from gateway.runtime.brain_deploy import firmware_inventory

        if firmware_inventory(self) != told:
            self.northbound.rebirth()

    # --- wiring ---------------------------------------------------------------------------
    def _on_batch(self, batch: SampleBatch) -> None:
        if self.commands is not None:
            self.commands.observe(batch)  # raw values, for read-back verification
        self._route(batch)

    def _route(self, batch: SampleBatch) -> None:
        """Device samples and model outputs alike: through the pipeline, then to the
        northbound, InfluxDB and (as inputs) the edge models."""
        out = self.pipeline.process(batch)
        if self.northbound is not None:
            self.northbound.submit(out)
        if self.influxdb is not None:
            self.influxdb.submit(out)
        if self.models is not None:
            self.models.engine.ingest(out)

    # --- edge models ----------------------------------------------------------------------
    def _build_models(self) -> ModelService | None:
        if not self.config.models.enabled:
            return None
        from edge_models.lifecycle import build_service

        return build_service(self.config.models, self.catalog, self._route,
                             self._on_alarm, self._on_models_changed, self.pipeline.current)

    def _on_alarm(self, event: AlarmEvent) -> None:
        self.recent_alarms.append(event)
        if self.northbound is not None:
            self.northbound.publish_event({"event": "alarm", **event.as_dict()})

    def _on_models_changed(self) -> None:
        if self.northbound is not None:
            self.northbound.rebirth()  # the birth lists the models and firmware (inventory)

    def _sighup(self) -> None:
        self._reload_task = asyncio.create_task(self.reload(), name="reload")

    async def reload(self) -> None:
        """SIGHUP: re-read the config file (when there is one), then the models folder."""
        if self.config_path is not None:
            async with self._reload_lock:  # one at a time; shutdown waits for it
                await self.reload_config()
        await self.reload_models()

    async def reload_config(self) -> str:
        """Apply :attr:`config_path` as it is now, through the staged apply of every live
        change (:mod:`gateway.runtime.config_apply`).

        Returns the outcome (``applied``, ``unchanged``, ``refused``, ``invalid``,
        ``connect_failed``, ``rolled_back``); a refused or invalid config is logged with its
        reason and the old one keeps running.
        """
        from gateway.config.loader import config_digest

        assert self.config_path is not None
        digest = config_digest(self.config_path)
        if digest is not None and digest == self._applied_digest:
            log.info("config reload: the file is as last read")
            self.reloads.outcomes["unchanged"] += 1
            return "unchanged"
        result = await self.live.apply_file()
        if result.ok:
            self._applied_digest = digest
        outcome = "refused" if result.outcome == "conflict" else result.outcome
        self.reloads.outcomes[outcome] += 1
        self.reloads.last_error = None if result.ok else result.describe()
        return outcome

    # --- live config changes ----------------------------------------------------------------
    def next_catalog(self, new: GatewayConfig) -> TagCatalog:
        """The tag catalog of ``new`` after the one running (tags that stay keep their id)."""
        return TagCatalog([d for d in new.devices if d.enabled] + self._model_devices,
                          self.catalog)

    async def switch_config(self, new: GatewayConfig, plan: ReloadPlan,
                            catalog: TagCatalog | None = None) -> bool:
        """Run ``new`` from now on: the devices ``plan`` stops stop, every stage follows the
        new tag catalog (``catalog``, from :meth:`next_catalog`; tags that stay keep their
        ids and state), the devices it starts start; the others keep polling and publishing
        throughout. Returns whether every birth goes again (the contract asked for it)."""
        if not (plan.added or plan.removed or plan.changed or plan.reordered):
            self.config = new  # management or bundles only: read when used
            return False
        await asyncio.gather(*(self._stop_device(name) for name in plan.stop))
        if self.northbound is not None:  # what stopped devices left, under its own catalog
            await self.northbound.flush_async()
        if catalog is None:
            catalog = self.next_catalog(new)
        change = self._follow_catalog(new, catalog)
        rebirth = change.rebirth or plan.reordered
        for name in plan.removed:
            self.runners.pop(name, None)
        devices = {d.name: d for d in new.devices}
        for name in plan.restart:
            log.info("config change: device %s %s", name,
                     "added" if name in plan.added else "changed; restarting it")
            self._start_device(devices[name], self.runners.get(name))
        if rebirth and self.northbound is not None:
            self.northbound.rebirth()
        if self.models is not None and change.catalog.added:
            self._retry_models = asyncio.create_task(self.models.retry_refused(),
                                                     name="models-retry")
        return rebirth

    def _follow_catalog(self, new: GatewayConfig, catalog: TagCatalog) -> _CatalogFollowed:
        """Every stage follows ``catalog`` (of config ``new``) from now on."""
        change = catalog.changed_since(self.catalog)
        self.pipeline.revise(catalog, change)
        rebirth = False
        if self.northbound is not None:
            self.northbound.revise(catalog)
            rebirth = self.northbound.contract.revise(new, catalog)
        if self.influxdb is not None:
            self.influxdb.revise(catalog, new.northbound.publish_restricted)
        if self.commands is not None:
            self.commands.revise(catalog, self._firmware(new, self.audit))
        if self.models is not None:
            self.models.engine.revise(catalog, change)
        self.catalog, self.config = catalog, new
        return _CatalogFollowed(change, rebirth)

    async def declare_model_tags(self, manifest: Manifest) -> bool:
        """The output tags of a model deployed while running (a new model, a first shadow
        candidate) that were not declared at start-up join the catalog, as a live change's
        tags do (the others keep their ids); the births go again. False: none was new."""
        from edge_models.engine import model_device, model_tags

        old = self._model_devices[0] if self._model_devices else None
        known = {t.name for t in old.tags} if old is not None else set()
        added = [t for t in model_tags(manifest) if t.name not in known]
        if not added:
            return False
        device = old.model_copy(update={"tags": [*old.tags, *added]}) if old is not None \
            else model_device(self.config.models.device, [manifest])
        async with self.live.lock:  # not in the middle of a config change
            self._model_devices = [device] if device is not None else []
            catalog = await asyncio.to_thread(self.next_catalog, self.config)
            self._follow_catalog(self.config, catalog)
        log.info("model %s: %d output tags declared (%s)", manifest.name, len(added),
                 ", ".join(t.name for t in added))
        if self.northbound is not None:
            self.northbound.rebirth()
        return True

    async def connect_test(self, device: DeviceConfig, catalog: TagCatalog,
                           timeout: float) -> str | None:
        """Connect once to ``device`` (not running yet with this config; its tags in
        ``catalog``) and close; None when it connected, else why not."""
        claim = self.drivers.port_use(device)
        if claim is not None and self.serial_ports.users(claim[0]):
            return None  # its port is in use here: the watch after the change tells
        try:
            driver = self.drivers.create_driver(device, catalog, self.serial_ports,
                                                self.listen_ports)
        except (DriverError, ValueError) as exc:
            return str(exc)
        try:
            async with asyncio.timeout(timeout):
                await driver.connect()
        except TimeoutError:
            return f"no connection within {timeout:g}s"
        except DriverError as exc:
            return str(exc)
        except Exception as exc:  # a driver bug must not stop the change's report
            log.exception("device %s: connect test failed", device.name)
            return f"internal error: {exc!r}"
        finally:
            with contextlib.suppress(Exception):
                await driver.close()
        return None

    def _firmware(self, config: GatewayConfig, audit: AuditLog) -> FirmwareCommands | None:
        handler = firmware_commands(self.drivers, config.devices, self.config_dir,
                                    config.gateway.id, self._connected_driver, audit,
                                    self.bundle_verifier)
        if handler is not None:
            handler.on_updated = self._on_models_changed  # the births' inventory changed
        return handler

    def _start_device(self, device: DeviceConfig, previous: DeviceRunner | None = None,
                      start_after: float = 0.0) -> None:
        """Build the device's runner and start its task; counters carry over from ``previous``."""
        self._start_runner(self._build_runner(device, previous, start_after))

    async def _start_devices(self, enabled: list[DeviceConfig]) -> None:
        """Start-up: every device's runner built (drivers, request plans), then
        :attr:`built` set, then the devices started, staggered. The runners are built
        :attr:`BUILD_SLICE_S` at a time, the event loop running between (the local API,
        signals): 2,000 devices' plans built in one go held it 2.5 s (issue 21). (Its own
        method: a list of the runners left in :meth:`_run`'s frame kept the first ones
        alive after a reload replaced them.)"""
        runners: list[DeviceRunner] = []
        slice_ends = time.monotonic() + self.BUILD_SLICE_S
        for i, device in enumerate(enabled):
            runners.append(self._build_runner(
                device, start_after=_stagger(i, len(enabled), device, self.START_STAGGER)))
            if time.monotonic() > slice_ends:
                await asyncio.sleep(0)
                slice_ends = time.monotonic() + self.BUILD_SLICE_S
        self.built.set()  # whoever waits runs before the devices' first steps
        for runner in runners:
            self._start_runner(runner)

    def _start_runner(self, runner: DeviceRunner) -> None:
        self._device_tasks[runner.name] = asyncio.create_task(
            runner.run(), name=f"device:{runner.name}")

    def _build_runner(self, device: DeviceConfig, previous: DeviceRunner | None = None,
                      start_after: float = 0.0) -> DeviceRunner:
        """The device's runner (its driver and request plans built), not started."""
        runner = DeviceRunner(
            device.name,
            functools.partial(self._create_driver, device),
            self._on_batch,
            self._on_device_state,
            reconnect=Backoff(initial=device.reconnect_min, maximum=device.reconnect_max),
            start_after=start_after,
            connect_slots=self._connect_slots,
        )
        if previous is not None:
            runner.stats = previous.stats  # counters never go backwards
            if previous.driver is not None:
                runner.carry_errors(previous.driver.errors)
        else:
            runner.prepare()
        self.runners[device.name] = runner
        return runner

    def _create_driver(self, device: DeviceConfig) -> Driver:
        """The driver of ``device`` with its tags' ids in the catalog of the moment."""
        return self.drivers.create_driver(device, self.catalog, self.serial_ports,
                                          self.listen_ports)

    async def _stop_device(self, name: str) -> None:
        task = self._device_tasks.pop(name, None)
        if task is None:
            return
        task.cancel()
        _, stuck = await asyncio.wait([task], timeout=self.DEVICE_STOP_TIMEOUT)
        if stuck:
            log.error("device task %s did not stop within %.0fs; leaving it behind",
                      task.get_name(), self.DEVICE_STOP_TIMEOUT)

    async def reload_models(self) -> None:
        """Reload the models folder now (SIGHUP; also for a reload command)."""
        if self.models is not None:
            await self.models.reload()

    def _on_device_state(self, name: str, state: DeviceState) -> None:
        log.info("device %s is %s", name, state.value)
        if self.northbound is not None:
            self.northbound.device_state_changed(name, state.value)
        if state is DeviceState.UP:
            self._firmware_reported(name)

    def device_states(self) -> dict[str, str]:
        return {name: r.stats.state.value for name, r in self.runners.items()}

    def _build_contract(self) -> Contract:
        """The payload contract of ``northbound.format`` (commands reach the executor)."""
        on_command = self._on_command if self.config.commands.enabled else None
        if self.config.northbound.format == "sparkplug":
            from gateway.northbound.sparkplug.build import build_edge_node

            return build_edge_node(self.config, self.catalog, self.pipeline,
                                   self.device_states, on_command, self._audit)  # fmt: skip
        sequence = SequenceStore(self.config.gateway.state_dir / "sequence.json")
        return JsonContract(self.config, self.catalog, __version__, sequence, on_command)

    def _audit(self, event: str, **fields: object) -> None:
        self.audit.record(event, **fields)

    def _build_northbound(self, contract: Contract) -> Publisher:
        nb = self.config.northbound
        mqtt_cfg = nb.mqtt
        password = None
        if mqtt_cfg.password is not None:
            password = resolve_secret(mqtt_cfg.password, self.config_dir)
        client_id = mqtt_cfg.client_id or f"chenxing-{self.config.gateway.id}"
        return Publisher(nb, self.catalog, contract, self._build_outbox(), client_id, password,
                         self.device_states)  # fmt: skip

    # --- commands -------------------------------------------------------------------------
    def _build_commands(self, contract: Contract) -> CommandExecutor | None:
        cfg = self.config.commands
        if not cfg.enabled:
            return None
        audit = self.audit
        executor = CommandExecutor(cfg, self.catalog, self.config.gateway.id,
                                   self._connected_driver, audit, self._answer_command,
                                   parse=contract.parse_command)  # fmt: skip
        executor.firmware = self._firmware(self.config, audit)
        from gateway.runtime.brain_deploy import deployments_for

        executor.deploy = deployments_for(self, contract)
        return executor

    def _connected_driver(self, device: str) -> Driver | None:
        runner = self.runners.get(device)
        if runner is None or runner.stats.state is not DeviceState.UP:
            return None
        return runner.driver

    def _on_command(self, topic: str, payload: bytes, retained: bool) -> None:
        if self.commands is not None:
            self.commands.submit(topic, payload, retained)

    def _answer_command(self, result: CommandResult) -> None:
        if self.northbound is not None:
            self.northbound.answer_command(result)

    def _build_outbox(self) -> Outbox:
        """The disk spool (default), or the in-memory outbox when the spool is disabled."""
        spool = self.config.northbound.spool
        if not spool.enabled:
            return MemoryOutbox(self.config.northbound.outbox.max_messages)
        path = spool.resolved_path(self.config.gateway.state_dir)
        return open_spool(path, SpoolLimits(spool.max_bytes, spool.max_age))

    # --- lifecycle --------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> ShutdownReport:
        """Run until ``stop`` is set; then stop polling, flush, publish the death."""
        root = logging.getLogger()
        root.addHandler(self.recent_errors)
        self.pauses.start()
        try:
            return await self._run(stop)
        finally:
            self.listen_ports.close()  # the devices are stopped: no port lingers
            self.live.stop()
            root.removeHandler(self.recent_errors)
            await self.pauses.stop()

    async def _run(self, stop: asyncio.Event) -> ShutdownReport:
        from gateway.http_api import HttpApi

        # first: a missing token or a locked spool fails before anything else is opened
        self.influxdb = build_sink(self.config, self.catalog, self.config_dir)
        contract = self._build_contract()
        contract.config_version = lambda: self.live.version
        contract.firmware_info = self.firmware_inventory
        self.commands = self._build_commands(contract)
        self.northbound = self._build_northbound(contract)
        # the config store (after the spool: another gateway on this state is told there)
        self.live.start(self._startup_text(), self._document)
        http = HttpApi(self) if self.config.http.enabled else None
        self.http_api = http
        if http is not None:
            self.http_port = await http.start()
        await self._start_devices([d for d in self.config.devices if d.enabled])
        nb_task = asyncio.create_task(self.northbound.run(), name="northbound")
        influx_task = (
            asyncio.create_task(self.influxdb.run(), name="influxdb")
            if self.influxdb is not None
            else None
        )
        models_task = None
        if self.models is not None:
            self.northbound.contract.models_info = self.models.describe
            models_task = asyncio.create_task(self.models.run(), name="models")
        _on_sighup(self._sighup)  # reload the config file and the models
        cmd_task = (
            asyncio.create_task(self.commands.run(), name="commands")
            if self.commands is not None
            else None
        )
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
        self.stopping.set()
        if cmd_task is not None and self.commands is not None:  # no new writes once stopping
            if not await self.commands.shutdown(timeout=self.DEVICE_STOP_TIMEOUT):
                log.warning("shutdown: commands still running; cancelled (see the audit log)")
            cmd_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await cmd_task
        _on_sighup(None)
        async with self._reload_lock, self.live.lock:  # a change in progress finishes first
            tasks = list(self._device_tasks.values())
        if models_task is not None and self.models is not None:
            models_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await models_task
            self.models.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.SHUTDOWN_BUDGET
        for task in tasks:
            task.cancel()
        stuck: set[asyncio.Task[None]] = set()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=self.SHUTDOWN_DEVICES_S)
        if stuck:
            log.error("%d device tasks did not stop within %.0f s; leaving them behind: %s",
                      len(stuck), self.SHUTDOWN_DEVICES_S,
                      ", ".join(sorted(t.get_name() for t in stuck)[:20]))  # fmt: skip
        drained = await self.northbound.drain(timeout=max(1.0, deadline - loop.time() - 1.0))
        if not drained:
            stats = self.northbound.outbox.stats()
            log.warning(
                "shutdown: %d messages not acknowledged by the broker",
                stats.queued + stats.inflight,
            )
        death = await self.northbound.publish_death(
            "shutdown", timeout=max(0.5, deadline - loop.time()))
        nb_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await nb_task
        await self.northbound.stop()
        if self.influxdb is not None and influx_task is not None:
            if not await self.influxdb.drain(timeout=5.0):
                log.warning("shutdown: InfluxDB points not yet written stay in its spool")
            influx_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await influx_task
            await self.influxdb.close()
        if http is not None:
            await http.stop()
        if self.commands is not None:
            self.commands.close()
        self.audit.close()
        log.info("gateway stopped (drained=%s, death published=%s)", drained, death)
        return ShutdownReport(drained, death)

    def _startup_text(self) -> str:
        """The text the gateway starts with: as given, else the config file's, else (a
        gateway built from a config object alone) the config as JSON."""
        if self._config_text is not None:
            return self._config_text
        if self.config_path is not None:
            with contextlib.suppress(OSError, UnicodeDecodeError):
                return self.config_path.read_text(encoding="utf-8")
        return self.config.model_dump_json(indent=1, exclude_defaults=True) + "\n"

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self.started_monotonic


def _stagger(i: int, count: int, device: DeviceConfig, step: float) -> float:
    """The start delay of the ``i``-th of ``count`` devices: ``step`` apart, all within
    one poll interval of the device (a few devices start at once in effect)."""
    spread = min(device.poll_interval, step * count)
    return spread * i / count


def _model_devices(config: GatewayConfig) -> list[DeviceConfig]:
    """The synthetic device of model output tags, declared from the manifests at start-up."""
    if not config.models.enabled:
        return []
    from edge_models.lifecycle import catalog_devices

    return catalog_devices(config.models)


def _on_sighup(callback: Callable[[], object] | None) -> None:
    """Reload on SIGHUP (main thread only; ignored elsewhere)."""
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError, AttributeError):
        loop = asyncio.get_running_loop()
        if callback is None:
            loop.remove_signal_handler(signal.SIGHUP)
        else:
            loop.add_signal_handler(signal.SIGHUP, callback)
