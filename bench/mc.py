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
pair. Writes JSON to ``bench/results/mc-<timestamp>.json``. See bench/README.md.

    python -m bench.mc [--seconds 5] [--rounds 5] [--tags 2000] [--scattered 200]
                       [--transport tcp|udp] [--frame 3e|4e] [--plc-delay 0.002]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from drivers.mc.config import McDeviceConfig
from drivers.mc.driver import McDriver
from gateway.types import Quality

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
from harness import HOST, Child, machine_info, package_version, start_hil_sim  # noqa: E402

log = logging.getLogger("bench.mc")
GOAL_RATIO = 0.9
RESULTS_DIR = BENCH_DIR / "results"


@dataclass(slots=True)
class Measurement:
    side: str
    values: int
    seconds: float
    cpu_seconds: float
    requests: int
    bad: int = 0
    round: int = 0

    @property
    def rate(self) -> float:
        return self.values / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_ms_per_1000(self) -> float:
        return self.cpu_seconds / self.values * 1e6 if self.values else float("nan")


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


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
    try:
        group = driver.poll_groups()[0]
        per_poll = len(driver.requests)
        await driver.read(group)  # warm: plans built, link up
        values = polls = bad = 0
        cpu0, t0 = _cpu(), time.perf_counter()
        end = t0 + seconds
        while time.perf_counter() < end:
            batch = await driver.read(group)
            values += len(batch.tag_ids)
            bad += int((batch.quality != Quality.GOOD).sum())
            polls += 1
        elapsed, cpu = time.perf_counter() - t0, _cpu() - cpu0
    finally:
        await driver.close()
    return Measurement("ours", values, elapsed, cpu, polls * per_poll, bad)


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
            cpu0, t0 = _cpu(), time.perf_counter()
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
            elapsed, cpu = time.perf_counter() - t0, _cpu() - cpu0
        finally:
            writer.close()
    else:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            _Answers, remote_addr=(config.host, config.port))
        try:
            cpu0, t0 = _cpu(), time.perf_counter()
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
            elapsed, cpu = time.perf_counter() - t0, _cpu() - cpu0
        finally:
            transport.close()
    return Measurement("raw", values, elapsed, cpu, requests)


def start_plc(workdir: Path, transport: str, delay: float) -> tuple[Child, int]:
    """``chenxing-hil sim mc`` in a process of its own, answering ``delay`` s late; its
    port."""
    child, match = start_hil_sim(
        "mc-plc", ["mc", "--host", HOST, "--port", "0", "--series", "q", "--transport",
                   transport, "--delay", str(delay)],
        workdir, rf"{HOST.replace('.', '[.]')}:(\d+)")  # fmt: skip
    return child, int(match.group(1))


async def run(args: argparse.Namespace, port: int) -> list[Measurement]:
    config = device_config(port, args.tags, args.scattered, args.transport, args.frame)
    out: list[Measurement] = []
    for r in range(args.rounds):
        order = (ours, raw) if r % 2 == 0 else (raw, ours)
        for side in order:
            m = await side(config, args.seconds)
            m.round = r
            out.append(m)
            log.info("round %d %s: %.0f values/s (%d requests, %.2f ms CPU / 1,000)", r,
                     m.side, m.rate, m.requests, m.cpu_ms_per_1000)
    return out


def summarize(ms: list[Measurement], args: argparse.Namespace,
              requests_per_poll: int) -> dict[str, Any]:
    by = {side: [m for m in ms if m.side == side] for side in ("ours", "raw")}
    med = {side: statistics.median(m.rate for m in v) for side, v in by.items()}
    pairs = [o.rate / r.rate for o, r in zip(by["ours"], by["raw"], strict=True) if r.rate]
    cpu = {side: statistics.median(m.cpu_ms_per_1000 for m in v) for side, v in by.items()}
    return {
        "tags": args.tags + args.scattered, "requests_per_poll": requests_per_poll,
        "transport": args.transport, "frame": args.frame, "plc_delay": args.plc_delay,
        "ours_values_per_s": med["ours"], "raw_values_per_s": med["raw"],
        "ratio_of_medians": med["ours"] / med["raw"],
        "median_of_rounds": statistics.median(pairs),
        "cpu_ms_per_1000": cpu, "bad_samples": sum(m.bad for m in by["ours"]),
        "goal": GOAL_RATIO, "met": statistics.median(pairs) >= GOAL_RATIO,
    }


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
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("-v", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.v else logging.WARNING,
                        format="%(name)s: %(message)s")
    started = dt.datetime.now(dt.UTC)
    loadavg = Path("/proc/loadavg").read_text().split()[:3]
    with tempfile.TemporaryDirectory(prefix="bench-mc-") as tmp:
        child, port = start_plc(Path(tmp), args.transport, args.plc_delay)
        try:
            ms = asyncio.run(run(args, port))
        finally:
            child.stop(5)
    config = device_config(1, args.tags, args.scattered, args.transport, args.frame)
    per_poll = len(McDriver(config, list(range(len(config.tags)))).requests)
    summary = summarize(ms, args, per_poll)
    result = {"bench": "mc", "started": started.isoformat(), "loadavg_before": loadavg,
              "loadavg_after": Path("/proc/loadavg").read_text().split()[:3],
              "machine": {**machine_info(), "plc_comm_slmp": package_version("plc-comm-slmp")},
              "args": {k: str(v) for k, v in vars(args).items()},
              "summary": summary, "rounds": [asdict(m) for m in ms]}
    out = args.out or RESULTS_DIR / f"mc-{started:%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"MC protocol, {summary['tags']} tags in {per_poll} requests per poll "
          f"({args.transport}, {args.frame.upper()}, CPU answers after {args.plc_delay:g} s), "
          f"load {' '.join(loadavg)}:")
    print(f"  ours {summary['ours_values_per_s']:,.0f} values/s, raw "
          f"{summary['raw_values_per_s']:,.0f} values/s")
    print(f"  ratio of medians {summary['ratio_of_medians']:.2f}, median of rounds "
          f"{summary['median_of_rounds']:.2f} (goal >= {GOAL_RATIO}: "
          f"{'met' if summary['met'] else 'NOT met'})")
    print(f"  client CPU per 1,000 values: ours {summary['cpu_ms_per_1000']['ours']:.2f} ms, "
          f"raw {summary['cpu_ms_per_1000']['raw']:.2f} ms; bad samples {summary['bad_samples']}")
    print(f"  {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
