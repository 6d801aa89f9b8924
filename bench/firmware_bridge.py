"""MCU node link: frames/s through the decoder, and readings/s end to end over a pty.

1. *Decode*: pre-encoded READINGS frames (126 and 15 readings each) go through
   :class:`FrameDecoder` in 4 KiB chunks, alone and with the readings parsed into
   NumPy (``readings_array``): frames/s and MB/s.
2. *End to end*: a producer process writes READINGS frames into a pseudo-terminal
   as fast as the pty takes them (or at ``--rate`` readings/s); the gateway side
   opens the other end with :class:`McuNodeDriver` (HELLO handshake, decoder,
   tick -> time, SampleBatch), then optionally the pipeline processes each batch
   (a READINGS burst holds several samples per tag, which the pipeline splits
   into one pass per round: the dominant cost at 42 rounds a frame). Readings/s
   delivered, the gateway process's CPU per 1,000 readings, bad frames and
   sequence gaps. The pty (not a baud rate) is the line: a real 115200 baud line
   carries at most ~1,400 readings/s (8-byte readings + framing, 10 bits a byte).
3. *Firmware upload*: a 256 KiB MCUboot image to the simulated node over MCUmgr SMP
   (smpclient over the driver's shared port, while the node keeps streaming
   telemetry), on a pty paced like a real 8N1 line (``--baud``, default 115200
   and 921600) and unpaced: upload seconds, total update seconds (test, reset,
   HELLO, confirm), SMP bytes on the wire per image byte, and the readings that
   arrived during the update.

Run from the repository root with the virtualenv active::

    python -m bench.firmware_bridge [--seconds 5] [--rate max|R] [--baud 115200 921600]

Figures are printed and written as JSON to ``bench/results/firmware_bridge-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import select
import sys
import time
import tty
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Run, load_note, self_cpu, spawn
from firmware_bridge.config import McuNodeDeviceConfig
from firmware_bridge.driver import McuNodeDriver
from firmware_bridge.frames import FrameDecoder, MessageType
from firmware_bridge.messages import (
    Hello,
    Reading,
    Readings,
    ReadingStatus,
    Sensor,
    encode_message,
    readings_array,
)
from gateway.pipeline import Pipeline
from gateway.tags import TagCatalog
from gateway.types import SampleBatch

log = logging.getLogger("bench.firmware_bridge")

NODE_ID = 1
SENSORS = (Sensor(0, "vibration_rms", "mm/s"), Sensor(1, "temperature", "degC"),
           Sensor(2, "humidity", "%RH"))


def readings_frame(seq: int, base: int, rounds: int) -> bytes:
    readings = tuple(
        Reading(c, ReadingStatus.OK, r, 20.0 + c + r * 0.01)
        for r in range(rounds)
        for c in range(3)
    )
    return encode_message(Readings(base, readings), NODE_ID, seq)


# -- 1. decoder ------------------------------------------------------------------------
def bench_decode(seconds: float) -> list[dict[str, Any]]:
    results = []
    for rounds in (42, 5):
        frames = [readings_frame(i, i * rounds, rounds) for i in range(2000)]
        stream = b"".join(frames)
        chunks = [stream[i : i + 4096] for i in range(0, len(stream), 4096)]
        for parse in (False, True):
            decoder = FrameDecoder()
            n = 0
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                for chunk in chunks:
                    for frame in decoder.feed(chunk):
                        if parse:
                            readings_array(frame.payload)
                n += len(frames)
            elapsed = time.perf_counter() - t0
            assert decoder.bad_total == 0
            results.append({
                "readings_per_frame": rounds * 3,
                "frame_bytes": len(frames[0]),
                "with_readings_parsed": parse,
                "frames_per_s": round(n / elapsed),
                "readings_per_s": round(n * rounds * 3 / elapsed),
                "mb_per_s": round(n * len(stream) / len(frames) / elapsed / 1e6, 2),
            })
    return results


# -- 2. end to end over a pty ------------------------------------------------------------
def produce(fd: int, rate: float | None, rounds: int) -> None:
    """Child process: say READY (its imports done), answer HELLO_REQUEST, then write
    READINGS frames until killed."""
    print("READY", flush=True)
    decoder = FrameDecoder(smp=False)
    seq = 0
    started = False
    t0 = time.monotonic()
    sent = 0
    per_frame = rounds * 3
    while True:
        readable, _, _ = select.select([fd], [], [], 0 if started else 0.1)
        if readable:
            for frame in decoder.feed(os.read(fd, 4096)):
                if frame.type is MessageType.HELLO_REQUEST:
                    os.write(fd, encode_message(Hello((1, 0, 0), 1000, "bench", SENSORS),
                                                NODE_ID, seq))
                    seq += 1
                    started = True
                    t0 = time.monotonic()
        if not started:
            continue
        tick = int((time.monotonic() - t0) * 1000)
        if rate is not None and sent >= rate * (time.monotonic() - t0):
            time.sleep(0.001)
            continue
        burst = b"".join(readings_frame(seq + i, tick, rounds) for i in range(8))
        seq += 8
        sent += 8 * per_frame
        os.write(fd, burst)  # blocks while the pty is full: the reader sets the pace


def bench_end_to_end(
    seconds: float, rate: float | None, rounds: int, pipeline: bool
) -> dict[str, Any]:
    """Start the producer on a fresh pty, measure the gateway side on the other end."""
    master, slave = os.openpty()
    tty.setraw(slave)
    child = spawn(
        "producer",
        [sys.executable, __file__, "--producer-fd", str(master), "--rounds", str(rounds),
         *(["--rate", str(rate)] if rate else [])],
        None,
        stdout_pipe=True,
        pass_fds=(master,),
    )  # fmt: skip
    try:
        # the driver asks for the node's HELLO once and waits 2 s: on a loaded machine the
        # producer's start (Python, NumPy) takes longer than that
        child.wait_line(r"^READY$", timeout=120)
        return asyncio.run(_measure(os.ttyname(slave), seconds, rate, rounds, pipeline))
    finally:
        child.stop(timeout=5)
        child.close()
        os.close(master)
        os.close(slave)


async def _measure(
    port: str, seconds: float, rate: float | None, rounds: int, with_pipeline: bool
) -> dict[str, Any]:
    config = McuNodeDeviceConfig.model_validate({
        "name": "node", "protocol": "mcu_node", "port": port, "node_id": NODE_ID,
        "stale_after": "3s",
        "tags": [{"name": s.name, "sensor": s.name, "unit": s.unit} for s in SENSORS],
    })
    catalog = TagCatalog([config])
    pipeline = Pipeline(catalog)
    driver = McuNodeDriver(config, catalog.ids_of_device("node"))
    count = [0]

    def sink(batch: SampleBatch) -> None:
        if with_pipeline:
            pipeline.process(batch)
        count[0] += len(batch)

    await driver.connect()
    task = asyncio.create_task(driver.subscribe(sink))
    await asyncio.sleep(1.0)  # warm-up
    start_count, t0, cpu0 = count[0], time.perf_counter(), self_cpu()
    await asyncio.sleep(seconds)
    n, elapsed = count[0] - start_count, time.perf_counter() - t0
    cpu = self_cpu() - cpu0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await driver.close()
    return {
        "offered": "max" if rate is None else rate,
        "readings_per_frame": rounds * 3,
        "through_pipeline": with_pipeline,
        "readings_per_s": round(n / elapsed),
        "frames_per_s": round(n / elapsed / (rounds * 3)),
        "gateway_cpu_ms_per_1000_readings": round(cpu / max(n, 1) * 1e6, 3),
        "gateway_cores": round(cpu / elapsed, 2),
        "errors": dict(driver.errors),
    }


# -- 3. firmware upload over SMP -------------------------------------------------------------
def bench_upload(baud: int | None, size: int = 256 * 1024) -> dict[str, Any]:
    return asyncio.run(_upload(baud, size))


async def _upload(baud: int | None, size: int) -> dict[str, Any]:
    from firmware_bridge.image import build_image
    from firmware_bridge.standalone import node_session
    from firmware_bridge.update import FirmwareUpdater, Phase, UpdateProgress, UpdateTimeouts
    from hil.devices.mcu_node import McuNodeSimulator
    from hil.devices.pty_link import PtyLink

    image = build_image((2, 0, 0), size)
    marks: dict[str, float] = {}
    readings = [0]

    def on_progress(p: UpdateProgress) -> None:
        marks.setdefault(str(p.phase), time.perf_counter())

    def sink(batch: SampleBatch) -> None:
        readings[0] += len(batch)

    line = PtyLink(baudrate=baud)
    async with McuNodeSimulator(node_id=NODE_ID, line=line, boot_time=0.2) as sim:
        config = McuNodeDeviceConfig.model_validate({
            "name": "node", "protocol": "mcu_node", "port": sim.serial_path,
            "node_id": NODE_ID, "baudrate": baud or 115200, "stale_after": "5s",
            "tags": [{"name": s.name, "sensor": s.name} for s in SENSORS],
        })
        async with node_session(config, sink) as driver:
            updater = FirmwareUpdater(driver, UpdateTimeouts(request=5.0), on_progress)
            readings[0] = 0
            t0 = time.perf_counter()
            result = await updater.run(image)
            total = time.perf_counter() - t0
    upload_s = marks[str(Phase.TEST)] - marks[str(Phase.CHECK)]  # state read + upload
    return {
        "baud": baud or "unpaced",
        "image_bytes": size,
        "outcome": str(result.outcome),
        "upload_s": round(upload_s, 2),
        "update_total_s": round(total, 2),
        "image_kib_per_s": round(size / 1024 / upload_s, 1),
        "smp_wire_bytes_per_image_byte": round(
            (updater.transport.bytes_out + updater.transport.bytes_in) / size, 3),
        "line_limit_s": round(updater.transport.bytes_out * 10 / baud, 2) if baud else None,
        "upload_requests": sim.smp.upload_requests,
        "readings_during_update": readings[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="window per measurement")
    parser.add_argument("--rate", type=float, default=None,
                        help="offered readings/s end to end (default: as fast as it goes)")
    parser.add_argument("--rounds", type=int, default=42, help="samples per sensor per frame")
    parser.add_argument("--baud", type=int, nargs="*", default=[115200, 921600],
                        help="paced line speeds for the firmware upload (plus one unpaced run)")
    parser.add_argument("--producer-fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help="JSON result file")
    args = parser.parse_args(argv)
    if args.producer_fd is not None:
        try:
            produce(args.producer_fd, args.rate, args.rounds)
        except (KeyboardInterrupt, OSError):
            return 0
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    run = Run("firmware_bridge", packages=("smpclient",))
    print(f"firmware_bridge: {load_note(run.load_at_start)} at the start")
    decode = bench_decode(min(args.seconds, 2.0))
    print(f"{'readings/frame':>14} {'bytes':>6} {'parsed':>7} {'frames/s':>10} "
          f"{'readings/s':>11} {'MB/s':>6}")
    for r in decode:
        print(f"{r['readings_per_frame']:>14} {r['frame_bytes']:>6} "
              f"{r['with_readings_parsed']!s:>7} {r['frames_per_s']:>10,} "
              f"{r['readings_per_s']:>11,} {r['mb_per_s']:>6}")
    e2e = [bench_end_to_end(args.seconds, args.rate, rounds, with_pipeline)
           for rounds in sorted({args.rounds, 5}) for with_pipeline in (False, True)]
    for r in e2e:
        stage = "driver + pipeline" if r["through_pipeline"] else "driver"
        print(f"pty -> {stage} ({r['readings_per_frame']} readings/frame, offered "
              f"{r['offered']}): {r['readings_per_s']:,} readings/s, {r['frames_per_s']:,} "
              f"frames/s, {r['gateway_cpu_ms_per_1000_readings']} ms CPU/1000 readings, "
              f"{r['gateway_cores']} cores, errors {r['errors'] or 'none'}")
    uploads = [bench_upload(baud) for baud in [*args.baud, None]]
    for r in uploads:
        line = f"{r['baud']} baud" if r["line_limit_s"] is not None else "an unpaced pty"
        print(f"SMP upload of {r['image_bytes'] // 1024} KiB at {line}: "
              f"{r['upload_s']} s upload ({r['image_kib_per_s']} KiB/s), "
              f"{r['update_total_s']} s with test/reset/confirm, "
              f"{r['smp_wire_bytes_per_image_byte']} wire bytes per image byte, "
              f"{r['readings_during_update']} readings meanwhile ({r['outcome']})")
    out = run.write({
        "parameters": {"seconds": args.seconds, "rate": args.rate, "rounds": args.rounds,
                       "baud": args.baud},
        "results": {"decode": decode, "end_to_end": e2e, "firmware_upload": uploads},
    }, args.out)  # fmt: skip
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
