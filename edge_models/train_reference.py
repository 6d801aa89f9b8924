"""Build the reference models from the simulated processes in ``hil/process`` (fixed seed).

    pip install -e '.[train]'
    python -m edge_models.train_reference                # writes edge_models/reference/
    python -m edge_models.train_reference --check        # rebuilds in a temp folder, compares

Training needs ``onnx`` (the ``train`` extra); running the models never does.
Features are computed with the runtime's own window code (:mod:`edge_models.windows`)
on samples taken from the process models the way a gateway would poll them, so
training and serving see the same numbers.

* ``quality``: probability that a part is defective, from per-cycle features of the
  injection-moulding model with injected faults (cold or hot melt, short hold, lost
  injection pressure, failing mould cooling). Quadratic logistic regression fitted by
  Newton's method; exported as standardise -> [z, z^2] -> linear -> sigmoid.
* ``energy``: expected active power of the machine from its state (and its recent
  history); the residual to the measured power and ``|residual| / sigma`` as an anomaly
  score. Least squares on normal operation; evaluated on a run with an injected fault
  (running power +30 %, a worn drive).
* ``energy_per_part``: the energy integral of active power over each machine cycle (kWh);
  a KPI expressed as a model so it is published, spooled and alarmed like the others.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_models.manifest import Aggregation
from edge_models.windows import AGGREGATION_CODES, WindowStore, cycle_edges
from gateway.types import SampleBatch
from hil.process.energy_meter import EnergyMeterModel, MeterParams
from hil.process.injection_moulding import InjectionMouldingModel, MouldingParams

log = logging.getLogger("edge_models.train_reference")

SEED = 20260101
OPSET = 17
IR_VERSION = 8
REFERENCE_DIR = Path(__file__).parent / "reference"
NS = 1_000_000_000

# --------------------------------------------------------------------------------------------
# quality
# --------------------------------------------------------------------------------------------
QUALITY_TAGS = ("MeltTemp", "MouldTemp", "InjectionPressure", "HoldTime", "CycleTime",
                "PartCount")
QUALITY_FEATURES = (  # tag, aggregation
    ("MeltTemp", Aggregation.MEAN),
    ("MouldTemp", Aggregation.MEAN),
    ("InjectionPressure", Aggregation.MAX),
    ("HoldTime", Aggregation.LAST),
    ("CycleTime", Aggregation.LAST),
)


def _defect_risk(x: np.ndarray) -> np.ndarray:
    """The injected ground truth: log-odds of a defect from the true cycle features."""
    melt, mould, peak, hold = x[:, 0], x[:, 1], x[:, 2], x[:, 3]
    return (
        -4.0
        + 0.5 * ((melt - 230.0) / 7.0) ** 2  # short shots when cold, flash and burns when hot
        + 3.0 * np.maximum(0.0, 2.4 - hold)  # sink marks when the hold is short
        + np.maximum(0.0, 1150.0 - peak) / 30.0  # short shots when pressure is lost
        + np.maximum(0.0, mould - 60.0) / 3.0  # warpage when mould cooling fails
    )


def quality_data(rng: np.random.Generator, segments: int = 60, per_segment: int = 25,
                 poll_s: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Per-cycle features and defect labels from the moulding model with injected faults."""
    model = InjectionMouldingModel(seed=int(rng.integers(2**31)), t0=0.0)
    catalog = {name: i for i, name in enumerate(QUALITY_TAGS)}
    store = WindowStore(len(catalog), capacity=2048)
    store.watch(catalog.values())
    rows: list[np.ndarray] = []
    t, prev_parts, last_edge = 0.0, np.nan, None
    for segment in range(segments):
        normal = segment % 2 == 0
        params = MouldingParams()
        if not normal:  # one injected fault per segment, of random severity
            fault = segment // 2 % 4
            if fault == 0:
                model.set_melt_setpoint(float(rng.choice([rng.uniform(205, 222),
                                                          rng.uniform(238, 255)])))
            elif fault == 1:
                model.set_hold_time(float(rng.uniform(1.2, 2.6)))
            elif fault == 2:
                params = replace(params, peak_pressure_bar=float(rng.uniform(1020, 1180)))
            else:
                params = replace(params, coolant_c=float(rng.uniform(50, 70)))
        else:
            model.set_melt_setpoint(float(rng.uniform(226, 234)))
            model.set_hold_time(float(rng.uniform(2.7, 3.3)))
        model.params = replace(params, melt_setpoint_c=model.melt_setpoint,
                               hold_time_s=model.hold_time)
        start_parts = model.state_at(t).part_count
        while model.state_at(t).part_count < start_parts + per_segment:
            t += poll_s
            r = model.state_at(t)
            ts = round(t * NS)
            values = [r.melt_temp_c, r.mould_temp_c, r.injection_pressure_bar, r.hold_time_s,
                      r.cycle_time_s, float(r.part_count)]
            store.append(SampleBatch.of(np.arange(len(values)), values, ts))
            if cycle_edges(prev_parts, np.array([float(r.part_count)]), "increment")[0]:
                if last_edge is not None:
                    rows.append(_cycle_features(store, catalog, last_edge, ts))
                last_edge = ts
            prev_parts = float(r.part_count)
    x = np.array(rows)
    labels = (rng.random(len(x)) < 1.0 / (1.0 + np.exp(-_defect_risk(x)))).astype(np.float64)
    return x, labels


