"""Edge model figures (issue #5) on the reference models, with their goals:

    python -m bench.models [--rounds 3] [--calls 2000] [--ticks 300] [--machines 100]

* **per-call overhead**: ``LoadedModel.run`` (float64 features in, ``[n, outputs]``
  float64 out) against a raw ``InferenceSession.run`` on the same session with the same
  input already in the model's dtype; blocks of the two interleaved; goal <= 2x;
* **window -> prediction**: from the trigger to the output batch handed to the pipeline
  (the engine's ``emit``), p50 and p99; goal p99 <= 1 ms. ``interval``: the energy model,
  from the tick on its trigger time. ``cycle``: the quality model with ``settle: 0``,
  from the ingest of the batch whose part-counter increment closes the cycle (the cycle
  edge found, the features aggregated over the cycle's windows, the run, the outputs and
  the alarm emitted). The wait for ``models.tick`` and ``settle`` is scheduling, not
  measured. Measured with the gateway's default (tiny models inline on the loop, see
  ``edge_models/engine.py``) and with inline runs off (every run handed to the thread);
* **100 machines batched**: inferences/s of one run with ``--machines`` rows;
* event-loop costs with ``--tags`` tags flowing: ``ingest`` per batch, a tick with all
  three models due.

Each figure is measured ``--rounds`` times; the table shows the median of the rounds.
Writes ``bench/results/models-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import Run
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
PLC = ("MeltTemp", "MouldTemp", "InjectionPressure", "HoldTime", "CycleTime", "PartCount")


def _per_call(fn: Callable[[], object], calls: int) -> float:
    """Seconds per call over a block of ``calls`` calls."""
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def _interleaved(a: Callable[[], object], b: Callable[[], object], calls: int,
                 block: int = 50) -> tuple[float, float]:
    """Median seconds per call of ``a`` and ``b``, measured in alternating blocks."""
    for _ in range(block):
        a()
        b()
    ta, tb = [], []
    for _ in range(max(1, calls // block)):
        ta.append(_per_call(a, block))
        tb.append(_per_call(b, block))
    return float(np.median(ta)), float(np.median(tb))


def overhead(calls: int, machines: int) -> dict[str, float]:
    """Wrapper against raw session, and batched throughput, per reference model."""
    figures: dict[str, float] = {}
    rng = np.random.default_rng(0)
    for name in MODELS:
        path = REFERENCE / f"{name}.yaml"
        model = load_model(load_manifest(path), path)
        k = len(model.manifest.inputs)
        session, names, feed_name = model.session, model.output_names, model.manifest.input
        one = rng.normal(1.0, 0.1, (1, k))
        raw_feed = {feed_name: one.astype(model.input_dtype)}
        raw, ours = _interleaved(lambda s=session, o=names, f=raw_feed: s.run(o, f),
                                 lambda m=model, x=one: m.run(x), calls)
        figures[f"{name}_raw_us"] = 1e6 * raw
        figures[f"{name}_run_us"] = 1e6 * ours
        figures[f"{name}_overhead_ratio"] = ours / raw
        many = rng.normal(1.0, 0.1, (machines, k))
        raw_many = {feed_name: many.astype(model.input_dtype)}
        raw_b, ours_b = _interleaved(lambda s=session, o=names, f=raw_many: s.run(o, f),
                                     lambda m=model, x=many: m.run(x), max(100, calls // 10),
                                     block=10)
        figures[f"{name}_batched_{machines}_inferences_per_s"] = machines / ours_b
        figures[f"{name}_batched_{machines}_raw_inferences_per_s"] = machines / raw_b
    return figures


def _copy_reference(folder: Path, names: tuple[str, ...], settle0: bool = False) -> None:
    for name in names:
        shutil.copy(REFERENCE / f"{name}.onnx", folder / f"{name}.onnx")
        text = (REFERENCE / f"{name}.yaml").read_text()
        if settle0:  # trigger -> prediction without the wait for late samples
            text = text.replace("settle: 0.5s", "settle: 0").replace(
                "{on: interval, every: 5s}", "{on: interval, every: 5s, settle: 0}")
        (folder / f"{name}.yaml").write_text(text)


def _devices(bulk: int = 0) -> list[DeviceConfig]:
    devices = [
        DeviceConfig(name="imm1", protocol="x",
                     tags=[TagConfig(name=t, type="float64") for t in PLC]),
        DeviceConfig(name="imm-meter", protocol="x", tags=[
            TagConfig(name="machine_state", type="uint16"),
            TagConfig(name="active_power", type="float32")]),
    ]
    if bulk:
        devices.append(DeviceConfig(name="bulk", protocol="x", tags=[
            TagConfig(name=f"t{i}", type="float32") for i in range(bulk)]))
    return devices


def _clocks() -> tuple[float, float]:
    """Wall time, and the CPU time of the whole process (the loop and the thread)."""
    return time.perf_counter(), time.process_time()


async def _service(folder: Path, bulk: int = 0) -> tuple[ModelService, TagCatalog,
                                                          list[tuple[float, float]]]:
    catalog = TagCatalog([*_devices(bulk), model_device("models", scan_manifests(folder))])
    emitted_at: list[tuple[float, float]] = []
    svc = ModelService(folder, catalog, "models", lambda _b: emitted_at.append(_clocks()),
                       watch_interval=0)
    await svc.reload()
    return svc, catalog, emitted_at


def _p50_p99(lat: list[float], prefix: str) -> dict[str, float]:
    arr = 1e3 * np.array(lat)
    return {f"{prefix}_ms_p50": float(np.percentile(arr, 50)),
            f"{prefix}_ms_p99": float(np.percentile(arr, 99))}


async def window_to_prediction(ticks: int, inline: bool) -> dict[str, float]:
    """Interval trigger (energy) and cycle trigger (quality), trigger -> emit."""
    folder = Path(tempfile.mkdtemp(prefix="bench-models-"))
    mode = "inline" if inline else "thread"
    try:
        _copy_reference(folder, ("energy", "quality"), settle0=True)
        svc, catalog, emitted_at = await _service(folder)
        if not inline:
            svc.engine.inline_budget_s = 0.0
        eng = svc.engine
        meter = np.array([catalog.id_of("imm-meter.machine_state"),
                          catalog.id_of("imm-meter.active_power")])
        plc = np.array([catalog.id_of(f"imm1.{t}") for t in PLC])
        rng = np.random.default_rng(1)
        interval: list[tuple[float, float]] = []
        cycle: list[tuple[float, float]] = []
        t = 10 * NS  # on the 5 s grid of the energy trigger
        part = 0.0
        for ts, count in ((t - NS // 10, -1.0), (t, part)):  # the first edge starts a cycle
            eng.ingest(SampleBatch.of(plc, np.array([230.0, 50.0, 1200.0, 3.0, 16.0, count]),
                                      ts))
        await eng.tick(svc.executor, now=t)  # the first interval only arms the trigger
        for i in range(ticks + 20):
            for _ in range(48):  # 4.8 s of 10 Hz samples, the part counter unchanged
                t += NS // 10
                eng.ingest(SampleBatch.of(meter, np.array([2.0, rng.normal(25, 2)]), t))
                eng.ingest(SampleBatch.of(plc, np.array(
                    [230 + rng.normal(), 50.0, 1200.0, 3.0, 16.0, part]), t))
            # the cycle closes: the batch with the part-counter increment
            t += NS // 10
            part += 1
            closing = SampleBatch.of(plc, np.array([230.0, 50.0, 1200.0, 3.0, 16.0, part]), t)
            emitted_at.clear()
            t0 = _clocks()
            eng.ingest(closing)
            await eng.tick(svc.executor, now=t)  # quality due (settle 0); energy not yet
            assert emitted_at, "the quality model was not due"
            if i >= 20:
                cycle.append((emitted_at[0][0] - t0[0], emitted_at[0][1] - t0[1]))
            # the interval trigger time comes: the tick on it
            t_due = (t // (5 * NS) + 1) * 5 * NS
            eng.ingest(SampleBatch.of(meter, np.array([2.0, rng.normal(25, 2)]), t_due))
            t = t_due
            emitted_at.clear()
            t0 = _clocks()
            await eng.tick(svc.executor, now=t_due)
            assert emitted_at, "the energy model was not due"
            if i >= 20:
                interval.append((emitted_at[0][0] - t0[0], emitted_at[0][1] - t0[1]))
        runs = {k[0]: c for k, c in eng.counters.items()}
        svc.close()
        out: dict[str, float] = {}
        for trig, lat in (("interval", interval), ("cycle", cycle)):
            out |= _p50_p99([w for w, _ in lat], f"w2p_{trig}_{mode}")
            out |= _p50_p99([c for _, c in lat], f"w2p_{trig}_{mode}_cpu")
        inline_runs = sum(getattr(c, "inline_runs", 0) for c in runs.values())
        out[f"w2p_{mode}_share_inline"] = inline_runs / max(1, sum(c.runs for c in runs.values()))
        return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def loop_costs(tags: int, batches: int) -> dict[str, float]:
    """``ingest`` of ``tags``-sample batches, and a tick with all three models due."""
    folder = Path(tempfile.mkdtemp(prefix="bench-models-"))
    try:
        _copy_reference(folder, MODELS)
        svc, catalog, _ = await _service(folder, bulk=tags - 8)
        n = len(catalog) - len(catalog.ids_of_device("models"))
        ids = np.arange(n)
        part = catalog.id_of("imm1.PartCount")
        rng = np.random.default_rng(0)
        ingest_s, tick_s = [], []
        for r in range(batches):
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
        svc.close()
        return {
            "ingest_tags": float(n),
            "ingest_ms_p50": 1e3 * float(np.median(ingest_s)),
            "ingest_ms_p99": 1e3 * float(np.percentile(ingest_s, 99)),
            "tick_3_models_ms_p50": 1e3 * float(np.median(tick_s)),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _goals(machines: int) -> list[tuple[str, str, Callable[[float], bool] | None]]:
    """(figure, goal text, test) rows of the table."""
    rows: list[tuple[str, str, Callable[[float], bool] | None]] = []
    for name in MODELS:
        rows += [(f"{name}_raw_us", "", None), (f"{name}_run_us", "", None),
                 (f"{name}_overhead_ratio", "<= 2x", lambda v: v <= 2.0)]
    for mode in ("inline", "thread"):
        for trig in ("interval", "cycle"):
            rows += [(f"w2p_{trig}_{mode}_ms_p50", "", None),
                     (f"w2p_{trig}_{mode}_ms_p99", "<= 1 ms",
                      (lambda v: v <= 1.0) if mode == "inline" else None),
                     (f"w2p_{trig}_{mode}_cpu_ms_p50", "", None),
                     (f"w2p_{trig}_{mode}_cpu_ms_p99", "", None)]
        rows.append((f"w2p_{mode}_share_inline", "", None))
    for name in MODELS:
        rows += [(f"{name}_batched_{machines}_inferences_per_s", "", None),
                 (f"{name}_batched_{machines}_raw_inferences_per_s", "", None)]
    rows += [("ingest_ms_p50", "", None), ("ingest_ms_p99", "", None),
             ("tick_3_models_ms_p50", "", None)]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--ticks", type=int, default=300)
    parser.add_argument("--machines", type=int, default=100)
    parser.add_argument("--tags", type=int, default=10_000)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--out", type=Path, help="JSON result file")
    args = parser.parse_args()
    run = Run("models", packages=("onnxruntime",))
    logging.basicConfig(level=logging.ERROR)
    rounds: list[dict[str, float]] = []
    for r in range(args.rounds):
        figures = overhead(args.calls, args.machines)
        for inline in (True, False):
            figures |= asyncio.run(window_to_prediction(args.ticks, inline))
        figures |= asyncio.run(loop_costs(args.tags, args.batches))
        rounds.append(figures)
        print(f"round {r + 1}/{args.rounds} done")
    median = {k: float(np.median([f[k] for f in rounds])) for k in rounds[0]}
    verdicts: dict[str, str] = {}
    print(f"\n{'figure':46s} {'median':>14s} {'min':>12s} {'max':>12s}  goal")
    for key, goal, test in _goals(args.machines):
        if key not in median:
            continue
        values = [f[key] for f in rounds]
        verdict = "" if test is None else ("PASS" if test(median[key]) else "MISS")
        if verdict:
            verdicts[key] = verdict
        print(f"{key:46s} {median[key]:14.3f} {min(values):12.3f} {max(values):12.3f}  "
              f"{goal} {verdict}".rstrip())
    out: dict[str, Any] = {"parameters": vars(args), "median": median, "goals": verdicts,
                           "rounds": rounds}
    path = run.write(out, args.out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
