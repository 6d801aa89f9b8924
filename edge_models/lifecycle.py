"""Model lifecycle: load the models folder, validate, swap in, keep the old model on failure.

The folder holds manifests (``*.yaml``) each beside its ``.onnx``. It is polled
for changes (manifest or model file mtime/size) every ``watch_interval`` seconds
and reloaded on demand (SIGHUP, or :meth:`ModelService.reload`). A new or changed
model is parsed, hash-checked, validated and smoke-tested in the inference thread,
then swapped in on the event loop; on any failure the model in service keeps
running and the reason is kept in :attr:`ModelService.status` and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)

from edge_models.engine import INLINE_BUDGET_S, AlarmEvent, ModelEngine, model_device
from edge_models.manifest import Manifest, load_manifest, model_file
from edge_models.runtime import LoadedModel, load_model
from edge_models.worker import InferenceWorker
from gateway.config.device import DeviceConfig
from gateway.config.models import ModelsConfig
from gateway.errors import ConfigError, ModelLoadError
from gateway.tags import TagCatalog
from gateway.types import SampleBatch

log = logging.getLogger(__name__)

Signature = tuple[str, tuple[int, int]]


def manifest_paths(folder: Path) -> list[Path]:
    """The manifests of a models folder, sorted."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def scan_manifests(folder: Path) -> list[Manifest]:
    """Every manifest of the folder that parses (to declare output tags at start-up)."""
    found = []
    for path in manifest_paths(folder):
        try:
            found.append(load_manifest(path))
        except ConfigError as exc:
            log.error("model manifest refused: %s", exc)
    return found


def declare_device(folder: Path, device: str) -> DeviceConfig | None:
    """The synthetic device whose tags are the outputs of the folder's models."""
    return model_device(device, scan_manifests(folder))


def _signature(manifest_path: Path) -> Signature | None:
    """What identifies a version: the manifest's bytes (it carries the model's hash) and the
    model file's mtime and size (a replaced file with a stale manifest is caught too)."""
    try:
        text = manifest_path.read_bytes()
    except OSError:
        return None
    onnx = manifest_path.with_suffix(".onnx")
    with contextlib.suppress(ConfigError):  # a manifest naming another file
        onnx = model_file(load_manifest(manifest_path), manifest_path)
    try:
        st = onnx.stat()
        model = (st.st_mtime_ns, st.st_size)
    except OSError:
        model = (0, -1)
    return (hashlib.sha256(text).hexdigest(), model)


@dataclass(slots=True)
class ModelStatus:
    """What the folder's file holds and whether it is in service."""

    manifest: Path
    name: str | None = None
    role: str | None = None
    version: str | None = None
    sha256: str | None = None
    loaded: bool = False
    last_error: str | None = None
    loads: int = 0
    load_failures: int = 0
    signature: Signature | None = field(default=None, repr=False)


