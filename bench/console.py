"""The web console's cost in the gateway at 10,000 tags: the trend ring's memory, the tick,
and the size of what the server-sent-event stream and the tag list carry.

No network, no simulator: the gateway of bench/scale.py's config (D Modbus TCP devices of T
float32 tags) is built (not run); every tick a batch with a new value of every tag goes
through the pipeline (every tag changed: the worst case of the stream), then the console's
tick runs, until the ring is full. Prints and writes to ``bench/results/console-*.json``::

    python -m bench.console --devices 100 --tags 100      # 10,000 tags

- the ring's bytes (its arrays: ``slots x tags x 5`` + 8 per slot) and all the console's
  per-tag state, and what ``tracemalloc`` saw held by the console after the run;
- the tick's median and p99 time (the pipeline's own work not counted);
- a stream's ``tags`` event when every tag changed: its JSON bytes and build time;
- ``/api/console/tags`` (every tag with its figures): JSON bytes and build time;
- a trend of 10 tags over the whole ring (as ``/api/console/trend``): build time.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python bench/console.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench.footprint import config_text
from bench.harness import Run, load_note


def measure(devices: int, tags: int) -> dict[str, Any]:
    from gateway.config.loader import load_config
    from gateway.console.live import LineWatch
    from gateway.runtime.gateway import Gateway
    from gateway.types import SampleBatch

    workdir = Path(tempfile.mkdtemp(prefix="chenxing-console-bench-"))
    path = workdir / "gateway.yaml"
    path.write_text(config_text(devices, tags, workdir), encoding="utf-8")
    gw = Gateway(load_config(path), workdir)
    n = len(gw.catalog)
    ids = np.arange(n, dtype=np.int32)
    rng = np.random.default_rng(1)

    def fill(watch: LineWatch, timed: list[float]) -> None:
        now_ms = time.time_ns() // 1_000_000
        for i in range(watch.recording_trends().slots):
            gw.pipeline.process(SampleBatch.of(ids, rng.normal(100.0, 5.0, n), time.time_ns()))
            started = time.perf_counter()
            watch.tick(now_ms + 1000 * i)
            timed.append(time.perf_counter() - started)

    # memory under tracemalloc (which slows allocation: its times would mislead) ...
    tracemalloc.start()
    gc.collect()
    held_before, _ = tracemalloc.get_traced_memory()
    watch = LineWatch(gw)
    watch.streams = 1  # a browser watching: the status is built every tick
    fill(watch, [])
    gc.collect()
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # ... then the times, without it
    watch = LineWatch(gw)
    watch.streams = 1
    tick_s: list[float] = []
    fill(watch, tick_s)

    started = time.perf_counter()
    delta = json.dumps(watch.tag_rows(watch.seq - 1))
    delta_s = time.perf_counter() - started
    started = time.perf_counter()
    listing = json.dumps(watch.catalog_rows())
    listing_s = time.perf_counter() - started
    some = list(range(0, n, max(1, n // 10)))[:10]
    started = time.perf_counter()
    ring = watch.recording_trends()
    trend = ring.trend(some)
    trend_s = time.perf_counter() - started
    state_bytes = sum(a.nbytes for a in (watch.changed_at, watch.good_value, watch.good_ms))
    ticks = sorted(tick_s[10:])  # after the first ticks' warm-up
    return {
        "tags": n, "devices": devices, "ring_slots": ring.slots,
        "ring_bytes": ring.nbytes,
        "ring_mib": round(ring.nbytes / 2**20, 2),
        "per_tag_state_bytes": state_bytes,
        "console_held_mib_tracemalloc": round((held - held_before) / 2**20, 2),
        "tick_ms_median": round(statistics.median(ticks) * 1000, 2),
        "tick_ms_p99": round(ticks[int(0.99 * (len(ticks) - 1))] * 1000, 2),
        "tags_event_bytes_all_changed": len(delta),
        "tags_event_ms": round(delta_s * 1000, 1),
        "tag_list_bytes": len(listing),
        "tag_list_ms": round(listing_s * 1000, 1),
        "trend_10_tags_points": len(trend.ts_ms),
        "trend_10_tags_ms": round(trend_s * 1000, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--tags", type=int, default=100, help="float32 tags per device")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    bench = Run("console", packages=("numpy", "aiohttp"))
    figures = measure(args.devices, args.tags)
    path = bench.write({"parameters": vars(args) | {"out": str(args.out)}, **figures}, args.out)
    print(load_note(bench.load_at_start))
    for key, value in figures.items():
        print(f"  {key:34s} {value:>14,}" if isinstance(value, int) else f"  {key:34s} {value:>14}")
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