def _cycle_features(store: WindowStore, catalog: dict[str, int], start: int, end: int
                    ) -> np.ndarray:
    slots = [store.slot(catalog[tag]) for tag, _ in QUALITY_FEATURES]
    codes = [AGGREGATION_CODES[agg] for _, agg in QUALITY_FEATURES]
    k = len(slots)
    return store.aggregate(slots, [start] * k, [end] * k, codes)


def fit_logistic(design: np.ndarray, y: np.ndarray, l2: float = 1e-2, iterations: int = 30
                 ) -> np.ndarray:
    """L2-regularised logistic regression by Newton's method (weights, bias last)."""
    a = np.hstack([design, np.ones((len(design), 1))])
    w = np.zeros(a.shape[1])
    reg = l2 * np.eye(a.shape[1])
    reg[-1, -1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(a @ w)))
        grad = a.T @ (p - y) + reg @ w
        hess = (a * (p * (1 - p))[:, None]).T @ a + reg
        w = w - np.linalg.solve(hess, grad)
    return w


def _quadratic(z: np.ndarray) -> np.ndarray:
    return np.hstack([z, z * z])


# --------------------------------------------------------------------------------------------
# energy
# --------------------------------------------------------------------------------------------
ENERGY_FEATURES = (  # tag, aggregation, window seconds
    ("machine_state", Aggregation.LAST, 5.0),
    ("machine_state", Aggregation.MEAN, 10.0),
    ("active_power", Aggregation.MEAN, 10.0),
)
ENERGY_EVERY_S = 5.0


def energy_data(seed: int, hours: float, fault: bool = False, poll_s: float = 1.0
                ) -> np.ndarray:
    """Features every 5 s from the meter model (``fault``: a worn drive, +30 % power)."""
    params = MeterParams()
    if fault:
        params = replace(params, running_power_kw=params.running_power_kw * 1.3,
                         idle_power_kw=params.idle_power_kw * 1.3)
    model = EnergyMeterModel(seed=seed, params=params, t0=0.0)
    store = WindowStore(2, capacity=64)
    store.watch([0, 1])
    steps = int(hours * 3600 / poll_s)
    every = int(ENERGY_EVERY_S / poll_s)
    rows = []
    for i in range(1, steps + 1):
        r = model.state_at(i * poll_s)
        ts = round(i * poll_s * NS)
        store.append(SampleBatch.of([0, 1], [float(r.machine_state), r.active_power_kw], ts))
        if i % every == 0 and i * poll_s > 10.0:
            slots = [store.slot(0 if tag == "machine_state" else 1)
                     for tag, _, _ in ENERGY_FEATURES]
            starts = [ts - int(w * NS) for _, _, w in ENERGY_FEATURES]
            codes = [AGGREGATION_CODES[a] for _, a, _ in ENERGY_FEATURES]
            rows.append(store.aggregate(slots, starts, [ts] * len(slots), codes))
    return np.array(rows)


def _energy_design(x: np.ndarray) -> np.ndarray:
    s, m = x[:, 0:1], x[:, 1:2]
    return np.hstack([s, s * s, m, m * m])


# --------------------------------------------------------------------------------------------
# ONNX export (onnx.helper: small, exact, no converter)
# --------------------------------------------------------------------------------------------
def _f32(name: str, values: np.ndarray) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(values, np.float32), name)


