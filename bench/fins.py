"""FINS benchmark: our driver against a bare request loop on the same simulated PLC.

The simulated Omron PLC (``chenxing-hil sim fins``) runs in a process of its own; this
process runs, interleaved (ours, raw, raw, ours, ...) so that the noise of a shared
machine falls on both:

- **ours**: :class:`~drivers.fins.driver.FinsDriver` polling all tags back to back
  (its plan, its link with service-id matching, NumPy decode into a SampleBatch);
- **raw**: a bare asyncio loop sending the same reads (the driver's own plan, the same
  frame bytes) over the same transport, waiting for each answer and taking its words
  as a NumPy array (no end code, service id or length checks, no values per tag, no
  qualities): the ceiling.

Values/s = tags x polls / seconds. The ratio is ours / raw, the median of each round's
pair, judged against the goal (>= 0.9). Writes JSON to ``bench/results/fins-<time>.json``.

    python -m bench.fins [--tags 2000] [--seconds 3] [--rounds 3] [--transport udp tcp]
                         [--plc-delay 0.002]
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
from pathlib import Path
from typing import Any

import numpy as np

from drivers.fins.config import FinsDeviceConfig
from drivers.fins.driver import FinsDriver
from drivers.fins.frames import (
    MEMORY_AREA_READ,
    MULTIPLE_MEMORY_AREA_READ,
    TCP_FRAME,
    Route,
    command_frame,
    memory_area_read,
    multiple_memory_area_read,
    node_address_request,
    tcp_message,
)
from drivers.fins.planner import ReadRequest

GOAL_RATIO = 0.9
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def device(port: int, transport: str, tags: int) -> FinsDeviceConfig:
    """``tags`` tags over D0.., float32 and uint16 in turn (1.5 words a tag), plus a CIO bit
    every 100 tags: several 999-word reads and one multiple read."""
    entries: list[dict[str, Any]] = []
    word = 0
    for i in range(tags):
        if i % 100 == 99:
            entries.append({"name": f"b{i}", "address": f"CIO{i}.03", "type": "bool"})
            continue
        kind = "float32" if i % 2 == 0 else "uint16"
        entries.append({"name": f"t{i}", "address": f"D{word}", "type": kind})
        word += 2 if kind == "float32" else 1
    return FinsDeviceConfig.model_validate({
        "name": "bench", "protocol": "fins", "host": "127.0.0.1", "port": port,
        "transport": transport, "timeout": "2s", "tags": entries})


def frame_texts(requests: tuple[ReadRequest, ...]) -> list[tuple[int, bytes]]:
    out = []
    for r in requests:
        if r.is_multiple:
            out.append((MULTIPLE_MEMORY_AREA_READ, multiple_memory_area_read(r.items)))
        else:
            assert r.area is not None
            code = r.area.bit_code if r.bits else r.area.word_code
            first, bit = (r.start // 16, r.start % 16) if r.bits else (r.start, 0)
            out.append((MEMORY_AREA_READ, memory_area_read(code, first, bit, r.count)))
    return out


async def ours(config: FinsDeviceConfig, seconds: float) -> tuple[float, float]:
    """(values/s, CPU µs a poll) of the driver polling back to back."""
    driver = FinsDriver(config, list(range(len(config.tags))))
    await driver.connect()
    try:
        groups = driver.poll_groups()
        polls, began, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - began < seconds:
            for group in groups:
                await driver.read(group)
            polls += 1
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
        assert not driver.errors, driver.errors
        return polls * len(config.tags) / elapsed, cpu / polls * 1e6
    finally:
        await driver.close()


def _words(answer: bytes, code: int) -> np.ndarray:
    """What a bare loop does with an answer: its data as words (a multiple read's as bytes)."""
    if code == MEMORY_AREA_READ:
        return np.frombuffer(answer, dtype=">u2", offset=14)
    return np.frombuffer(answer, dtype=np.uint8, offset=14)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiter: asyncio.Future[bytes] | None = None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(data)


async def raw(config: FinsDeviceConfig, seconds: float,
              texts: list[tuple[int, bytes]]) -> tuple[float, float]:
    """(values/s, CPU µs a poll) of the same reads as bare frames: send, wait for the
    answer, take its words."""
    loop = asyncio.get_running_loop()
    polls, sid = 0, 0
    if config.transport == "udp":
        transport, proto = await loop.create_datagram_endpoint(
            _Udp, remote_addr=(config.host, config.port))
        route = Route(dest_node=1, src_node=1)
        try:
            began, cpu = time.perf_counter(), time.process_time()
            while time.perf_counter() - began < seconds:
                for code, text in texts:
                    sid = sid % 255 + 1
                    proto.waiter = loop.create_future()
                    transport.sendto(command_frame(route, sid, code, text))
                    _words(await proto.waiter, code)
                polls += 1
            elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
        finally:
            transport.close()
    else:
        reader, writer = await asyncio.open_connection(config.host, config.port)
        writer.write(node_address_request(0))
        answer = await reader.readexactly(24)
        client, server = int.from_bytes(answer[16:20], "big"), int.from_bytes(answer[20:24], "big")
        route = Route(dest_node=server, src_node=client)
        try:
            began, cpu = time.perf_counter(), time.process_time()
            while time.perf_counter() - began < seconds:
                for code, text in texts:
                    sid = sid % 255 + 1
                    writer.write(tcp_message(TCP_FRAME, command_frame(route, sid, code, text)))
                    header = await reader.readexactly(16)
                    _words(await reader.readexactly(int.from_bytes(header[4:8], "big") - 8),
                           code)
                polls += 1
            elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
        finally:
            writer.close()
    return polls * len(config.tags) / elapsed, cpu / polls * 1e6


def start_simulator(delay: float = 0.0) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-m", "hil.cli", "--log-level", "warning", "sim",
                             "fins", "--port", "0", "--delay", str(delay)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    if match is None:
        proc.kill()
        raise SystemExit(f"the simulator did not start: {line!r}")
    return proc, int(match.group(1))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    proc, port = start_simulator(args.plc_delay)
    results: dict[str, Any] = {}
    try:
        for transport in args.transport:
            config = device(port, transport, args.tags)
            texts = frame_texts(FinsDriver(config, list(range(len(config.tags)))).requests)
            rounds = []
            for i in range(args.rounds):
                order = ("ours", "raw") if i % 2 == 0 else ("raw", "ours")
                figures = {}
                for who in order:
                    rate, cpu = (await ours(config, args.seconds) if who == "ours"
                                 else await raw(config, args.seconds, texts))
                    figures[who], figures[f"{who}_cpu_us_per_poll"] = rate, cpu
                rounds.append(figures)
                pair = figures["ours"] / figures["raw"]
                print(f"{transport} round {i + 1}: ours {figures['ours']:,.0f} values/s "
                      f"({figures['ours_cpu_us_per_poll']:.0f} us CPU a poll), raw "
                      f"{figures['raw']:,.0f} values/s ({figures['raw_cpu_us_per_poll']:.0f} "
                      f"us), ratio {pair:.3f}")
            ratio = statistics.median(r["ours"] / r["raw"] for r in rounds)
            results[transport] = {
                "requests_per_poll": len(texts), "rounds": rounds, "ratio": ratio,
                "ours_median": statistics.median(r["ours"] for r in rounds),
                "raw_median": statistics.median(r["raw"] for r in rounds),
                "meets_goal": ratio >= GOAL_RATIO}
            print(f"{transport}: {args.tags} tags in {len(texts)} requests a poll; median ratio "
                  f"{ratio:.3f} (goal >= {GOAL_RATIO})")
    finally:
        proc.terminate()
        proc.wait(10)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tags", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--transport", nargs="+", choices=["udp", "tcp"], default=["udp", "tcp"])
    parser.add_argument("--plc-delay", type=float, default=0.0,
                        help="seconds the simulated PLC takes to answer (0: as fast as it can)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    print(f"load average before: {' '.join(load)} ({os.cpu_count()} CPUs)")
    results = asyncio.run(run(args))
    out = args.out or RESULTS_DIR / f"fins-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k != "out"},
                               "loadavg_before": load, "results": results}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
