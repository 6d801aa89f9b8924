"""Disk spool write rate: messages/s and MB/s through ``DiskSpool.put_many``.

Each scenario writes transactions of ``batch`` messages of ``size`` bytes (one
transaction per publisher flush, as the gateway does) for a few seconds and
reports messages/s, MB/s and the commit latency (p50/p99/max: the time the
event loop is blocked per flush). ``synchronous=FULL`` (what the gateway uses)
is compared with ``NORMAL`` (no fsync per commit). The ``cycle`` rows run the
whole life of a message: put, take, acknowledge, and ``maintain`` committing the
deletions, as the gateway does while the broker keeps up.

Run from the repository root with the virtualenv active::

    python bench/spool.py [--seconds 3] [--dir var/bench-spool]

The spool file goes in ``--dir`` (default ``var/bench-spool``, on the same disk
as a gateway's state; not /tmp, which may be tmpfs). Figures are printed and
written as JSON to ``bench/results/spool-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Run, filesystem_of
from gateway.northbound.message import OutboundMessage
from gateway.northbound.spool import DiskSpool, SpoolLimits

log = logging.getLogger("bench.spool")

#: (name, messages per transaction, payload bytes): a message of 2,000 JSON samples is ~110 kB
SCENARIOS = [
    ("small, 1 per flush", 1, 1_000),
    ("typical, 10 per flush", 10, 16_000),
    ("50k samples/s, 5 per flush", 5, 110_000),
    ("many small, 100 per flush", 100, 1_000),
]


@dataclass(slots=True)
class Figures:
    scenario: str
    synchronous: str
    mode: str
    batch: int
    size: int
    transactions: int
    messages_per_s: float
    mb_per_s: float
    commit_ms_p50: float
    commit_ms_p99: float
    commit_ms_max: float


def run_scenario(
    workdir: Path, name: str, batch: int, size: int, synchronous: str, cycle: bool,
    seconds: float,
) -> Figures:  # fmt: skip
    path = workdir / f"spool-{batch}-{size}-{synchronous}-{int(cycle)}.db"
    spool = DiskSpool(path, SpoolLimits(max_bytes=1 << 40, max_age_s=1e9))
    spool._db.execute(f"PRAGMA synchronous = {synchronous}")  # bench only: compare settings
    payload = os.urandom(size // 2).hex().encode()[:size]
    latencies: list[float] = []
    messages = 0
    seq = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        topic = "chenxing/v1/site/line/gw/data"
        batch_msgs = [
            OutboundMessage(topic, payload, "data", samples=2000, seq=seq + i)
            for i in range(batch)
        ]
        seq += batch
        t0 = time.perf_counter()
        spool.put_many(batch_msgs)
        if cycle:
            while (m := spool.take()) is not None:
                spool.ack(m.id)
            spool.maintain()
        latencies.append(time.perf_counter() - t0)
        messages += batch
    elapsed = time.perf_counter() - start
    spool.close()
    for suffix in ("", "-wal", "-shm", ".lock"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    ms = sorted(x * 1000 for x in latencies)
    return Figures(
        scenario=name,
        synchronous=synchronous,
        mode="put+take+ack+maintain" if cycle else "put",
        batch=batch,
        size=size,
        transactions=len(latencies),
        messages_per_s=round(messages / elapsed, 1),
        mb_per_s=round(messages * size / elapsed / 1e6, 2),
        commit_ms_p50=round(statistics.median(ms), 3),
        commit_ms_p99=round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 3),
        commit_ms_max=round(ms[-1], 3),
    )


def bench(workdir: Path, seconds: float) -> list[Figures]:
    results = []
    for name, batch, size in SCENARIOS:
        for synchronous in ("FULL", "NORMAL"):
            results.append(run_scenario(workdir, name, batch, size, synchronous, False, seconds))
    for name, batch, size in SCENARIOS[1:3]:
        results.append(run_scenario(workdir, name, batch, size, "FULL", True, seconds))
    return results


def print_table(results: list[Figures]) -> None:
    print(f"{'scenario':<28} {'sync':<6} {'mode':<22} {'msg/s':>9} {'MB/s':>7} "
          f"{'commit p50':>10} {'p99':>8} {'max':>8}")  # fmt: skip
    for r in results:
        print(f"{r.scenario:<28} {r.synchronous:<6} {r.mode:<22} {r.messages_per_s:>9.0f} "
              f"{r.mb_per_s:>7.1f} {r.commit_ms_p50:>8.2f}ms {r.commit_ms_p99:>6.2f}ms "
              f"{r.commit_ms_max:>6.2f}ms")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per scenario")
    parser.add_argument("--dir", type=Path, default=Path("var/bench-spool"),
                        help="where the spool files go (a real disk, not tmpfs)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="JSON result file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    args.dir.mkdir(parents=True, exist_ok=True)
    run = Run("spool")
    workdir = Path(tempfile.mkdtemp(prefix="spool-", dir=args.dir))
    try:
        results = bench(workdir, args.seconds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_table(results)
    out = run.write({
        "parameters": {"seconds": args.seconds, "dir": str(args.dir.resolve()),
                       "dir_filesystem": filesystem_of(args.dir)},
        "results": [asdict(r) for r in results],
    }, args.out)  # fmt: skip
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
