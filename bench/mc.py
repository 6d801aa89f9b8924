"""MC protocol (SLMP) benchmark: our driver against a bare request loop on the same simulator.

The simulated MELSEC CPU (``chenxing-hil sim mc``) runs in a process of its own; the
clients run in this process, interleaved (ours, raw, raw, ours, ...) so that the noise
of a shared machine falls on both:

- **ours**: :class:`~drivers.mc.driver.McDriver` polling back to back: its request plan
  (batch reads of contiguous D registers, random reads of the scattered tags), frames,
  answer checks, NumPy decode into a SampleBatch.
- **raw**: a bare asyncio loop sending the very same request frames (the driver's own
  plan) on a plain TCP stream or UDP socket, reading each answer (header, then its
  length) and checking only its end code: the ceiling.

The ratio ours / raw is judged against the goal (>= 0.9), as the median of each round's
pair (bench/harness.py: ``summarise_pairs``). Writes JSON to
``bench/results/mc-<timestamp>.json``. See bench/README.md.

    python -m bench.mc [--seconds 5] [--rounds 5] [--tags 2000] [--scattered 200]
                       [--transport tcp|udp] [--frame 3e|4e] [--plc-delay 0.002]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from bench.harness import (
    HOST,
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
from drivers.mc.config import McDeviceConfig
from drivers.mc.driver import McDriver

GOAL_RATIO = 0.9


def device_config(port: int, tags: int, scattered: int, transport: str,
                  frame: str) -> McDeviceConfig:
    """``tags`` float32 values packed from D1000 (batch reads of 960 words), ``scattered``
    single words and bits spread over D, W and M (random reads)."""
    listed: list[dict[str, Any]] = [
        {"name": f"f{i:05d}", "address": f"D{1000 + 2 * i}", "type": "float32"}
        for i in range(tags)]
    for i in range(scattered):
        kind = i % 3
        if kind == 0:
            listed.append({"name": f"s{i:04d}", "address": f"D{6000 + 17 * i}", "type": "int16"})
        elif kind == 1:
            listed.append({"name": f"s{i:04d}", "address": f"W{0x100 + 9 * i:X}",
                           "type": "uint16"})
        else:
            listed.append({"name": f"s{i:04d}", "address": f"M{32 * i}", "type": "bool"})
    return McDeviceConfig.model_validate({
        "name": "bank", "protocol": "mc", "host": HOST, "port": port, "plc_series": "q",
        "transport": transport, "frame": frame, "timeout": "2s", "poll_interval": "1ms",
        "tags": listed})


async def ours(config: McDeviceConfig, seconds: float) -> Measurement:
    driver = McDriver(config, list(range(len(config.tags))))
    await driver.connect()
    await driver.read(driver.poll_groups()[0])  # warm: plans built, link up
    return await poll_driver(driver, seconds, len(driver.requests))


class _Answers(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiter: asyncio.Future[bytes] | None = None

    def datagram_received(self, data: bytes, addr: object) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(data)


async def raw(config: McDeviceConfig, seconds: float) -> Measurement:
    """The driver's request frames on a bare socket; answers only checked for end code 0."""
    driver = McDriver(config, list(range(len(config.tags))))
    plan = driver._plan_for(driver.tag_ids)  # the very frames the driver sends
    frames = [(read.frame, len(read.request.members)) for read in plan.reads]
    header = 13 if config.frame == "4e" else 9
    values = requests = 0
    if config.transport == "tcp":
        reader, writer = await asyncio.open_connection(config.host, config.port)
        try:
            cpu0, t0 = self_cpu(), time.perf_counter()
            end = t0 + seconds
            while time.perf_counter() < end:
                for frame, tags in frames:
                    writer.write(frame)
                    head = await reader.readexactly(header)
                    body = await reader.readexactly(int.from_bytes(head[-2:], "little"))
                    if body[:2] != b"\0\0":
                        raise RuntimeError(f"end code {body[:2].hex()}")
                    values += tags
                    requests += 1
            elapsed, cpu = time.perf_counter() - t0, self_cpu() - cpu0
        finally:
            writer.close()
    else:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            _Answers, remote_addr=(config.host, config.port))
        try:
            cpu0, t0 = self_cpu(), time.perf_counter()
            end = t0 + seconds
            while time.perf_counter() < end:
                for frame, tags in frames:
                    protocol.waiter = loop.create_future()
                    transport.sendto(frame)
                    answer = await asyncio.wait_for(protocol.waiter, 2)
                    if answer[header:header + 2] != b"\0\0":
                        raise RuntimeError(f"end code {answer[header:header + 2].hex()}")
                    values += tags
                    requests += 1
            elapsed, cpu = time.perf_counter() - t0, self_cpu() - cpu0
        finally:
            transport.close()
    return Measurement("raw", values, elapsed, cpu, requests)


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    plc, match = start_hil_sim(
        "mc-plc", ["mc", "--host", HOST, "--port", "0", "--series", "q", "--transport",
                   args.transport, "--delay", str(args.plc_delay)],
        workdir, r"127\.0\.0\.1:(\d+)")  # fmt: skip
    try:
        config = device_config(int(match.group(1)), args.tags, args.scattered, args.transport,
                               args.frame)
        per_poll = len(McDriver(config, list(range(len(config.tags)))).requests)
        measurements = await paired_rounds(
            {"ours": partial(ours, config, args.seconds),
             "raw": partial(raw, config, args.seconds)},
            args.rounds)  # fmt: skip
    finally:
        plc.stop(10.0)
        plc.close()
    summary = summarise_pairs(measurements)
    summary["setup"] = {"tags": args.tags + args.scattered, "requests_per_poll": per_poll,
                        "transport": args.transport, "frame": args.frame,
                        "plc_delay_s": args.plc_delay}
    print_pairs(f"MC protocol: {args.tags + args.scattered:,} tags in {per_poll} requests a "
                f"poll ({args.transport}, {args.frame.upper()}, CPU answers after "
                f"{args.plc_delay:g} s)", "values/s", summary, GOAL_RATIO)  # fmt: skip
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tags", type=int, default=2000, help="contiguous float32 tags")
    parser.add_argument("--scattered", type=int, default=200, help="scattered tags")
    parser.add_argument("--transport", choices=["tcp", "udp"], default="tcp")
    parser.add_argument("--frame", choices=["3e", "4e"], default="3e")
    parser.add_argument("--plc-delay", type=float, default=0.0,
                        help="seconds the simulated CPU waits before each answer (a real CPU "
                        "answers at the end of its scan, a few ms)")
    args = bench_arguments(parser).parse_args(argv)

    async def body(workdir: Path) -> dict[str, Any]:
        return {"goal_ratio": GOAL_RATIO, "results": await run(args, workdir)}

    return run_async_bench("mc", args, body)


if __name__ == "__main__":
    sys.exit(main())
