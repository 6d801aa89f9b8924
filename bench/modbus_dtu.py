"""Modbus RTU over TCP and through a 4G DTU: our drivers against bare loops on the same
simulator.

The simulator is ``bench/modbus_bank_server.py --framer rtu`` (pymodbus's TCP server with
its RTU framer: a line of meters behind a serial device server, a bank of input
registers fresh on every read) in a process of its own; for the DTU path a DTU
(``chenxing-hil sim dtu --line``, its own process) dials the bench's listening port,
registers, and relays to the same bank. The bench process runs, interleaved (ours, raw,
raw, ours, ...) so that the noise of a shared machine falls on both:

- **rtu_over_tcp**: :class:`~drivers.modbus.driver.ModbusRtuOverTcpDriver` polling all
  tags back to back, against a bare pymodbus ``AsyncModbusTcpClient(framer=RTU)`` sending
  the same reads (the driver's own plan) and doing nothing with the answers;
- **dtu**: :class:`~drivers.modbus.driver.ModbusDtuDriver` (the listener, the DTU's
  registration, the stream reader that drops heartbeats) against a bare pymodbus loop
  (pymodbus's clients cannot take a connection the gateway accepted): it accepts the
  DTU's connection on the same port, skips its registration packet, then for each of
  the same reads builds the request with pymodbus (PDU, ``FramerRTU``), reads the answer
  by its known length and has pymodbus's framer check and decode it
  (``FramerRTU.handleFrame``), doing nothing with the values. For reference, the same
  loop without pymodbus (prebuilt frames, the registers taken as a NumPy view, no CRC
  check) is printed as ``bytes``: the ceiling of a loop on this socket.

Values/s = tags x polls / seconds. The ratio is ours / raw, the median of each round's
pair, judged against the goal (>= 0.9). Writes JSON to
``bench/results/modbus_dtu-<time>.json``.

    python -m bench.modbus_dtu [--tags 2500] [--seconds 3] [--rounds 3]
                               [--path rtu_over_tcp dtu]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from modbus_bank_server import bank_layout

from drivers.modbus.config import ModbusDtuDeviceConfig, ModbusRtuOverTcpDeviceConfig
from drivers.modbus.driver import (
    ModbusDriver,
    ModbusDtuDriver,
    ModbusRtuOverTcpDriver,
)
from drivers.modbus.planner import ReadRequest
from gateway.listen_ports import ListenPorts
from hil.netutil import free_port

GOAL_RATIO = 0.9
RESULTS_DIR = Path(__file__).resolve().parent / "results"
REGISTRATION = b"DTU-BENCH"


def tags(count: int) -> list[dict[str, Any]]:
    return [{"name": t.name, "table": "input", "address": t.address, "type": t.type}
            for t in bank_layout(count)]


def server_config(port: int, count: int) -> ModbusRtuOverTcpDeviceConfig:
    return ModbusRtuOverTcpDeviceConfig.model_validate({
        "name": "bench", "protocol": "modbus_rtu_over_tcp", "host": "127.0.0.1",
        "port": port, "timeout": "2s", "retries": 0, "tags": tags(count)})


def dtu_config(listen: int, count: int) -> ModbusDtuDeviceConfig:
    return ModbusDtuDeviceConfig.model_validate({
        "name": "bench", "protocol": "modbus_dtu", "listen_host": "127.0.0.1",
        "listen_port": listen, "registration_packet": {"ascii": REGISTRATION.decode()},
        "heartbeat_packet": {"ascii": "HB"}, "timeout": "2s", "retries": 0,
        "dial_in_timeout": "10s", "tags": tags(count)})


async def poll(driver: ModbusDriver, seconds: float) -> tuple[float, float]:
    """(values/s, CPU µs a poll) of ``driver`` polling back to back."""
    groups = driver.poll_groups()
    polls, began, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - began < seconds:
        for group in groups:
            await driver.read(group)
        polls += 1
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    assert not driver.errors, driver.errors
    return polls * len(driver.tag_ids) / elapsed, cpu / polls * 1e6


async def ours_server(config: ModbusRtuOverTcpDeviceConfig, seconds: float
                      ) -> tuple[float, float]:
    driver = ModbusRtuOverTcpDriver(config, list(range(len(config.tags))))
    await driver.connect()
    try:
        return await poll(driver, seconds)
    finally:
        await driver.close()


async def raw_server(config: ModbusRtuOverTcpDeviceConfig, seconds: float,
                     requests: tuple[ReadRequest, ...]) -> tuple[float, float]:
    from pymodbus.client import AsyncModbusTcpClient
    from pymodbus.framer import FramerType

    client = AsyncModbusTcpClient(config.host, port=config.port, framer=FramerType.RTU,
                                  timeout=2, retries=0)
    await client.connect()
    try:
        polls, began, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - began < seconds:
            for r in requests:
                await client.read_input_registers(r.address, count=r.count, device_id=r.unit)
            polls += 1
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    finally:
        client.close()
    return polls * len(config.tags) / elapsed, cpu / polls * 1e6


async def ours_dtu(config: ModbusDtuDeviceConfig, seconds: float) -> tuple[float, float]:
    ports = ListenPorts(linger=0)
    driver = ModbusDtuDriver(config, list(range(len(config.tags))), ports)
    await driver.connect()
    try:
        return await poll(driver, seconds)
    finally:
        await driver.close()
        ports.close()


async def raw_dtu(config: ModbusDtuDeviceConfig, seconds: float,
                  requests: tuple[ReadRequest, ...], bare_bytes: bool = False
                  ) -> tuple[float, float]:
    """The bare pymodbus loop: accept the DTU, skip its registration, then per read build
    the request and check and decode the answer with pymodbus (``bare_bytes``: prebuilt
    frames, the registers as a NumPy view, no pymodbus)."""
    from pymodbus.framer.rtu import FramerRTU
    from pymodbus.pdu import DecodePDU
    from pymodbus.pdu.register_message import ReadInputRegistersRequest

    framer = FramerRTU(DecodePDU(is_server=False))
    frames = []
    for r in requests:
        pdu = ReadInputRegistersRequest(address=r.address, count=r.count, dev_id=r.unit)
        frames.append((framer.buildFrame(pdu), 5 + 2 * r.count, r))
    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = \
        asyncio.get_running_loop().create_future()

    def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not accepted.done():
            accepted.set_result((reader, writer))

    server = await asyncio.start_server(on_connect, config.listen_host, config.listen_port,
                                        reuse_address=True)
    try:
        reader, writer = await asyncio.wait_for(accepted, 10)
        await reader.readexactly(len(REGISTRATION))
        polls, began, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - began < seconds:
            for frame, length, r in frames:
                if bare_bytes:
                    writer.write(frame)
                    np.frombuffer(await reader.readexactly(length), ">u2", r.count, 3)
                    continue
                writer.write(framer.buildFrame(ReadInputRegistersRequest(
                    address=r.address, count=r.count, dev_id=r.unit)))
                _, answer = framer.handleFrame(await reader.readexactly(length), r.unit, 0)
                assert answer is not None and len(answer.registers) == r.count
            polls += 1
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
    return polls * len(config.tags) / elapsed, cpu / polls * 1e6


def start(args: list[str], ready: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if ready not in line:
        proc.kill()
        raise SystemExit(f"{args[1]} did not start: {line!r}")
    return proc, line


async def run(args: argparse.Namespace) -> dict[str, Any]:
    bank, line = start([str(Path(__file__).with_name("modbus_bank_server.py")), "--tags",
                        str(args.tags), "--framer", "rtu"], "READY")
    port = int(line.split()[1])
    listen = free_port()
    dtu, _ = start(["-m", "hil.cli", "--log-level", "warning", "sim", "dtu", "--gateway",
                    f"127.0.0.1:{listen}", "--registration", REGISTRATION.decode(),
                    "--heartbeat-interval", "3600", "--line", f"127.0.0.1:{port}"],
                   "dtu dialling")
    results: dict[str, Any] = {}
    try:
        for path in args.path:
            if path == "rtu_over_tcp":
                config: Any = server_config(port, args.tags)
                requests = ModbusRtuOverTcpDriver(config, list(range(args.tags))).requests
                mine, bare = ours_server, raw_server
            else:
                config = dtu_config(listen, args.tags)
                requests = ModbusDtuDriver(config, list(range(args.tags))).requests
                mine, bare = ours_dtu, raw_dtu
            rounds = []
            for i in range(args.rounds):
                order = ["ours", "raw"] if i % 2 == 0 else ["raw", "ours"]
                if path == "dtu":
                    order.append("bytes")
                figures: dict[str, float] = {}
                for who in order:
                    if who == "ours":
                        rate, cpu = await mine(config, args.seconds)
                    elif who == "raw":
                        rate, cpu = await bare(config, args.seconds, requests)
                    else:
                        rate, cpu = await raw_dtu(config, args.seconds, requests, True)
                    figures[who], figures[f"{who}_cpu_us_per_poll"] = rate, cpu
                rounds.append(figures)
                extra = (f", bytes {figures['bytes']:,.0f} ({figures['bytes_cpu_us_per_poll']:.0f}"
                         " us)" if "bytes" in figures else "")
                print(f"{path} round {i + 1}: ours {figures['ours']:,.0f} values/s "
                      f"({figures['ours_cpu_us_per_poll']:.0f} us CPU a poll), raw "
                      f"{figures['raw']:,.0f} values/s ({figures['raw_cpu_us_per_poll']:.0f} "
                      f"us){extra}, ratio {figures['ours'] / figures['raw']:.3f}")
            ratio = statistics.median(r["ours"] / r["raw"] for r in rounds)
            results[path] = {
                "requests_per_poll": len(requests), "rounds": rounds, "ratio": ratio,
                "ours_median": statistics.median(r["ours"] for r in rounds),
                "raw_median": statistics.median(r["raw"] for r in rounds),
                "meets_goal": ratio >= GOAL_RATIO}
            print(f"{path}: {args.tags} tags in {len(requests)} requests a poll; median ratio "
                  f"{ratio:.3f} (goal >= {GOAL_RATIO})")
    finally:
        for proc in (dtu, bank):
            proc.terminate()
            proc.wait(10)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tags", type=int, default=2500)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--path", nargs="+", choices=["rtu_over_tcp", "dtu"],
                        default=["rtu_over_tcp", "dtu"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    print(f"load average before: {' '.join(load)} ({os.cpu_count()} CPUs)")
    results = asyncio.run(run(args))
    out = args.out or RESULTS_DIR / f"modbus_dtu-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k != "out"},
                               "loadavg_before": load, "results": results}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
