"""Builders for edge model tests: a models folder from the committed reference files."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import yaml

from edge_models.engine import model_device
from edge_models.lifecycle import ModelService, scan_manifests
from gateway.config.device import DeviceConfig, TagConfig
from gateway.tags import TagCatalog
from gateway.types import SampleBatch

REFERENCE = Path(__file__).resolve().parents[2] / "edge_models" / "reference"
IDENTITY = REFERENCE / "energy_per_part.onnx"  # features [batch, 1] -> kwh [batch, 1]
NS = 1_000_000_000


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def identity_manifest(name: str = "kpi", **over: Any) -> dict[str, Any]:
    """An identity model: one output equal to ``plc.Power`` aggregated over the cycle."""
    body: dict[str, Any] = {
        "name": name,
        "version": "1",
        "sha256": sha256(IDENTITY),
        "inputs": [{"tag": "plc.Power", "aggregation": "integral", "window": "cycle"}],
        "cycle": {"tag": "plc.PartCount", "edge": "increment"},
        "trigger": {"on": "cycle", "settle": 0},
        "outputs": [{"name": "value", "onnx": "kwh", "unit": "kWs"}],
    }
    body.update(over)
    return body


def write_model(folder: Path, stem: str, manifest: dict[str, Any],
                onnx: Path | bytes = IDENTITY) -> Path:
    """Write ``{stem}.yaml`` and ``{stem}.onnx`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stem}.onnx"
    if isinstance(onnx, bytes):
        target.write_bytes(onnx)
    else:
        shutil.copyfile(onnx, target)
    path = folder / f"{stem}.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def plc_device() -> DeviceConfig:
    return DeviceConfig(name="plc", protocol="test", tags=[
        TagConfig(name="PartCount", type="uint32"),
        TagConfig(name="Power", type="float64", unit="kW"),
        TagConfig(name="Temp", type="float64"),
    ])


def catalog_for(folder: Path, extra: list[DeviceConfig] | None = None) -> TagCatalog:
    """The plc device plus the models device declared from the folder's manifests."""
    devices = [plc_device(), *(extra or [])]
    models = model_device("models", scan_manifests(folder))
    return TagCatalog(devices + ([models] if models else []))


class Sink:
    """Collects what the engine emits."""

    def __init__(self, catalog: TagCatalog) -> None:
        self.catalog = catalog
        self.batches: list[SampleBatch] = []

    def __call__(self, batch: SampleBatch) -> None:
        self.batches.append(batch)

    def samples(self, path: str) -> list[tuple[int, float, int]]:
        """(ts_ns, value, quality) of one tag, in emission order."""
        tag_id = self.catalog.id_of(path)
        out = []
        for b in self.batches:
            sel = b.tag_ids == tag_id
            out += list(zip(b.ts_ns[sel].tolist(), b.values[sel].tolist(),
                            b.quality[sel].tolist(), strict=True))
        return out


def service(folder: Path, catalog: TagCatalog, sink: Sink, **kw: Any) -> ModelService:
    return ModelService(folder, catalog, "models", sink, watch_interval=0, **kw)


def feed_cycles(svc: ModelService, catalog: TagCatalog, first_part: int, cycles: int,
                t0: int = 0, power: float = 2.0, samples_per_cycle: int = 10) -> int:
    """Feed ``cycles`` machine cycles of 10 s (power constant, then a part-count increment);
    return the timestamp of the last sample."""
    pc, pw = catalog.id_of("plc.PartCount"), catalog.id_of("plc.Power")
    ts = t0
    part = first_part
    for _ in range(cycles):
        for _ in range(samples_per_cycle):
            ts += NS
            svc.engine.ingest(SampleBatch.of([pw, pc], [power, float(part)], ts))
        part += 1
        svc.engine.ingest(SampleBatch.of([pc], [float(part)], ts))
    return ts
