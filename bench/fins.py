"""FINS benchmark: our driver against a bare request loop on the same simulated PLC.

The simulated Omron PLC (``chenxing-hil sim fins``) runs in a process of its own; this
process runs, interleaved (ours, raw, raw, ours, ...) so that the noise of a shared
machine falls on both:

- **ours**: :class:`~drivers.fins.driver.FinsDriver` polling all tags back to back
  (its plan, its link with service-id matching, NumPy decode into a SampleBatch);
- **raw**: a bare asyncio loop sending the same reads (the driver's own plan, the same
  frame bytes) over the same transport, waiting for each answer and taking its words
  as a NumPy array (no end code, service id or length checks, no values per tag, no
  qualities), with a future and a task switch per answer. The driver sends each next read
  from the callback its previous answer came in (``FinsLink.exchange_all``), so it can
  come out ahead of this loop: it is the reference the goal is judged against, not a
  ceiling.

Values/s = tags x polls / seconds. The ratios are ours / raw, of the medians and the
median of each round's pair (judged against the goal, >= 0.9), and per client CPU
second (bench/harness.py: ``summarise_pairs``). Writes JSON to
``bench/results/fins-<timestamp>.json``.

    python -m bench.fins [--tags 2000] [--seconds 3] [--rounds 3] [--transport udp tcp]
                         [--plc-delay 0.002]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

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


async def ours(config: FinsDeviceConfig, seconds: float) -> Measurement:
    """The driver polling back to back."""
    driver = FinsDriver(config, list(range(len(config.tags))))
    await driver.connect()
    measured = await poll_driver(driver, seconds, len(driver.requests))
    assert not driver.errors, driver.errors
    return measured


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
              texts: list[tuple[int, bytes]]) -> Measurement:
    """The same reads as bare frames: send, wait for the answer, take its words."""
    loop = asyncio.get_running_loop()
    polls, sid = 0, 0
    if config.transport == "udp":
        transport, proto = await loop.create_datagram_endpoint(
            _Udp, remote_addr=(config.host, config.port))
        route = Route(dest_node=1, src_node=1)
        try:
            began, cpu0 = time.perf_counter(), self_cpu()
            while time.perf_counter() - began < seconds:
                for code, text in texts:
                    sid = sid % 255 + 1
                    proto.waiter = loop.create_future()
                    transport.sendto(command_frame(route, sid, code, text))
                    _words(await proto.waiter, code)
                polls += 1
            elapsed, cpu = time.perf_counter() - began, self_cpu() - cpu0
        finally:
            transport.close()
    else:
        reader, writer = await asyncio.open_connection(config.host, config.port)
        writer.write(node_address_request(0))
        answer = await reader.readexactly(24)
        client, server = int.from_bytes(answer[16:20], "big"), int.from_bytes(answer[20:24], "big")
        route = Route(dest_node=server, src_node=client)
        try:
            began, cpu0 = time.perf_counter(), self_cpu()
            while time.perf_counter() - began < seconds:
                for code, text in texts:
                    sid = sid % 255 + 1
                    writer.write(tcp_message(TCP_FRAME, command_frame(route, sid, code, text)))
                    header = await reader.readexactly(16)
                    _words(await reader.readexactly(int.from_bytes(header[4:8], "big") - 8),
                           code)
                polls += 1
            elapsed, cpu = time.perf_counter() - began, self_cpu() - cpu0
        finally:
            writer.close()
    return Measurement("raw", polls * len(config.tags), elapsed, cpu, polls * len(texts))


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    plc, match = start_hil_sim("fins-plc", ["fins", "--port", "0", "--delay", str(args.plc_delay)],
                               workdir, r"listening on 127\.0\.0\.1:(\d+)")  # fmt: skip
    results: dict[str, Any] = {}
    try:
        for transport in args.transport:
            config = device(int(match.group(1)), transport, args.tags)
            texts = frame_texts(FinsDriver(config, list(range(len(config.tags)))).requests)
            measurements = await paired_rounds(
                {"ours": partial(ours, config, args.seconds),
                 "raw": partial(raw, config, args.seconds, texts)},
                args.rounds)  # fmt: skip
            summary = summarise_pairs(measurements)
            summary["setup"] = {"transport": transport, "tags": args.tags,
                                "requests_per_poll": len(texts), "plc_delay_s": args.plc_delay}
            results[transport] = summary
            print_pairs(f"FINS/{transport.upper()}: {args.tags:,} tags in {len(texts)} requests a "
                        f"poll, PLC answer delay {args.plc_delay:g} s", "values/s", summary,
                        GOAL_RATIO)  # fmt: skip
    finally:
        plc.stop(10.0)
        plc.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tags", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--transport", nargs="+", choices=["udp", "tcp"], default=["udp", "tcp"])
    parser.add_argument("--plc-delay", type=float, default=0.0,
                        help="seconds the simulated PLC takes to answer (0: as fast as it can)")
    args = bench_arguments(parser).parse_args(argv)

    async def body(workdir: Path) -> dict[str, Any]:
        return {"goal_ratio": GOAL_RATIO, "results": await run(args, workdir)}

    return run_async_bench("fins", args, body, packages=("fins",))


if __name__ == "__main__":
    sys.exit(main())
