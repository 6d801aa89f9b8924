"""DL/T 645 driver against a bare request loop, on the same simulated meters.

The simulator (``chenxing-hil sim dlt645``) runs in a process of its own, with its meters
on a pty (an RS-485 line) or behind a TCP "serial device server". Two clients read the
same identifiers from it back to back, interleaved (raw, ours, ours, raw, ...) so that
both see the same load on a shared machine:

* *raw*: a bare loop: build the read frame (``codec.read_request``), write it, feed what
  comes back to a ``FrameReader`` until the answer, decode the BCD value; nothing else;
* *ours*: :class:`Dlt645SerialDriver` / :class:`Dlt645TcpDriver` polling its tags
  (plan, retries, error handling, SampleBatch), the gateway's code path.

Printed per transport: requests/s of each, the client's CPU per 1,000 requests, and
ours ÷ raw (of the medians, and the median of each round's pair: the goal is >= 0.9;
bench/harness.py: ``summarise_pairs``). Figures go to
``bench/results/dlt645-<timestamp>.json``. Run from the repository root::

    python -m bench.dlt645 [--seconds 1] [--rounds 5] [--transport serial tcp] [--tags 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from bench.harness import (
    Measurement,
    bench_arguments,
    not_good,
    paired_rounds,
    print_pairs,
    run_async_bench,
    self_cpu,
    start_hil_sim,
    summarise_pairs,
)
from drivers.dlt645.codec import Format, FrameReader, decode_number, read_request
from drivers.dlt645.config import Dlt645SerialDeviceConfig, Dlt645TcpDeviceConfig
from drivers.dlt645.driver import Dlt645SerialDriver, Dlt645TcpDriver
from drivers.dlt645.table import table

ADDRESS = "000000000001"
GOAL_RATIO = 0.9
NAMES = ["voltage.a", "voltage.b", "voltage.c", "current.a", "current.b", "current.c",
         "power.active.total", "power_factor.total", "frequency", "energy.import.total",
         "energy.export.total", "temperature"]


class RawLine:
    """The bare client: one socket or pty, one FrameReader, nothing else."""

    def __init__(self) -> None:
        self.reader = FrameReader()
        self.answer: asyncio.Future[bytes] | None = None
        self.write: Any = None

    def feed(self, data: bytes) -> None:
        for frame in self.reader.feed(data):
            if self.answer is not None and not self.answer.done():
                self.answer.set_result(frame.data)

    async def ask(self, request: bytes) -> bytes:
        self.answer = asyncio.get_running_loop().create_future()
        self.write(request)
        return await asyncio.wait_for(self.answer, 2.0)


async def raw_loop(transport: str, where: str, seconds: float, names: list[str]) -> Measurement:
    known = table(2007)
    items = [known.by_name[n] for n in names]
    requests = [read_request(ADDRESS, i.di, 2007, 4) for i in items]
    formats: list[Format] = [i.format for i in items]
    line = RawLine()
    loop = asyncio.get_running_loop()
    fd = -1
    writer: asyncio.StreamWriter | None = None
    task: asyncio.Task[None] | None = None
    if transport == "tcp":
        host, port = where.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        line.write = writer.write

        async def pump() -> None:
            while data := await reader.read(4096):
                line.feed(data)

        task = asyncio.create_task(pump())
    else:
        fd = os.open(where, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        line.write = lambda data: os.write(fd, data)
        loop.add_reader(fd, lambda: line.feed(os.read(fd, 4096)))
    count = 0
    try:
        cpu0, began = self_cpu(), time.perf_counter()
        end = began + seconds
        while time.perf_counter() < end:
            for request, fmt in zip(requests, formats, strict=True):
                data = await line.ask(request)
                decode_number(data[4:4 + fmt.size], fmt)
                count += 1
        elapsed, cpu = time.perf_counter() - began, self_cpu() - cpu0
    finally:
        if task is not None:
            task.cancel()
        if writer is not None:
            writer.close()
        if fd >= 0:
            loop.remove_reader(fd)
            os.close(fd)
    return Measurement("raw", count, elapsed, cpu, count)


async def driver_loop(transport: str, where: str, seconds: float, names: list[str],
                      errors: dict[str, int]) -> Measurement:
    """The driver polling back to back; its error counters are added to ``errors``."""
    block: dict[str, Any] = {"name": "bench", "meter_address": ADDRESS, "timeout": 2.0,
                             "tags": [{"name": n.replace(".", "_"), "di": n} for n in names]}
    driver: Any
    if transport == "tcp":
        host, port = where.rsplit(":", 1)
        config = Dlt645TcpDeviceConfig.model_validate(
            block | {"protocol": "dlt645_tcp", "host": host, "port": int(port)})
        driver = Dlt645TcpDriver(config, list(range(len(names))))
    else:
        serial_config = Dlt645SerialDeviceConfig.model_validate(
            block | {"protocol": "dlt645", "port": where, "parity": "N"})
        driver = Dlt645SerialDriver(serial_config, list(range(len(names))))
    await driver.connect()
    group = driver.poll_groups()[0]
    start = driver.requests
    bad = 0
    try:
        cpu0, began = self_cpu(), time.perf_counter()
        end = began + seconds
        while time.perf_counter() < end:
            batch = await driver.read(group)
            bad += not_good(batch.quality)
        elapsed, cpu = time.perf_counter() - began, self_cpu() - cpu0
    finally:
        await driver.close()
    for key, count in driver.errors.items():
        if count:
            errors[key] = errors.get(key, 0) + count
    done = driver.requests - start
    return Measurement("ours", done, elapsed, cpu, done, bad)


async def run(transport: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    names = NAMES[:args.tags]
    sim_args = ["dlt645", "--meters", ADDRESS, *(["--tcp", "--port", "0"] if transport == "tcp"
                                                  else [])]  # fmt: skip
    meter, match = start_hil_sim(f"dlt645-{transport}", sim_args, workdir, r" on (\S+) \(")
    where = match.group(1)
    errors: dict[str, int] = {}
    try:
        await raw_loop(transport, where, 0.5, names)  # warm both ends up
        measurements = await paired_rounds(
            {"raw": partial(raw_loop, transport, where, args.seconds, names),
             "ours": partial(driver_loop, transport, where, args.seconds, names, errors)},
            args.rounds)  # fmt: skip
    finally:
        meter.stop(5.0)
        meter.close()
    summary = summarise_pairs(measurements)
    summary["setup"] = {"transport": transport, "identifiers": len(names), "where": where}
    summary["driver_errors"] = errors
    print_pairs(f"DL/T 645 over {transport}: {len(names)} identifiers a poll, one meter",
                "requests/s", summary, GOAL_RATIO)
    print(f"  driver errors: {errors or 'none'}")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="window per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="measurements per side (median)")
    parser.add_argument("--transport", nargs="+", choices=["serial", "tcp"],
                        default=["serial", "tcp"])
    parser.add_argument("--tags", type=int, default=8, choices=range(1, len(NAMES) + 1),
                        metavar=f"1..{len(NAMES)}", help="identifiers read each poll")
    args = bench_arguments(parser).parse_args(argv)

    async def body(workdir: Path) -> dict[str, Any]:
        results = {transport: await run(transport, args, workdir) for transport in args.transport}
        return {"goal_ratio": GOAL_RATIO, "results": results}

    return run_async_bench("dlt645", args, body, packages=("pyserial",))


if __name__ == "__main__":
    sys.exit(main())