def _save(graph: Any, path: Path) -> str:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="chenxing-edge train_reference",
                              producer_version="1")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    data = model.SerializeToString(deterministic=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def export_quality(mu: np.ndarray, sd: np.ndarray, w: np.ndarray, path: Path) -> str:
    from onnx import TensorProto, helper

    n = len(mu)
    nodes = [
        helper.make_node("Sub", ["features", "mu"], ["centred"]),
        helper.make_node("Div", ["centred", "sd"], ["z"]),
        helper.make_node("Mul", ["z", "z"], ["z2"]),
        helper.make_node("Concat", ["z", "z2"], ["design"], axis=1),
        helper.make_node("MatMul", ["design", "w"], ["logit_raw"]),
        helper.make_node("Add", ["logit_raw", "b"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["probability"]),
    ]
    graph = helper.make_graph(
        nodes, "quality",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", n])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 1])],
        [_f32("mu", mu), _f32("sd", sd), _f32("w", w[:-1].reshape(-1, 1)),
         _f32("b", w[-1:])],
    )
    return _save(graph, path)


def export_energy(coef: np.ndarray, sigma: float, path: Path) -> str:
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Slice", ["features", "s0", "s1", "ax"], ["s"]),
        helper.make_node("Slice", ["features", "m0", "m1", "ax"], ["m"]),
        helper.make_node("Slice", ["features", "p0", "p1", "ax"], ["actual"]),
        helper.make_node("Mul", ["s", "s"], ["s2"]),
        helper.make_node("Mul", ["m", "m"], ["m2"]),
        helper.make_node("Concat", ["s", "s2", "m", "m2"], ["design"], axis=1),
        helper.make_node("MatMul", ["design", "w"], ["expected_raw"]),
        helper.make_node("Add", ["expected_raw", "b"], ["expected"]),
        helper.make_node("Sub", ["actual", "expected"], ["residual"]),
        helper.make_node("Abs", ["residual"], ["abs_residual"]),
        helper.make_node("Div", ["abs_residual", "sigma"], ["score"]),
    ]
    i64 = [helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in
           (("s0", 0), ("s1", 1), ("m0", 1), ("m1", 2), ("p0", 2), ("p1", 3), ("ax", 1))]
    graph = helper.make_graph(
        nodes, "energy",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 1])
         for name in ("expected", "residual", "score")],
        [_f32("w", coef[:-1].reshape(-1, 1)), _f32("b", coef[-1:]),
         _f32("sigma", np.array([sigma])), *i64],
    )
    return _save(graph, path)


def export_identity(path: Path) -> str:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["features"], ["kwh"])], "energy_per_part",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor_value_info("kwh", TensorProto.FLOAT, ["batch", 1])],
    )
    return _save(graph, path)


# --------------------------------------------------------------------------------------------
# manifests
# --------------------------------------------------------------------------------------------
PLC, METER = "imm1", "imm-meter"


def quality_manifest(sha: str, auc: float) -> str:
    inputs = "\n".join(
        f"  - {{tag: {PLC}.{tag}, aggregation: {agg.value}, window: cycle}}"
        for tag, agg in QUALITY_FEATURES
    )
    return f"""\
# Reference quality model: probability that a part is defective, per moulding cycle.
# Built by edge_models/train_reference.py (seed {SEED}); held-out ROC AUC {auc:.3f}.
# Tag paths assume an OPC UA device named {PLC} (hil: chenxing-hil sim opcua-plc); edit them
# to your config's device and tag names.
name: quality
version: "1.0.0"
sha256: {sha}
description: defect probability from injection-moulding cycle features
input: features
inputs:   # melt temp, mould temp, peak injection pressure, hold time, cycle time
{inputs}
cycle: {{tag: {PLC}.PartCount, edge: increment}}
trigger: {{on: cycle, settle: 0.5s}}
outputs:
  - {{name: defect_probability, onnx: probability, unit: "1",
     description: probability that the part just made is defective}}
alarms:
  - {{name: defect_alarm, output: defect_probability, above: 0.5, hysteresis: 0.1,
     min_duration: 0s, description: the last part is probably defective}}
on_bad_input: skip
"""


def energy_manifest(sha: str, note: str) -> str:
    inputs = "\n".join(
        f"  - {{tag: {METER}.{tag}, aggregation: {agg.value}, window: {w:g}s}}"
        for tag, agg, w in ENERGY_FEATURES
    )
    return f"""\
# Reference energy model: expected active power from the machine state; the residual to the
# measured power and |residual| / sigma as an anomaly score.
# Built by edge_models/train_reference.py (seed {SEED}); {note}.
# Tag paths assume a Modbus meter device named {METER} (hil: chenxing-hil sim modbus-meter).
name: energy
version: "1.0.0"
sha256: {sha}
description: expected active power and anomaly score
input: features
inputs:   # machine state now, machine state over 10 s, measured power over 10 s
{inputs}
trigger: {{on: interval, every: {ENERGY_EVERY_S:g}s}}
outputs:
  - {{name: expected_power, onnx: expected, unit: kW}}
  - {{name: power_residual, onnx: residual, unit: kW}}
  - {{name: anomaly_score, onnx: score, unit: "1",
     description: "|measured - expected| / sigma of normal operation"}}
alarms:
  - {{name: energy_anomaly, output: anomaly_score, above: 4.0, hysteresis: 1.0,
     min_duration: 30s, description: power far from what the machine state explains}}
on_bad_input: uncertain
"""


