"""Sparkplug B encoding cost against the JSON contract, on the gateway's hot path.

Encodes a stream of sample batches (``--tags`` float tags over 4 devices, one batch of
every tag per flush) into data messages with both contracts and reports samples/s
and messages/s of the encoder alone (no broker), plus the send-time costs of the
Sparkplug design: appending ``seq`` to a spooled payload and re-encoding a replayed
payload as historical. Run from the repository root::

    python -m bench.sparkplug_encode [--seconds 3] [--tags 2000]

Figures are printed and written to ``bench/results/sparkplug_encode-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import Run
from gateway.config.loader import load_config_text
from gateway.northbound.contract_json import JsonContract
from gateway.northbound.sparkplug.payloads import SparkplugPayloads
from gateway.northbound.sparkplug.wire import as_historical, with_seq
from gateway.tags import TagCatalog
from gateway.types import SampleBatch


def make_catalog(tags: int) -> tuple[Any, TagCatalog]:
    per_device = tags // 4
    devices = [
        {"name": f"meter-{d}", "protocol": "modbus_tcp", "host": "127.0.0.1",
         "tags": [{"name": f"t{i}", "table": "input", "address": 2 * i, "type": "float32"}
                  for i in range(per_device)]}
        for d in range(4)
    ]  # fmt: skip
    body = {"gateway": {"id": "gw", "site": "s", "line": "l"}, "devices": devices,
            "northbound": {"format": "sparkplug"}}  # fmt: skip
    config = load_config_text(json.dumps(body), "bench.yaml")
    return config, TagCatalog(config.devices)


def rate(seconds: float, step: Callable[[], int]) -> tuple[float, int]:
    """Units per second of ``step`` (which returns how many units it did) over ``seconds``."""
    done, calls = 0, 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        done += step()
        calls += 1
    return done / elapsed, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--tags", type=int, default=2000)
    parser.add_argument("--out", type=Path, help="JSON result file")
    args = parser.parse_args()
    run = Run("sparkplug_encode")
    config, catalog = make_catalog(args.tags)
    n = len(catalog)
    rng = np.random.default_rng(1)
    batch = SampleBatch.of(np.arange(n), rng.normal(230, 5, n), time.time_ns())
    spb = SparkplugPayloads(config, catalog, "bench")
    js = JsonContract(config, catalog, "bench")
    max_samples = config.northbound.max_samples_per_message

    def sparkplug_step() -> int:
        spb.data(batch, time.time_ns(), max_samples)
        return n

    def json_step() -> int:
        for start in range(0, n, max_samples):
            js.data(batch.select(slice(start, start + max_samples)), 0, 0, time.time_ns())  # type: ignore[arg-type]
        return n

    payloads = [m.payload for m in spb.data(batch, time.time_ns(), max_samples)]

    def seq_step() -> int:
        for i, p in enumerate(payloads):
            with_seq(p, i % 256)
        return len(payloads)

    def historical_step() -> int:
        for p in payloads:
            as_historical(p)
        return len(payloads)

    figures: dict[str, Any] = {}
    for name, step in (("sparkplug_encode", sparkplug_step), ("json_encode", json_step)):
        samples_s, _ = rate(args.seconds, step)
        figures[name] = {"samples_per_s": round(samples_s)}
    figures["sparkplug_over_json"] = round(
        figures["sparkplug_encode"]["samples_per_s"] / figures["json_encode"]["samples_per_s"], 3
    )
    seq_s, _ = rate(args.seconds, seq_step)
    hist_s, _ = rate(args.seconds, historical_step)
    per_message = n / len(payloads)
    figures["seq_patch"] = {"messages_per_s": round(seq_s), "samples_per_message": per_message}
    figures["historical_reencode"] = {"messages_per_s": round(hist_s),
                                      "samples_per_s": round(hist_s * per_message)}  # fmt: skip
    figures["payload_bytes_per_sample"] = {
        "sparkplug": round(sum(map(len, payloads)) / n, 1),
        "json": round(sum(len(js.data(batch.select(slice(s, s + max_samples)), 0, 0, 0).payload)  # type: ignore[arg-type]
                          for s in range(0, n, max_samples)) / n, 1),
    }  # fmt: skip
    report = {"parameters": {"tags": n, "seconds": args.seconds}, "figures": figures}
    print(json.dumps(report, indent=2))
    print(f"wrote {run.write(report, args.out)}")


if __name__ == "__main__":
    main()
