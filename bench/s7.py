"""S7 benchmark: the S7 driver against a bare request loop on the same simulated PLC.

The simulated S7-1500 (``chenxing-hil sim s7 --cpu s7-1500``) runs in a process of its
own; the clients run here, one after the other, interleaved (ours, raw, raw, ours, ...):

- **ours**: values/s read by :class:`~drivers.s7.driver.S7Driver` polling back to back
  (its plan, read-var PDUs, answers checked, the NumPy decode into a SampleBatch);
- **raw**: python-snap7's ``AsyncClient.iso_exchange_buffer`` sending the same PDUs (the
  driver's own plan) to the same PLC and doing nothing with the answers: the ceiling;
- **snap7 read_multi_vars**: snap7 3.3's own multi-variable read of the same tags, for
  reference (one request per variable in 3.3).

Ratio: ours / raw, of the medians and as the median of each round's pair (the goal is
>= 0.9). Writes JSON to ``bench/results/s7-<timestamp>.json``. See bench/README.md.

    python -m bench.s7 [--seconds 3] [--rounds 3] [--tags 60] [--cpu s7-1500|s7-1200]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from snap7 import AsyncClient
from snap7.type import Area

from drivers.s7.config import S7DeviceConfig
from drivers.s7.driver import S7Driver
from drivers.s7.frames import read_request

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
GOAL_RATIO = 0.9

#: distinct addresses of the simulator's memory (hil/README.md): DB1 the machine, DB2 its
#: setpoints, DB3 a value of every type, M, I, Q, timers and counters
ADDRESSES = [
    "DB1.DBD0:REAL", "DB1.DBD4:REAL", "DB1.DBD8:REAL", "DB1.DBD12:REAL", "DB1.DBD16:DINT",
    "DB1.DBW20:INT", "DB1.DBX22.0", "DB1.DBD50:REAL", "DB1.DBD54:REAL", "DB1.DBD58:REAL",
    "DB1.DBD62:REAL", "DB2.DBD0:REAL", "DB2.DBD4:REAL", "DB3.DBX0.0", "DB3.DBX0.1",
    "DB3.DBB1", "DB3.DBW2", "DB3.DBW4:INT", "DB3.DBD6", "DB3.DBD10:DINT", "DB3.DBD14:REAL",
    "DB3.DB18:LREAL", "DB3.DB26:LINT", "DB3.DB34:ULINT", "DB3.DBB78:SINT", "DB3.DBB79:USINT",
    "DB3.DBW80:UINT", "DB3.DBD82:UDINT", "DB3.DB86:LWORD", "M0.0", "MW10:INT", "MD12:REAL",
    *(f"MD{16 + 4 * i}:REAL" for i in range(12)), "I0.0", "I0.1", "IW2", "Q0.0", "Q0.1",
    "QW2", "QD4:DINT", "T5", "T6", "C3", "C4", "DB3.DBW96", "DB3.DBW98",
    "DB3.DBD100:REAL", "DB3.DBD104:REAL", "DB3.DBD108:REAL",
]


def device_config(port: int, tags: int) -> S7DeviceConfig:
    if not 1 <= tags <= len(ADDRESSES):
        raise SystemExit(f"--tags: 1 to {len(ADDRESSES)} (the simulator's distinct addresses)")
    return S7DeviceConfig.model_validate({
        "name": "bench", "protocol": "s7", "host": "127.0.0.1", "port": port, "timeout": 2.0,
        "tags": [{"name": f"t{i}", "address": ADDRESSES[i % len(ADDRESSES)]}
                 for i in range(tags)]})


async def ours(config: S7DeviceConfig, seconds: float) -> float:
    driver = S7Driver(config, list(range(1, len(config.tags) + 1)))
    await driver.connect()
    groups = driver.poll_groups()
    values = 0
    end = time.perf_counter() + seconds
    began = time.perf_counter()
    while time.perf_counter() < end:
        for group in groups:
            values += len(await driver.read(group))
    elapsed = time.perf_counter() - began
    await driver.close()
    return values / elapsed


async def raw(config: S7DeviceConfig, seconds: float) -> float:
    driver = S7Driver(config, list(range(1, len(config.tags) + 1)))
    await driver.connect()
    assert driver.pdu_size is not None
    jobs = [[c.item for c in r.chunks] for r in driver.requests(driver.pdu_size)]
    await driver.close()
    client = AsyncClient()
    client.set_connection_type(2)
    await client.connect("127.0.0.1", 0, 1, config.port)
    ref = 0
    rounds = 0
    end = time.perf_counter() + seconds
    began = time.perf_counter()
    while time.perf_counter() < end:
        for items in jobs:
            ref = ref % 0xFFFF + 1
            await client.iso_exchange_buffer(bytearray(read_request(ref, items)))
        rounds += 1
    elapsed = time.perf_counter() - began
    await client.disconnect()
    return rounds * len(config.tags) / elapsed


async def snap7_multi_vars(config: S7DeviceConfig, seconds: float) -> float:
    areas = {"DB": Area.DB, "M": Area.MK, "I": Area.PE, "Q": Area.PA, "T": Area.TM,
             "C": Area.CT}
    items = []
    for tag in config.tags:
        a = tag.s7
        items.append({"area": areas[a.area.name], "db_number": a.db, "start": a.start,
                      "size": a.units})
    client = AsyncClient()
    client.set_connection_type(2)
    await client.connect("127.0.0.1", 0, 1, config.port)
    values = 0
    end = time.perf_counter() + seconds
    began = time.perf_counter()
    while time.perf_counter() < end:
        for first in range(0, len(items), AsyncClient.MAX_VARS):
            part = items[first:first + AsyncClient.MAX_VARS]
            await client.read_multi_vars(part)
            values += len(part)
    elapsed = time.perf_counter() - began
    await client.disconnect()
    return values / elapsed


def start_plc(cpu: str = "s7-1500") -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hil.cli", "--log-level", "warning", "sim", "s7", "--port", "0",
         "--cpu", cpu], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        cwd=BENCH_DIR.parent)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    if match is None:
        proc.kill()
        raise SystemExit(f"the simulated PLC did not start: {line!r}")
    return proc, int(match.group(1))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    proc, port = start_plc(args.cpu)
    try:
        config = device_config(port, args.tags)
        sides: dict[str, Callable[[S7DeviceConfig, float], Awaitable[float]]] = {
            "ours": ours, "raw": raw}
        rates: dict[str, list[float]] = {"ours": [], "raw": []}
        cpu_ms: dict[str, list[float]] = {"ours": [], "raw": []}  # per 1,000 values
        for i in range(args.rounds):
            order = ("ours", "raw") if i % 2 == 0 else ("raw", "ours")
            for side in order:
                before = os.times()
                rate = await sides[side](config, args.seconds)
                after = os.times()
                used = (after.user - before.user) + (after.system - before.system)
                rates[side].append(rate)
                cpu_ms[side].append(1e6 * used / (rate * args.seconds))
        reference = await snap7_multi_vars(config, args.seconds)
        probe = S7Driver(config, list(range(1, len(config.tags) + 1)))
        await probe.connect()
        requests = len(probe.requests())
        pdu = probe.pdu_size
        await probe.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    med = {side: statistics.median(r) for side, r in rates.items()}
    pairs = [o / r for o, r in zip(rates["ours"], rates["raw"], strict=True)]
    cpu_med = {side: statistics.median(v) for side, v in cpu_ms.items()}
    return {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "loadavg": os.getloadavg(),
        "cpu": args.cpu, "tags": args.tags, "pdu_size": pdu, "requests_per_poll": requests,
        "seconds": args.seconds, "rounds": args.rounds,
        "values_per_s": rates, "median": med,
        "ratio_of_medians": med["ours"] / med["raw"],
        "median_of_rounds": statistics.median(pairs),
        "snap7_read_multi_vars_values_per_s": reference,
        "client_cpu_ms_per_1000_values": cpu_ms,
        "client_cpu_ratio": cpu_med["raw"] / cpu_med["ours"],
        "goal": GOAL_RATIO,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tags", type=int, default=60)
    parser.add_argument("--cpu", default="s7-1500", choices=["s7-1500", "s7-1200", "s7-300"],
                        help="the simulated CPU: its PDU size (960 or 240)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(f"S7 driver vs a bare request loop, {result['cpu']}, {result['tags']} tags, PDU "
          f"{result['pdu_size']}, "
          f"{result['requests_per_poll']} requests per poll (load "
          f"{' '.join(f'{x:.2f}' for x in result['loadavg'])})")
    print(f"  ours  {result['median']['ours']:>10,.0f} values/s")
    print(f"  raw   {result['median']['raw']:>10,.0f} values/s")
    print(f"  ratio of medians {result['ratio_of_medians']:.2f}, median of rounds "
          f"{result['median_of_rounds']:.2f} (goal >= {GOAL_RATIO})")
    cpu = result["client_cpu_ms_per_1000_values"]
    print(f"  client CPU per 1,000 values: ours {statistics.median(cpu['ours']):.2f} ms, raw "
          f"{statistics.median(cpu['raw']):.2f} ms: values per client CPU second "
          f"{result['client_cpu_ratio']:.2f} of raw")
    print(f"  snap7 3.3 AsyncClient.read_multi_vars: "
          f"{result['snap7_read_multi_vars_values_per_s']:,.0f} values/s (one request per "
          "variable)")
    out = args.out or RESULTS_DIR / f"s7-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"  -> {out}")


if __name__ == "__main__":
    main()