class ModelService:
    """The models folder, the engine and the single inference thread."""

    def __init__(
        self,
        folder: Path,
        catalog: TagCatalog,
        device: str,
        emit: Callable[[SampleBatch], None],
        on_alarm: Callable[[AlarmEvent], None] | None = None,
        on_change: Callable[[], None] | None = None,
        tick_interval: float = 0.1,
        watch_interval: float = 2.0,
        capacity: int = 4096,
        inline_budget: float = INLINE_BUDGET_S,
        current: Callable[[np.ndarray], SampleBatch] | None = None,
    ) -> None:
        self.folder = folder
        self.engine = ModelEngine(catalog, device, emit, on_alarm, capacity,
                                  inline_budget_s=inline_budget, current=current)
        self.executor = InferenceWorker("models")
        self.tick_interval = tick_interval
        self.watch_interval = watch_interval
        self.on_change = on_change
        self.status: dict[Path, ModelStatus] = {}
        self._lock = asyncio.Lock()
        self.tick_errors = 0

    # --- lifecycle ------------------------------------------------------------------------------
    async def reload(self) -> list[ModelStatus]:
        """Load new or changed models, unload removed ones; return the changed statuses."""
        async with self._lock:
            changed, swapped = await self._reload()
        if swapped and self.on_change is not None:
            self.on_change()  # something was swapped in or unloaded (not only refused)
        return changed

    async def _reload(self) -> tuple[list[ModelStatus], bool]:
        loop = asyncio.get_running_loop()
        changed: list[ModelStatus] = []
        swapped = False
        present = set(manifest_paths(self.folder))
        for path in sorted(set(self.status) - present):  # removed manifests
            st = self.status.pop(path)
            if st.loaded and st.name and st.role:
                self.engine.remove(st.name, st.role)
                st.loaded, swapped = False, True
                log.info("model %s (%s) unloaded: %s was removed", st.name, st.role, path.name)
                changed.append(st)
        for path in sorted(present):
            st = self.status.setdefault(path, ModelStatus(path))
            sig = _signature(path)
            if sig == st.signature:
                continue
            st.signature = sig
            try:
                model = await loop.run_in_executor(self.executor, self._load, path)
                self._check_unique(model, path)
                self.engine.install(model)
            except (ConfigError, ModelLoadError) as exc:
                st.load_failures += 1
                st.last_error = str(exc)
                keep = f"model {st.name} {st.version} keeps running" if st.loaded else \
                    "nothing loaded from it"
                log.error("model %s refused (%s): %s", path.name, keep, exc)
                changed.append(st)
                continue
            if st.loaded and st.name and (st.name, st.role) != (model.name, model.role):
                self.engine.remove(st.name, st.role or "active")
            st.name, st.role = model.name, model.role
            st.version, st.sha256 = model.manifest.version, model.sha256
            st.loaded, st.last_error = True, None
            st.loads += 1
            swapped = True
            log.info("model %s %s (%s, sha256 %s…) in service", model.name,
                     model.manifest.version, model.role, model.sha256[:12])
            changed.append(st)
        return changed, swapped

    async def retry_refused(self) -> list[ModelStatus]:
        """Load again the models refused so far (a live config change may have added the tags
        they read); those in service are left as they are."""
        for st in self.status.values():
            if not st.loaded:
                st.signature = None
        return await self.reload()

    @staticmethod
    def _load(path: Path) -> LoadedModel:
        return load_model(load_manifest(path), path)

    def _check_unique(self, model: LoadedModel, path: Path) -> None:
        for other in self.status.values():
            if other.manifest != path and other.loaded and \
                    (other.name, other.role) == (model.name, model.role):
                raise ModelLoadError(
                    f"{path.name}: model {model.name} ({model.role}) is already loaded "
                    f"from {other.manifest.name}"
                )

    def describe(self) -> list[dict[str, object]]:
        """The models in service, for the birth."""
        return [m.describe() for m in self.engine.models()]

    # --- tasks ----------------------------------------------------------------------------------
    async def run(self) -> None:
        """Load the folder, then tick and watch until cancelled."""
        await self.reload()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._ticker(), name="models-tick")
            if self.watch_interval > 0:
                tasks.create_task(self._watcher(), name="models-watch")

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            try:
                await self.engine.tick(self.executor)
            except Exception:  # a bug here must not stop the gateway
                self.tick_errors += 1
                log.exception("model tick failed")

    async def _watcher(self) -> None:
        while True:
            await asyncio.sleep(self.watch_interval)
            try:
                await self.reload()
            except Exception:
                log.exception("reloading the models folder failed")

    def health(self) -> list[dict[str, object]]:
        """Per manifest file, for /healthz: what is in service and why a file was refused."""
        return [
            {"file": path.name, "name": st.name, "role": st.role, "version": st.version,
             "sha256": st.sha256, "loaded": st.loaded, "last_error": st.last_error,
             "loads": st.loads, "load_failures": st.load_failures}
            for path, st in sorted(self.status.items())
        ]

    def metrics(self) -> Iterator[Metric]:
        """Prometheus metric families for /metrics."""
        return _metrics(self)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def build_service(
    config: ModelsConfig,
    catalog: TagCatalog,
    emit: Callable[[SampleBatch], None],
    on_alarm: Callable[[AlarmEvent], None] | None = None,
    on_change: Callable[[], None] | None = None,
    current: Callable[[np.ndarray], SampleBatch] | None = None,
) -> ModelService:
    """The model service of a gateway's ``models:`` section (``current``: the last samples
    seen of given tags, see :class:`ModelEngine`)."""
    return ModelService(config.dir, catalog, config.device, emit, on_alarm, on_change,
                        config.tick, config.watch_interval, config.window_capacity,
                        config.inline_budget, current)


def catalog_devices(config: ModelsConfig) -> list[DeviceConfig]:
    """Extra devices for the tag catalog: the model outputs (none when models are off)."""
    if not config.enabled:
        return []
    device = declare_device(config.dir, config.device)
    return [] if device is None else [device]


def _metrics(service: ModelService) -> Iterator[Metric]:
    """Prometheus families: per model and role counters and latency; per file loads."""
    labels = ["model", "role"]
    fam = {
        "inferences": CounterMetricFamily("chenxing_model_inferences",
                                          "Inferences made (rows)", labels=labels),
        "runs": CounterMetricFamily("chenxing_model_runs",
                                    "Session runs (one per model per tick)", labels=labels),
        "errors": CounterMetricFamily("chenxing_model_errors",
                                      "Session runs that failed", labels=labels),
        "skipped": CounterMetricFamily("chenxing_model_skipped",
                                       "Inferences skipped for missing or bad inputs",
                                       labels=labels),
        "uncertain": CounterMetricFamily("chenxing_model_uncertain",
                                         "Outputs published as uncertain (bad inputs)",
                                         labels=labels),
        "inline_runs": CounterMetricFamily("chenxing_model_inline_runs",
                                           "Session runs made on the event loop (tiny "
                                           "models), the rest in the inference thread",
                                           labels=labels),
    }
    latency = SummaryMetricFamily("chenxing_model_latency_seconds",
                                  "Inference time per session run", labels=labels)
    for (name, role), c in sorted(service.engine.counters.items()):
        for key, family in fam.items():
            family.add_metric([name, role], getattr(c, key))
        latency.add_metric([name, role], c.runs, c.latency_sum_s)
    yield from fam.values()
    yield latency
    loads = CounterMetricFamily("chenxing_model_loads", "Models validated and swapped in",
                                labels=["file"])
    failures = CounterMetricFamily("chenxing_model_load_failures",
                                   "Models refused (the previous one kept running)",
                                   labels=["file"])
    loaded = GaugeMetricFamily("chenxing_model_loaded", "1 when the file's model is in service",
                               labels=["file"])
    for path, st in sorted(service.status.items()):
        loads.add_metric([path.name], st.loads)
        failures.add_metric([path.name], st.load_failures)
        loaded.add_metric([path.name], 1.0 if st.loaded else 0.0)
    yield loads
    yield failures
    yield loaded
    yield CounterMetricFamily("chenxing_model_tick_errors", "Model ticks that failed (a bug)",
                              value=service.tick_errors)
