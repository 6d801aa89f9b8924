"""Footprint: what importing costs, and where memory and start-up time go per structure.

No network, no simulator: a config of D Modbus TCP devices of T float32 tags is read and
the gateway's start-up structures are built from it one by one (with the config's data
that live changes keep beside it, and the console's trend ring), each measured with
``tracemalloc`` (bytes still held once built, and the peak while building) and timed::

    python -m bench.footprint --devices 100 --tags 100      # 10,000 tags
    python -m bench.footprint --devices 100 --tags 1000     # 100,000 tags
    python -m bench.footprint --imports                     # import costs only
    python -m bench.footprint --models                      # what the edge models add

Import costs: each set of modules imported by a fresh interpreter, its RSS afterwards
(``VmRSS``) and the time it took, next to a bare interpreter's. Models: in a fresh
interpreter that imported the gateway's CLI, the RSS (anonymous and file-backed apart)
that onnxruntime's import and each reference model loaded by the gateway's runtime add
(issue 21: the two reference models may add 25 MB).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import Run, load_note
from bench.scale import Params, gateway_config

#: module sets a gateway may import, by what they are for
IMPORT_SETS: dict[str, str] = {
    "bare interpreter": "",
    "numpy": "numpy",
    "pydantic": "pydantic",
    "config loader (all driver configs)": "gateway.config.loader",
    "CLI entry point": "gateway.cli.main",
    "runtime (gateway.runtime.gateway)": "gateway.runtime.gateway",
    "Modbus driver (pymodbus)": "drivers.modbus.driver",
    "MQTT (paho)": "paho.mqtt.client",
    "local API (aiohttp, prometheus_client)": "aiohttp, prometheus_client",
    "OPC UA driver (asyncua)": "drivers.opcua.driver",
    "edge models (onnxruntime)": "onnxruntime",
}

_RSS = ("import sys\nfor l in open('/proc/self/status'):\n"
        "    if l.startswith('VmRSS'): print(int(l.split()[1]))\n")  # fmt: skip


def import_costs() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, modules in IMPORT_SETS.items():
        code = (f"import time; t = time.perf_counter(); import {modules}; "
                "print(time.perf_counter() - t)\n" if modules else "print(0.0)\n") + _RSS
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if done.returncode:
            out[name] = {"error": done.stderr.strip().splitlines()[-1]}
            continue
        seconds, kib = done.stdout.split()
        out[name] = {"rss_mib": round(int(kib) / 1024, 1), "seconds": round(float(seconds), 3)}
    return out


#: the reference models in the order a gateway with models loads them
REFERENCE_MODELS = ("quality", "energy", "energy_per_part")

_MODELS = """
import gc, json
from pathlib import Path
def rss():
    keys = ("VmRSS", "RssAnon", "RssFile")
    return {l.split(":")[0]: int(l.split()[1]) / 1024
            for l in open("/proc/self/status") if l.startswith(keys)}
import numpy, gateway.cli.main
gc.collect()
steps = [("the gateway's CLI imported", rss())]
from edge_models import runtime
from edge_models.manifest import load_manifest
steps.append(("onnxruntime imported", rss()))
kept = []
for name in NAMES:
    path = Path("edge_models/reference") / (name + ".yaml")
    kept.append(runtime.load_model(load_manifest(path), path))
    gc.collect()
    steps.append((name + " loaded", rss()))
