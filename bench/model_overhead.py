"""The figures issue #5 asks for, on the reference models:

    python -m bench.model_overhead [--calls 2000] [--machines 100]

* per-call overhead of ``LoadedModel.run`` (validation, dtype, output unpacking) against
  a raw ``InferenceSession.run`` on the same session and inputs (goal <= 2x);
* window -> prediction: one ``ModelEngine.tick`` with one model due (aggregating its
  feature windows on the loop, the inference in the worker thread, outputs emitted),
  p50 and p99 (goal p99 <= 1 ms);
* inferences/s for ``--machines`` machines in one batched run per call.

Writes the figures to ``bench/results/model_overhead.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from edge_models.engine import model_device
from edge_models.lifecycle import ModelService, scan_manifests
from edge_models.manifest import load_manifest
from edge_models.runtime import load_model
from gateway.config.device import DeviceConfig, TagConfig
from gateway.tags import TagCatalog
from gateway.types import SampleBatch

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "edge_models" / "reference"
NS = 1_000_000_000
MODELS = ("quality", "energy", "energy_per_part")


def _time_calls(fn: object, calls: int) -> np.ndarray:
    run = fn  # a zero-argument callable
    for _ in range(50):
        run()  # type: ignore[operator]
    out = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        run()  # type: ignore[operator]
        out[i] = time.perf_counter() - t0
    return out


def overhead(calls: int, machines: int) -> dict[str, float]:
    """Wrapper against raw session, and batched throughput, per reference model."""
    figures: dict[str, float] = {}
    rng = np.random.default_rng(0)
    for name in MODELS:
        path = REFERENCE / f"{name}.yaml"
        model = load_model(load_manifest(path), path)
        k = len(model.manifest.inputs)
        one = rng.normal(1.0, 0.1, (1, k))
        raw_x = one.astype(model.input_dtype)
        feed = {model.manifest.input: raw_x}
        raw = _time_calls(lambda m=model, f=feed: m.session.run(m.output_names, f), calls)
        wrapped = _time_calls(lambda m=model, x=one: m.run(x), calls)
        figures[f"{name}_raw_us_median"] = 1e6 * float(np.median(raw))
        figures[f"{name}_run_us_median"] = 1e6 * float(np.median(wrapped))
        figures[f"{name}_overhead_ratio"] = float(np.median(wrapped) / np.median(raw))
        many = rng.normal(1.0, 0.1, (machines, k))
        batched = _time_calls(lambda m=model, x=many: m.run(x), max(100, calls // 10))
        figures[f"{name}_batched_{machines}_inferences_per_s"] = machines / float(
            np.median(batched)
        )
    return figures


async def window_to_prediction(rounds: int) -> dict[str, float]:
    """One tick with the energy model due (interval trigger): p50 / p99."""
    folder = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    try:
        for suffix in ("yaml", "onnx"):
            shutil.copy(REFERENCE / f"energy.{suffix}", folder / f"energy.{suffix}")
        meter = DeviceConfig(name="imm-meter", protocol="x", tags=[
            TagConfig(name="machine_state", type="uint16"),
            TagConfig(name="active_power", type="float32")])  # fmt: skip
        catalog = TagCatalog([meter, model_device("models", scan_manifests(folder))])
        svc = ModelService(folder, catalog, "models", lambda b: None, watch_interval=0)
        await svc.reload()
        ids = np.array([catalog.id_of("imm-meter.machine_state"),
                        catalog.id_of("imm-meter.active_power")])  # fmt: skip
        executor = ThreadPoolExecutor(1)
        rng = np.random.default_rng(1)
        ticks: list[float] = []
        t = 10 * NS  # on the 5 s grid, past zero
        await svc.engine.tick(executor, now=t)  # the first interval only arms the trigger
        for _ in range(rounds):
            for _ in range(50):  # 5 s of 10 Hz samples: the trigger is every 5 s
                t += NS // 10
                svc.engine.ingest(SampleBatch.of(ids, np.array([2.0, rng.normal(25, 2)]), t))
            t0 = time.perf_counter()
            emitted = await svc.engine.tick(executor, now=t)
            ticks.append(time.perf_counter() - t0)
            assert emitted, "the energy model was not due"
        executor.shutdown()
        svc.close()
        arr = np.array(ticks[10:])
        return {
            "window_to_prediction_ms_p50": 1e3 * float(np.percentile(arr, 50)),
            "window_to_prediction_ms_p99": 1e3 * float(np.percentile(arr, 99)),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--machines", type=int, default=100)
    parser.add_argument("--ticks", type=int, default=500)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    figures = overhead(args.calls, args.machines)
    figures |= asyncio.run(window_to_prediction(args.ticks))
    for key, value in figures.items():
        print(f"{key:48s} {value:12.3f}")
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "model_overhead.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