def energy_per_part_manifest(sha: str) -> str:
    return f"""\
# Energy per part (KPI): the integral of active power over each moulding cycle, in kWh.
# Built by edge_models/train_reference.py (an identity graph: the work is the window).
name: energy_per_part
version: "1.0.0"
sha256: {sha}
input: features
inputs:
  - {{tag: {METER}.active_power, aggregation: integral, window: cycle, scale: 0.000277777777777778}}
cycle: {{tag: {PLC}.PartCount, edge: increment}}
trigger: {{on: cycle, settle: 1s}}
outputs:
  - {{name: energy_per_part, onnx: kwh, unit: kWh, description: energy used by the last cycle}}
on_bad_input: skip
"""


# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Report:
    quality_auc: float
    quality_defect_rate: float
    energy_sigma_kw: float
    energy_alarm_rate_normal: float
    energy_alarm_rate_fault: float
    hashes: dict[str, str]


def _auc(score: np.ndarray, y: np.ndarray) -> float:
    order = np.argsort(score, kind="stable")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    pos = y == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def build(out: Path) -> Report:
    """Train and export every reference model into ``out``."""
    rng = np.random.default_rng(SEED)
    out.mkdir(parents=True, exist_ok=True)
    # quality
    x, y = quality_data(rng)
    split = int(len(x) * 0.75)
    mu, sd = x[:split].mean(axis=0), x[:split].std(axis=0) + 1e-9
    mu, sd = mu.astype(np.float32).astype(np.float64), sd.astype(np.float32).astype(np.float64)
    w = fit_logistic(_quadratic((x[:split] - mu) / sd), y[:split])
    p_test = 1 / (1 + np.exp(-(np.hstack([_quadratic((x[split:] - mu) / sd),
                                          np.ones((len(x) - split, 1))]) @ w)))
    auc = _auc(p_test, y[split:])
    hashes = {"quality": export_quality(mu, sd, w, out / "quality.onnx")}
    (out / "quality.yaml").write_text(quality_manifest(hashes["quality"], auc))
    # energy
    train = energy_data(int(rng.integers(2**31)), hours=6.0)
    a = np.hstack([_energy_design(train), np.ones((len(train), 1))])
    coef, *_ = np.linalg.lstsq(a, train[:, 2], rcond=None)
    sigma = float(np.std(train[:, 2] - a @ coef))
    seed_eval = int(rng.integers(2**31))
    rates = []
    for fault in (False, True):
        ev = energy_data(seed_eval, hours=2.0, fault=fault)
        e = np.hstack([_energy_design(ev), np.ones((len(ev), 1))]) @ coef
        rates.append(float(np.mean(np.abs(ev[:, 2] - e) / sigma > 4.0)))
    note = (f"sigma {sigma:.3f} kW; score > 4 on {rates[0]:.1%} of normal and "
            f"{rates[1]:.1%} of faulty (+30 % power) 5 s windows")
    hashes["energy"] = export_energy(coef, sigma, out / "energy.onnx")
    (out / "energy.yaml").write_text(energy_manifest(hashes["energy"], note))
    hashes["energy_per_part"] = export_identity(out / "energy_per_part.onnx")
    (out / "energy_per_part.yaml").write_text(energy_per_part_manifest(hashes["energy_per_part"]))
    return Report(auc, float(y.mean()), sigma, rates[0], rates[1], hashes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REFERENCE_DIR)
    parser.add_argument("--check", action="store_true",
                        help="rebuild in a temporary folder and compare with --out; exit 1 "
                        "when a file differs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        import onnx  # noqa: F401
    except ImportError:
        log.error("training needs the 'train' extra: pip install -e '.[train]'")
        return 2
    if not args.check:
        report = build(args.out)
        log.info("%s", report)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="chenxing-train-"))
    try:
        report = build(tmp)
        log.info("%s", report)
        differ = [p.name for p in sorted(tmp.iterdir())
                  if not (args.out / p.name).is_file()
                  or (args.out / p.name).read_bytes() != p.read_bytes()]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if differ:
        log.error("rebuilt files differ from %s: %s", args.out, ", ".join(differ))
        return 1
    log.info("reproduced: every file in %s is identical", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