print(json.dumps(steps))
"""


def model_costs() -> dict[str, Any]:
    """RSS after each step of loading the reference models, in a fresh interpreter."""
    root = Path(__file__).resolve().parent.parent
    code = f"NAMES = {REFERENCE_MODELS!r}\n" + _MODELS
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=root)  # fmt: skip
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1]}
    steps = json.loads(done.stdout)
    base = steps[0][1]
    out: dict[str, Any] = {"steps": [
        {"step": step, "rss_mib": round(r["VmRSS"], 1),
         "added_mib": round(r["VmRSS"] - base["VmRSS"], 1),
         "added_anon_mib": round(r["RssAnon"] - base["RssAnon"], 1),
         "added_file_mib": round(r["RssFile"] - base["RssFile"], 1)} for step, r in steps]}
    two = out["steps"][3]  # onnxruntime, quality and energy: the two models
    out["two_models_added_mb"] = round(two["added_mib"] * 2**20 / 1e6, 1)
    return out


def config_text(devices: int, tags: int, workdir: Path) -> str:
    """The config bench/scale.py runs (Modbus TCP devices of float32 tags), ports made up."""
    ports = [1502 + d for d in range(devices)]
    return gateway_config(workdir, 1883, ports, Params(devices=devices, tags=tags))


def measure(step: str, build: Callable[[], Any], steps: dict[str, Any], tags: int) -> Any:
    """Build one structure; time it (first pass) or take its memory (under tracemalloc)."""
    gc.collect()
    if not tracemalloc.is_tracing():
        started = time.perf_counter()
        value = build()
        steps[step] = {"seconds": round(time.perf_counter() - started, 3)}
        return value
    tracemalloc.reset_peak()
    held_before, _ = tracemalloc.get_traced_memory()
    value = build()
    gc.collect()
    held, peak = tracemalloc.get_traced_memory()
    steps[step].update({
        "held_mib": round((held - held_before) / 2**20, 2),
        "held_bytes_per_tag": round((held - held_before) / tags, 1),
        "peak_mib": round((peak - held_before) / 2**20, 2),
    })
    return value


def build_all(path: Path, steps: dict[str, Any], n: int) -> None:
    """What ``run`` builds before polling, step by step."""
    from drivers.registry import REGISTRY
    from gateway import __version__
    from gateway.config.loader import load_config, load_config_file
    from gateway.config.yaml_model import parse_yaml
    from gateway.console.trends import TrendRing
    from gateway.northbound.contract_json import JsonContract
    from gateway.pipeline import Pipeline
    from gateway.runtime.device_runner import DeviceRunner
    from gateway.runtime.memory import SharedKeys
    from gateway.serial_ports import SerialPorts
    from gateway.tags import TagCatalog

    text = path.read_text(encoding="utf-8")
    parsed = measure("parse YAML", lambda: parse_yaml(text, str(path)), steps, n)
    del parsed
    config = measure("load_config (parse + validate)", lambda: load_config(path), steps, n)

    def kept_by_live_changes() -> Any:  # the data and line map kept beside the config
        document = load_config_file(path)
        SharedKeys().share(document.data)
        return document.data, document.lines

    kept = measure("config data kept for live changes", kept_by_live_changes, steps, n)
    del kept
    catalog = measure("tag catalog", lambda: TagCatalog(config.devices), steps, n)
    pipeline = measure("pipeline state", lambda: Pipeline(catalog), steps, n)
    ports = SerialPorts()
    drivers = measure("drivers and request plans", lambda: [
        REGISTRY.create_driver(d, catalog, ports) for d in config.devices], steps, n)
    runners = measure("device runners", lambda: [
        DeviceRunner(d.name, lambda: drivers[0], lambda b: None) for d in config.devices],
        steps, n)  # fmt: skip
    contract = JsonContract(config, catalog, __version__)
    states = {d.name: "up" for d in config.devices}
    birth = measure("JSON birth message", lambda: contract.birth(1, 0, 0, states), steps, n)
    steps["JSON birth message"]["bytes"] = len(birth.payload)
    del runners, pipeline

    def trend_ring() -> Any:  # the console's, once its first tick sized it
        ring = TrendRing()
        ring.record(0, np.zeros(n), np.zeros(n, np.uint8), np.ones(n, bool))
        return ring

    ring = measure("console trend ring", trend_ring, steps, n)
    del ring


def structures(devices: int, tags: int) -> dict[str, Any]:
    """Build the start-up structures twice: timed, then under tracemalloc (which slows
    allocation several times over, so its times would mislead)."""
    n = devices * tags
    workdir = Path(tempfile.mkdtemp(prefix="chenxing-footprint-"))
    path = workdir / "gateway.yaml"
    path.write_text(config_text(devices, tags, workdir), encoding="utf-8")
    steps: dict[str, Any] = {}
    build_all(path, steps, n)
    gc.collect()
    tracemalloc.start()
    try:
        build_all(path, steps, n)
        total, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return {"tags": n, "devices": devices, "config_bytes": path.stat().st_size,
            "steps": steps, "held_mib": round(total / 2**20, 1),
            "peak_mib": round(peak / 2**20, 1)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--tags", type=int, default=100, help="float32 tags per device")
    parser.add_argument("--imports", action="store_true", help="import costs only")
    parser.add_argument("--models", action="store_true",
                        help="what onnxruntime and the reference models add, only")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    bench = Run("footprint", packages=("pydantic", "pymodbus", "pyyaml"))
    result: dict[str, Any] = {"models": model_costs()} if args.models else \
        {"imports": import_costs()}
    if not args.imports and not args.models:
        result["structures"] = structures(args.devices, args.tags)
    path = bench.write(result, args.out)
    print(load_note(bench.load_at_start))
    models = result.get("models", {})
    if "error" in models:
        print(f"models: {models['error']}")
    for step in models.get("steps", []):
        print(f"  {step['step']:30s} RSS {step['rss_mib']:6.1f} MiB  added "
              f"{step['added_mib']:5.1f} (anonymous {step['added_anon_mib']:5.1f}, "
              f"file-backed {step['added_file_mib']:5.1f})")
    if "two_models_added_mb" in models:
        print(f"the two reference models (quality, energy) with onnxruntime add "
              f"{models['two_models_added_mb']} MB (goal 25 MB)")
    for name, cost in result.get("imports", {}).items():
        rss, seconds = cost.get("rss_mib", "-"), cost.get("seconds", "-")
        print(f"import {name:42s} {rss:>7} MiB {seconds:>7} s")
    if "structures" in result:
        s = result["structures"]
        print(f"{s['tags']:,} tags on {s['devices']} devices ({s['config_bytes']:,} bytes of YAML)")
        for step, f in s["steps"].items():
            print(f"  {step:34s} {f['seconds']:7.2f} s  held {f['held_mib']:7.2f} MiB "
                  f"({f['held_bytes_per_tag']:7.1f} B/tag)  peak {f['peak_mib']:7.2f} MiB"
                  + (f"  {f['bytes']:,} bytes" if "bytes" in f else ""))
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
