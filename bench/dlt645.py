"""DL/T 645 driver against a bare request loop, on the same simulated meters.

The simulator (``chenxing-hil sim dlt645``) runs in a process of its own, with its meters
on a pty (an RS-485 line) or behind a TCP "serial device server". Two clients read the
same identifiers from it back to back for ``--seconds`` each:

* *raw*: a bare loop: build the read frame (``codec.read_request``), write it, feed what
  comes back to a ``FrameReader`` until the answer, decode the BCD value; nothing else;
* *driver*: :class:`Dlt645SerialDriver` / :class:`Dlt645TcpDriver` polling its tags
  (plan, retries, error handling, SampleBatch), the gateway's code path.

The two take turns (five each) so that both see the same load on a shared machine.

Printed: requests/s of each and their ratio (the goal is >= 0.9), per transport.
Figures go to ``bench/results/dlt645-<timestamp>.json``. Run from the repository root::

    python -m bench.dlt645 [--seconds 5] [--transport serial tcp] [--tags 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drivers.dlt645.codec import Format, FrameReader, decode_number, read_request
from drivers.dlt645.config import Dlt645SerialDeviceConfig, Dlt645TcpDeviceConfig
from drivers.dlt645.driver import Dlt645SerialDriver, Dlt645TcpDriver
from drivers.dlt645.table import table

ADDRESS = "000000000001"
#: turns of raw, then driver, each measured for seconds / ROUNDS
ROUNDS = 5
NAMES = ["voltage.a", "voltage.b", "voltage.c", "current.a", "current.b", "current.c",
         "power.active.total", "power_factor.total", "frequency", "energy.import.total",
         "energy.export.total", "temperature"]


def start_simulator(transport: str) -> tuple[subprocess.Popen[str], str | int]:
    args = [sys.executable, "-m", "hil.cli", "--log-level", "warning", "sim", "dlt645",
            "--meters", ADDRESS]
    if transport == "tcp":
        args += ["--tcp", "--port", "0"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    banner = proc.stdout.readline()
    found = re.search(r" on (\S+)", banner)
    if not found:
        proc.kill()
        raise SystemExit(f"the simulator did not start: {banner!r}")
    where = found.group(1)
    return proc, int(where.rsplit(":", 1)[1]) if transport == "tcp" else where


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


async def raw_loop(transport: str, where: str | int, seconds: float, names: list[str]) -> int:
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
        reader, writer = await asyncio.open_connection("127.0.0.1", int(where))
        line.write = writer.write

        async def pump() -> None:
            while data := await reader.read(4096):
                line.feed(data)

        task = asyncio.create_task(pump())
    else:
        fd = os.open(str(where), os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        line.write = lambda data: os.write(fd, data)
        loop.add_reader(fd, lambda: line.feed(os.read(fd, 4096)))
    count = 0
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            for request, fmt in zip(requests, formats, strict=True):
                data = await line.ask(request)
                decode_number(data[4:4 + fmt.size], fmt)
                count += 1
    finally:
        if task is not None:
            task.cancel()
        if writer is not None:
            writer.close()
        if fd >= 0:
            loop.remove_reader(fd)
            os.close(fd)
    return count


async def driver_loop(transport: str, where: str | int, seconds: float,
                      names: list[str]) -> tuple[int, dict[str, int]]:
    block: dict[str, Any] = {"name": "bench", "meter_address": ADDRESS, "timeout": 2.0,
                             "tags": [{"name": n.replace(".", "_"), "di": n} for n in names]}
    driver: Any
    if transport == "tcp":
        config = Dlt645TcpDeviceConfig.model_validate(
            block | {"protocol": "dlt645_tcp", "host": "127.0.0.1", "port": where})
        driver = Dlt645TcpDriver(config, list(range(len(names))))
    else:
        serial_config = Dlt645SerialDeviceConfig.model_validate(
            block | {"protocol": "dlt645", "port": where, "parity": "N"})
        driver = Dlt645SerialDriver(serial_config, list(range(len(names))))
    await driver.connect()
    group = driver.poll_groups()[0]
    start = driver.requests
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            await driver.read(group)
    finally:
        await driver.close()
    return driver.requests - start, dict(driver.errors)


async def run(transport: str, seconds: float, names: list[str]) -> dict[str, Any]:
    proc, where = start_simulator(transport)
    raw = ours = 0
    errors: dict[str, int] = {}
    try:
        await raw_loop(transport, where, 0.5, names)  # warm both ends up
        # alternate in short turns: the machine is shared, its load drifts
        for _ in range(ROUNDS):
            raw += await raw_loop(transport, where, seconds / ROUNDS, names)
            done, errs = await driver_loop(transport, where, seconds / ROUNDS, names)
            ours += done
            errors = {k: errors.get(k, 0) + v for k, v in errs.items() if v}
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
    return {"transport": transport, "raw_requests_per_s": raw / seconds,
            "driver_requests_per_s": ours / seconds, "ratio": ours / raw if raw else 0.0,
            "driver_errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--transport", nargs="+", choices=["serial", "tcp"],
                        default=["serial", "tcp"])
    parser.add_argument("--tags", type=int, default=8, choices=range(1, len(NAMES) + 1),
                        metavar=f"1..{len(NAMES)}", help="identifiers read each poll")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    names = NAMES[:args.tags]
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    results = [asyncio.run(run(t, args.seconds, names)) for t in args.transport]
    for r in results:
        print(f"{r['transport']:>6}: raw {r['raw_requests_per_s']:8.0f} req/s, driver "
              f"{r['driver_requests_per_s']:8.0f} req/s, ratio {r['ratio']:.3f}, "
              f"errors {r['driver_errors'] or 'none'}")
    print(f"load average before: {' '.join(load)}")
    out = args.out or Path(__file__).resolve().parent / "results" / \
        f"dlt645-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"results": results, "tags": len(names), "seconds": args.seconds,
                               "loadavg": load, "python": platform.python_version(),
                               "machine": platform.machine()}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
