"""Serial-line driver: frames/s through framer + parser, and end to end over a pty.

1. *Decode*: scale lines (``ST,GS,+0012.345 kg``, 4 tags by regex) and 12-byte
   binary records (4 tags by struct, start-byte framing) are fed in 4 KiB chunks
   through the framer and parser: frames/s and MB/s.
2. *End to end*: the simulated scale streams as fast as asked (``--rate``) into a
   pty; the :class:`SerialLineDriver` in the same process reads it (add_reader,
   framer, regex, SampleBatch): frames/s delivered, bad frames, and CPU time per
   1,000 frames (simulator and driver together, one process). For scale: a real
   9600 baud line carries at most 48 such lines a second (20 bytes, 10 bits a byte).

Run from the repository root with the virtualenv active::

    python -m bench.serial_line [--seconds 3] [--rate 2000]

Figures are printed and written as JSON to ``bench/results/serial_line-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Run, self_cpu
from drivers.serial_line.config import SerialLineDeviceConfig
from drivers.serial_line.driver import SerialLineDriver
from drivers.serial_line.framing import make_framer
from drivers.serial_line.parsing import FrameParser
from hil.devices.scale import ScaleSimulator, weight_readings

SCALE: dict[str, Any] = {
    "name": "scale", "protocol": "serial_line", "port": "/dev/null",
    "framing": {"terminator": r"\r\n", "max_frame": 64},
    "parser": {
        "regex": r"(?P<stable>ST|US),(?P<mode>GS|NT),(?P<weight>[+-]\d+\.\d+) (?P<unit>\w+)"
    },
    "tags": [
        {"name": "weight", "type": "float64", "field": "weight"},
        {"name": "stable", "type": "bool", "field": "stable", "map": {"ST": True, "US": False}},
        {"name": "net", "type": "bool", "field": "mode", "map": {"NT": True, "GS": False}},
        {"name": "unit", "type": "string", "field": "unit"},
    ],
}
ANALYZER: dict[str, Any] = {
    "name": "analyzer", "protocol": "serial_line", "port": "/dev/null", "encoding": "latin-1",
    "framing": {"length": 12, "start": r"\xAA\x55"},
    "parser": {"struct": "<HfHBx"},
    "tags": [
        {"name": "id", "type": "uint16", "field": 0},
        {"name": "ph", "type": "float32", "field": 1},
        {"name": "cond", "type": "uint16", "field": 2},
        {"name": "status", "type": "uint16", "field": 3},
    ],
}


def decode_rate(body: dict[str, Any], stream: bytes, frames: int) -> dict[str, float]:
    config = SerialLineDeviceConfig.model_validate(body)
    framer, parser = make_framer(config.framing), FrameParser(config)
    start = time.perf_counter()
    got = 0
    for i in range(0, len(stream), 4096):
        for frame in framer.feed(stream[i : i + 4096]):
            parser.parse(frame)
            got += 1
    seconds = time.perf_counter() - start
    assert got == frames, (got, frames)
    return {"frames_per_s": round(frames / seconds),
            "mb_per_s": round(len(stream) / seconds / 1e6, 2)}


async def end_to_end(seconds: float, rate: float) -> dict[str, float]:
    async with ScaleSimulator(mode="stream", rate=rate, seed=1) as sim:
        config = SerialLineDeviceConfig.model_validate(SCALE | {"port": sim.serial_path})
        driver = SerialLineDriver(config, [0, 1, 2, 3])
        await driver.connect()
        samples = 0

        def emit(batch: Any) -> None:
            nonlocal samples
            samples += len(batch)

        task = asyncio.create_task(driver.subscribe(emit))
        await asyncio.sleep(0.5)
        ok0, cpu0, t0 = driver.frames_ok, self_cpu(), time.perf_counter()
        await asyncio.sleep(seconds)
        ok, cpu, wall = driver.frames_ok - ok0, self_cpu() - cpu0, time.perf_counter() - t0
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await driver.close()
        return {
            "offered_lines_per_s": rate,
            "frames_per_s": round(ok / wall),
            "bad_frames": driver.frames_bad,
            "cpu_ms_per_1000_frames": round(cpu / max(ok, 1) * 1e6, 1),
            "samples": samples,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rate", type=float, default=2000.0, help="scale lines/s offered")
    parser.add_argument("--out", type=Path, help="JSON result file")
    args = parser.parse_args()
    run = Run("serial_line")

    n = 100_000
    readings = weight_readings(3)
    lines = b"".join(next(readings).line() for _ in range(n))
    records = b"".join(b"\xaa\x55" + struct.pack("<HfHBx", i & 0xFFFF, 7.0, 1234, 0)
                       for i in range(n))
    results: dict[str, Any] = {
        "decode_regex_scale_lines": decode_rate(SCALE, lines, n),
        "decode_struct_records": decode_rate(ANALYZER, records, n),
        "end_to_end_pty": asyncio.run(end_to_end(args.seconds, args.rate)),
    }
    for name, figures in results.items():
        print(f"{name:28s} " + "  ".join(f"{k}={v}" for k, v in figures.items()))
    out = run.write({"parameters": {"seconds": args.seconds, "rate": args.rate}, **results},
                    args.out)  # fmt: skip
    print(f"written to {out}")


if __name__ == "__main__":
    main()
