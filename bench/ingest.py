"""InfluxDB path rates: the sink's line-protocol encoding, the reader's decoding of both
contracts, and writes to a real victoria-metrics through the v2 write API.

Run from the repository root with the virtualenv active::

    python -m bench.ingest [--seconds 2]

Prints one line per figure (single core, this process; the store runs alongside) and
writes them to ``bench/results/ingest-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.harness import Run
from brain_reader.counters import IngestCounters
from brain_reader.json_messages import JsonIngest
from brain_reader.points import PointEncoder
from brain_reader.sparkplug_messages import SparkplugIngest
from gateway.config.loader import load_config_text
from gateway.influxdb.line_protocol import BatchEncoder
from gateway.influxdb.writer import InfluxTarget, InfluxWriter
from gateway.northbound.sparkplug import sparkplug_b_pb2 as pb
from gateway.tags import TagCatalog
from gateway.types import SampleBatch
from hil.victoria_metrics import VictoriaMetrics

N_TAGS = 1000


def rate(work: Callable[[], int], seconds: float) -> float:
    """Units per second of ``work`` (returns units done per call)."""
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        done += work()
    return done / elapsed


def catalog() -> TagCatalog:
    tags = ", ".join(f"{{name: t{i}, address: {i}, type: float32}}" for i in range(N_TAGS))
    text = ("gateway: {id: gw, site: s, line: l}\ndevices: [{name: dev, protocol: modbus_tcp, "
            f"host: 127.0.0.1, tags: [{tags}]}}]\n")  # fmt: skip
    return TagCatalog(load_config_text(text).devices)


def json_message(seq: int, n: int) -> bytes:
    ts = int(time.time() * 1000)
    return json.dumps({"v": 1, "type": "data", "gateway": "gw", "site": "s", "line": "l",
                       "session": 1, "seq": seq, "ts": ts,
                       "samples": {"tag": [f"dev.t{i}" for i in range(n)],
                                   "value": [i * 0.5 for i in range(n)],
                                   "ts": [ts] * n, "q": ["good"] * n}}).encode()  # fmt: skip


def sparkplug_messages(n: int) -> tuple[bytes, bytes]:
    birth = pb.Payload(timestamp=1, seq=1)
    data = pb.Payload(timestamp=2, seq=2)
    for i in range(n):
        birth.metrics.add(name=f"t{i}", alias=i + 1, datatype=pb.Double, double_value=0.0)
        data.metrics.add(alias=i + 1, timestamp=2, double_value=i * 0.5)
    return birth.SerializeToString(), data.SerializeToString()


async def write_rate(vm: VictoriaMetrics, seconds: float, batch: int) -> float:
    writer = InfluxWriter(InfluxTarget(vm.url, "bench", precision="ms"))
    base = int(time.time() * 1000) - 3_600_000
    written, start, k = 0, time.perf_counter(), 0
    try:
        while time.perf_counter() - start < seconds:
            body = "\n".join(f"bench,tag=t{i % N_TAGS} value={i}.5,quality=0i {base + k}"
                             for i in range(batch)).encode()  # fmt: skip
            k += 1
            await writer.write(body)
            written += batch
    finally:
        await writer.close()
    return written / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--out", type=Path, help="JSON result file")
    args = parser.parse_args()
    s = args.seconds
    run = Run("ingest")
    figures: dict[str, float] = {}

    cat = catalog()
    encoder = BatchEncoder(cat, "{device}", {"gateway": "gw", "site": "s", "line": "l"}, "ms")
    batch = SampleBatch.of(np.arange(N_TAGS), np.linspace(0, 1, N_TAGS), time.time_ns())
    figures["sink_encode_samples_per_s"] = rate(lambda: len(encoder.encode(batch)), s)
    print(f"sink encode       {figures['sink_encode_samples_per_s']:12,.0f} samples/s")

    counters = IngestCounters()
    reader = JsonIngest(PointEncoder("{device}", "ms"), counters, sequence_check=True)
    seq = iter(range(10**9))
    figures["ingest_json_points_per_s"] = rate(
        lambda: len(reader.handle("t", json_message(next(seq), 500))), s)
    print(f"ingest json       {figures['ingest_json_points_per_s']:12,.0f} points/s")

    sp = SparkplugIngest(PointEncoder("{device}", "ms"), counters, True, None)
    nbirth = pb.Payload(timestamp=1, seq=0).SerializeToString()
    sp.handle("spBv1.0/g/NBIRTH/e", nbirth)
    birth, data = sparkplug_messages(500)
    sp.handle("spBv1.0/g/DBIRTH/e/d", birth)
    figures["ingest_sparkplug_points_per_s"] = rate(
        lambda: len(sp.handle("spBv1.0/g/DDATA/e/d", data)), s)
    print(f"ingest sparkplug  {figures['ingest_sparkplug_points_per_s']:12,.0f} points/s")

    with VictoriaMetrics() as vm:
        figures["v2_write_points_per_s"] = asyncio.run(write_rate(vm, s, 5000))
    print(f"v2 write (VM)     {figures['v2_write_points_per_s']:12,.0f} points/s "
          "(batches of 5000, one writer)")
    body = {"parameters": {"seconds": s, "tags": N_TAGS, "samples_per_message": 500,
                           "write_batch": 5000},
            "figures": {k: round(v, 1) for k, v in figures.items()}}  # fmt: skip
    print(f"wrote {run.write(body, args.out)}")


if __name__ == "__main__":
    main()
