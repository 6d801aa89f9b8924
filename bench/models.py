"""Edge model costs on the event loop and in the inference thread.

    python -m bench.models [--tags 10000] [--rounds 200]

Feeds batches of ``--tags`` tag-samples (the reference models' inputs among them)
to the engine with the three reference models loaded, and prints the event-loop
cost of ``ingest`` per batch, the cost of a tick with every model due (features on
the loop + one batched run per model in the worker thread), and per-model session
latency. Writes the figures to ``bench/results/models.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_models.engine import model_device
from edge_models.lifecycle import ModelService, scan_manifests
from gateway.config.device import DeviceConfig, TagConfig
from gateway.tags import TagCatalog
from gateway.types import SampleBatch

ROOT = Path(__file__).resolve().parents[1]
PLC = ("MeltTemp", "MouldTemp", "InjectionPressure", "HoldTime", "CycleTime", "PartCount")
NS = 1_000_000_000


async def bench(tags: int, rounds: int) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="bench-models-"))
    try:
        for p in (ROOT / "edge_models" / "reference").iterdir():
            shutil.copy(p, folder / p.name)
        devices = [
            DeviceConfig(name="imm1", protocol="x",
                         tags=[TagConfig(name=t, type="float64") for t in PLC]),
            DeviceConfig(name="imm-meter", protocol="x", tags=[
                TagConfig(name="machine_state", type="uint16"),
                TagConfig(name="active_power", type="float32")]),
            DeviceConfig(name="bulk", protocol="x", tags=[
                TagConfig(name=f"t{i}", type="float32") for i in range(tags - 8)]),
        ]
        catalog = TagCatalog([*devices, model_device("models", scan_manifests(folder))])
        emitted: list[int] = []
        svc = ModelService(folder, catalog, "models", lambda b: emitted.append(len(b)),
                           watch_interval=0)
        await svc.reload()
        n = len(catalog) - len(catalog.ids_of_device("models"))  # not the model outputs
        ids = np.arange(n)
        part = catalog.id_of("imm1.PartCount")
        rng = np.random.default_rng(0)
        ingest_s, tick_s = [], []
        for r in range(rounds):
            values = rng.normal(100, 5, n)
            values[part] = r // 10  # a cycle every 10 batches
            batch = SampleBatch.of(ids, values, (r + 1) * NS // 10)
            t0 = time.perf_counter()
            svc.engine.ingest(batch)
            ingest_s.append(time.perf_counter() - t0)
            if r % 10 == 9:
                t0 = time.perf_counter()
                await svc.engine.tick(svc.executor, now=(r + 1) * NS // 10 + 10 * NS)
                tick_s.append(time.perf_counter() - t0)
        out = {
            "tags": float(n),
            "ingest_ms_median": 1e3 * float(np.median(ingest_s)),
            "ingest_ms_p99": 1e3 * float(np.percentile(ingest_s, 99)),
            "tick_ms_median": 1e3 * float(np.median(tick_s)),
        }
        for (name, role), c in sorted(svc.engine.counters.items()):
            if c.runs:
                out[f"{name}_{role}_run_ms_mean"] = 1e3 * c.latency_sum_s / c.runs
        svc.close()
        return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tags", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    figures = asyncio.run(bench(args.tags, args.rounds))
    for key, value in figures.items():
        print(f"{key:40s} {value:10.3f}")
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "models.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
