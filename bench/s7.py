"""S7 benchmark: the S7 driver against a bare request loop on the same simulated PLC.

The simulated S7-1500 (``chenxing-hil sim s7 --cpu s7-1500``) runs in a process of its
own; the clients run here, one after the other, interleaved (ours, raw, raw, ours, ...):

- **ours**: values/s read by :class:`~drivers.s7.driver.S7Driver` polling back to back
  (its plan, read-var PDUs, answers checked, the NumPy decode into a SampleBatch);
- **raw**: python-snap7's ``AsyncClient.iso_exchange_buffer`` sending the same PDUs (the
  driver's own plan) to the same PLC and doing nothing with the answers: the ceiling;
- **snap7 read_multi_vars**: snap7 3.3's own multi-variable read of the same tags, for
  reference (one request per variable in 3.3), measured once after the rounds.

Ratio: ours / raw, of the medians and as the median of each round's pair (the goal is
>= 0.9), and per client CPU second (bench/harness.py: ``summarise_pairs``). Writes JSON
to ``bench/results/s7-<timestamp>.json``. See bench/README.md.

    python -m bench.s7 [--seconds 3] [--rounds 3] [--tags 60] [--cpu s7-1500|s7-1200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from snap7 import AsyncClient
from snap7.type import Area

from bench.harness import (
    Measurement,
    bench_arguments,
    paired_rounds,
    poll_driver,
    print_pairs,
    run_async_bench,
    self_cpu,
    start_hil_sim,
    summarise_pairs,
)
from drivers.s7.config import S7DeviceConfig
from drivers.s7.driver import S7Driver
from drivers.s7.frames import read_request

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


async def ours(config: S7DeviceConfig, seconds: float) -> Measurement:
    driver = S7Driver(config, list(range(1, len(config.tags) + 1)))
    await driver.connect()
    return await poll_driver(driver, seconds, len(driver.requests()))


async def raw(config: S7DeviceConfig, seconds: float) -> Measurement:
    driver = S7Driver(config, list(range(1, len(config.tags) + 1)))
    await driver.connect()
    assert driver.pdu_size is not None
    jobs = [[c.item for c in r.chunks] for r in driver.requests(driver.pdu_size)]
    await driver.close()
    client = AsyncClient()
    client.set_connection_type(2)
    await client.connect("127.0.0.1", 0, 1, config.port)
    try:
        ref = polls = 0
        cpu0, began = self_cpu(), time.perf_counter()
        end = began + seconds
        while time.perf_counter() < end:
            for items in jobs:
                ref = ref % 0xFFFF + 1
                await client.iso_exchange_buffer(bytearray(read_request(ref, items)))
            polls += 1
        elapsed, cpu = time.perf_counter() - began, self_cpu() - cpu0
    finally:
        await client.disconnect()
    return Measurement("raw", polls * len(config.tags), elapsed, cpu, polls * len(jobs))


async def snap7_multi_vars(config: S7DeviceConfig, seconds: float) -> Measurement:
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
    try:
        values = 0
        cpu0, began = self_cpu(), time.perf_counter()
        end = began + seconds
        while time.perf_counter() < end:
            for first in range(0, len(items), AsyncClient.MAX_VARS):
                part = items[first:first + AsyncClient.MAX_VARS]
                await client.read_multi_vars(part)
                values += len(part)
        elapsed, cpu = time.perf_counter() - began, self_cpu() - cpu0
    finally:
        await client.disconnect()
    return Measurement("snap7-read_multi_vars", values, elapsed, cpu, values)


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    plc, match = start_hil_sim("s7-plc", ["s7", "--port", "0", "--cpu", args.cpu], workdir,
                               r"listening on 127\.0\.0\.1:(\d+)")  # fmt: skip
    try:
        config = device_config(int(match.group(1)), args.tags)
        measurements = await paired_rounds(
            {"ours": lambda: ours(config, args.seconds), "raw": lambda: raw(config, args.seconds)},
            args.rounds,
        )
        reference = await snap7_multi_vars(config, args.seconds)
        probe = S7Driver(config, list(range(1, len(config.tags) + 1)))
        await probe.connect()
        requests = len(probe.requests())
        pdu = probe.pdu_size
        await probe.close()
    finally:
        plc.stop(10.0)
        plc.close()
    summary = summarise_pairs(measurements)
    summary["setup"] = {"cpu": args.cpu, "tags": args.tags, "pdu_size": pdu,
                        "requests_per_poll": requests,
                        "server": "chenxing-hil sim s7 (Python S7comm server), own process"}
    summary["snap7_read_multi_vars"] = {"rate": reference.rate,
                                        "cpu_ms_per_1000": reference.cpu_ms_per_1000}
    summary["goal_ratio"] = GOAL_RATIO
    print_pairs(f"S7 driver vs a bare request loop, {args.cpu}, {args.tags} tags, PDU {pdu}, "
                f"{requests} request(s) a poll", "values/s", summary, GOAL_RATIO)
    print(f"  snap7 3.3 AsyncClient.read_multi_vars: {reference.rate:,.0f} values/s "
          "(one request per variable)")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tags", type=int, default=60)
    parser.add_argument("--cpu", default="s7-1500", choices=["s7-1500", "s7-1200", "s7-300"],
                        help="the simulated CPU: its PDU size (960 or 240)")
    args = bench_arguments(parser).parse_args(argv)
    device_config(1, args.tags)  # --tags checked before anything starts
    return run_async_bench("s7", args, lambda workdir: run(args, workdir),
                           packages=("python-snap7",))


if __name__ == "__main__":
    sys.exit(main())
