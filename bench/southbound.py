"""Southbound benchmark: our Modbus and OPC UA drivers against the raw client libraries.

Both halves run against a simulator in a process of its own, with the client side
in this process, and compare like with like in the same run, interleaved
(ours, raw, raw, ours, ours, raw, ...) so that the noise of a shared machine
falls on both:

- **Modbus**: values/s read by :class:`~drivers.modbus.driver.ModbusTcpDriver`
  polling back to back (plan, requests, NumPy decode into a SampleBatch) against a
  raw pymodbus loop sending the same requests (the driver's own plan) to the same
  server and doing nothing with the answers (so the raw figure is a ceiling).
  The server is ``bench/modbus_bank_server.py`` (input registers, fresh on every read).
- **OPC UA**: data-change notifications/s delivered by
  :class:`~drivers.opcua.driver.OpcUaDriver` (as SampleBatches) against a raw
  asyncua subscription with the same items, sampling and publishing intervals and
  queue size, on the simulated PLC's scale option (``chenxing-hil sim opcua-plc
  --scale N --scale-rate R``). Two raw variants: ``raw`` counts the items of each
  publish response (asyncua's transport and decoding only: the ceiling) and
  ``raw-handler`` is asyncua's documented handler API (``datachange_notification``).

Each ratio is ours ÷ raw, of the medians and as the median of each round's pair
(judged against the goal, ≥ 0.9). CPU seconds of this process per 1,000 values
show what the client side costs. Writes JSON to
``bench/results/southbound-<timestamp>.json``. See bench/README.md.

    python -m bench.southbound [--seconds 5] [--rounds 3] [--only modbus|opcua]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from asyncua import Client, ua
from asyncua.common.subscription import Subscription
from pymodbus.client import AsyncModbusTcpClient

from bench.harness import (
    HOST,
    Child,
    Measurement,
    bench_arguments,
    not_good,
    paired_rounds,
    poll_driver,
    print_pairs,
    run_async_bench,
    self_cpu,
    start_hil_sim,
    start_modbus_bank,
    stop_modbus_bank,
    summarise_pairs,
    wait_modbus_bank,
)
from bench.modbus_bank_server import bank_layout
from drivers.modbus.config import ModbusTcpDeviceConfig
from drivers.modbus.driver import ModbusTcpDriver
from drivers.opcua.config import OpcUaDeviceConfig
from drivers.opcua.driver import OpcUaDriver, subscription_parameters
from gateway.errors import GatewayError
from gateway.types import SampleBatch

log = logging.getLogger("bench.southbound")

GOAL_RATIO = 0.9


# --------------------------------------------------------------------------------------
# Modbus
# --------------------------------------------------------------------------------------


def modbus_config(port: int, tags: int) -> ModbusTcpDeviceConfig:
    """A device reading every tag of a ``modbus_bank_server`` bank of ``tags`` values."""
    return ModbusTcpDeviceConfig.model_validate(
        {
            "name": "bank",
            "protocol": "modbus_tcp",
            "host": HOST,
            "port": port,
            "timeout": "2s",
            "poll_interval": "1ms",
            "tags": [
                {"name": t.name, "table": "input", "address": t.address, "type": t.type}
                for t in bank_layout(tags)
            ],
        }
    )


async def modbus_ours(config: ModbusTcpDeviceConfig, seconds: float) -> Measurement:
    driver = ModbusTcpDriver(config, list(range(len(config.tags))))
    await driver.connect()
    await driver.read(driver.poll_groups()[0])  # warm: plans built, connection up
    return await poll_driver(driver, seconds, len(driver.requests))


async def modbus_raw(config: ModbusTcpDeviceConfig, seconds: float) -> Measurement:
    """The driver's request plan sent by a bare pymodbus client; answers only checked."""
    plan = [
        (r.address, r.count, r.unit, len(r.members))
        for r in ModbusTcpDriver(config, list(range(len(config.tags)))).requests
    ]
    client = AsyncModbusTcpClient(HOST, port=config.port, timeout=2, retries=0, reconnect_delay=0)
    if not await client.connect():
        raise RuntimeError(f"raw pymodbus client cannot connect to port {config.port}")
    try:
        values = requests = 0
        cpu0, t0 = self_cpu(), time.perf_counter()
        end = t0 + seconds
        while time.perf_counter() < end:
            for address, count, unit, tags in plan:
                rr = await client.read_input_registers(address, count=count, device_id=unit)
                if rr.isError():
                    raise RuntimeError(f"raw read {address}+{count}: exception {rr}")
                values += tags
                requests += 1
        elapsed, cpu = time.perf_counter() - t0, self_cpu() - cpu0
    finally:
        client.close()
    return Measurement("raw", values, elapsed, cpu, requests)


# --------------------------------------------------------------------------------------
# OPC UA
# --------------------------------------------------------------------------------------


def start_plc(workdir: Path, variables: int, rate: float) -> tuple[Child, str]:
    """The simulated PLC with ``variables`` scale variables, in a process of its own."""
    # its first line names the endpoint; building 5,000 nodes takes a while on a busy machine
    child, match = start_hil_sim(
        "opcua-plc",
        ["opcua-plc", "--host", HOST, "--port", "0", "--scale", str(variables), "--scale-rate",
         f"{rate:g}"],
        workdir, r"(opc\.tcp://\S+)", timeout=120)  # fmt: skip
    return child, match.group(1)


def opcua_config(endpoint: str, variables: int, interval: float) -> OpcUaDeviceConfig:
    return OpcUaDeviceConfig.model_validate(
        {
            "name": "plc",
            "protocol": "opcua",
            "endpoint": endpoint,
            "publishing_interval": interval,
            "queue_size": 1,
            "timeout": "10s",
            "tags": [
                {"name": f"v{i:05d}", "node": f"ns=2;s=Scale.V{i:05d}", "type": "float64"}
                for i in range(variables)
            ],
        }
    )


class _Counter:
    def __init__(self) -> None:
        self.values = 0
        self.bad = 0

    def batch(self, batch: SampleBatch) -> None:
        self.values += len(batch.tag_ids)
        self.bad += not_good(batch.quality)


async def _window(counter: _Counter, warmup: float, seconds: float) -> tuple[int, float, float]:
    """Wait for the first notification and ``warmup``; count ``seconds`` of notifications."""
    deadline = time.monotonic() + 120
    while counter.values == 0:
        if time.monotonic() > deadline:
            raise RuntimeError("no notification within 120 s")
        await asyncio.sleep(0.05)
    await asyncio.sleep(warmup)
    start, cpu0, t0 = counter.values, self_cpu(), time.perf_counter()
    await asyncio.sleep(seconds)
    return counter.values - start, time.perf_counter() - t0, self_cpu() - cpu0


async def opcua_ours(config: OpcUaDeviceConfig, warmup: float, seconds: float) -> Measurement:
    driver = OpcUaDriver(config, list(range(len(config.tags))))
    counter = _Counter()
    await driver.connect()
    task = asyncio.create_task(driver.subscribe(counter.batch))
    try:
        bad0 = counter.bad
        values, elapsed, cpu = await _window(counter, warmup, seconds)
        if task.done():
            task.result()  # raises what stopped the subscription
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await driver.close()
    return Measurement("ours", values, elapsed, cpu, bad=counter.bad - bad0)


class _CountingSubscription(Subscription):
    """A raw asyncua subscription that only counts the items of each publish response."""

    def __init__(self, session: Any, params: ua.CreateSubscriptionParameters,
                 counter: _Counter) -> None:
        super().__init__(session, params, handler=None)
        self._counter = counter

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        self.last_publish_at = time.monotonic()
        message = publish_result.NotificationMessage
        if message.NotificationData:  # as the driver's subscription does (acknowledgements)
            self.last_sequence_number = int(message.SequenceNumber)
        for notification in message.NotificationData or ():
            if isinstance(notification, ua.DataChangeNotification):
                self._counter.values += len(notification.MonitoredItems)


class _CountingHandler:
    """asyncua's documented handler API."""

    def __init__(self, counter: _Counter) -> None:
        self._counter = counter

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        self._counter.values += 1


async def opcua_raw(config: OpcUaDeviceConfig, warmup: float, seconds: float,
                    handler_api: bool) -> Measurement:
    """The same monitored items on a bare asyncua client."""
    client = Client(config.endpoint, timeout=config.timeout)
    counter = _Counter()
    await client.connect()
    try:
        params = subscription_parameters(config)  # the driver's own
        sub: Subscription
        if handler_api:
            sub = await client.create_subscription(params, _CountingHandler(counter))
        else:
            sub = _CountingSubscription(client.uaclient.session, params, counter)
            await sub.init()
        nodes = [client.get_node(tag.node) for tag in config.tags]
        await sub.subscribe_data_change(
            nodes, queuesize=config.queue_size, sampling_interval=config.publishing_interval * 1000
        )
        values, elapsed, cpu = await _window(counter, warmup, seconds)
    finally:
        with contextlib.suppress(Exception):
            await client.disconnect()
    return Measurement("raw-handler" if handler_api else "raw", values, elapsed, cpu)


# --------------------------------------------------------------------------------------
# runs and report
# --------------------------------------------------------------------------------------


async def run_modbus(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    sim = start_modbus_bank("modbus-bank", args.modbus_tags, workdir)
    try:
        wait_modbus_bank(sim, time.monotonic() + 30)
        config = modbus_config(sim.port, args.modbus_tags)
        measurements = await paired_rounds(
            {
                "ours": lambda: modbus_ours(config, args.seconds),
                "raw": lambda: modbus_raw(config, args.seconds),
            },
            args.rounds,
        )
    finally:
        stop_modbus_bank(sim)
    summary = summarise_pairs(measurements)
    summary["setup"] = {
        "tags": args.modbus_tags,
        "requests_per_poll": len(ModbusTcpDriver(config, list(range(len(config.tags)))).requests),
        "server": "bench/modbus_bank_server.py (pymodbus SimDevice), own process",
        "simulator_served": sim.final_stats,
    }
    print_pairs(f"Modbus TCP: {args.modbus_tags:,} tags, polled back to back", "values/s",
                summary, GOAL_RATIO)
    return summary


async def run_opcua(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    plc, endpoint = start_plc(workdir, args.opcua_variables, args.opcua_rate)
    try:
        config = opcua_config(endpoint, args.opcua_variables, 1.0 / args.opcua_rate)
        warm, secs = args.warmup, args.seconds
        sides: dict[str, Callable[[], Awaitable[Measurement]]] = {
            "ours": lambda: opcua_ours(config, warm, secs),
            "raw": lambda: opcua_raw(config, warm, secs, handler_api=False),
        }
        if args.handler_api:
            sides["raw-handler"] = lambda: opcua_raw(config, warm, secs, handler_api=True)
        measurements = await paired_rounds(sides, args.rounds)
    finally:
        plc.stop(10)
    summary = summarise_pairs(measurements)
    summary["setup"] = {
        "variables": args.opcua_variables,
        "server_rate_hz": args.opcua_rate,
        "offered_changes_per_s": args.opcua_variables * args.opcua_rate,
        "publishing_and_sampling_interval_s": 1.0 / args.opcua_rate,
        "queue_size": 1,
        "server": "chenxing-hil sim opcua-plc --scale (asyncua server), own process",
    }
    print_pairs(f"OPC UA: {args.opcua_variables:,} variables at {args.opcua_rate:g} Hz "
           f"(offered {args.opcua_variables * args.opcua_rate:,.0f} changes/s)",
           "notifications/s", summary, GOAL_RATIO)
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=5.0, help="window per measurement")
    p.add_argument("--warmup", type=float, default=2.0, help="OPC UA: seconds before a window")
    p.add_argument("--rounds", type=int, default=3, help="measurements per side (median)")
    p.add_argument("--only", choices=("modbus", "opcua"), help="run one half only")
    p.add_argument("--modbus-tags", type=int, default=2500)
    p.add_argument("--opcua-variables", type=int, default=5000)
    p.add_argument("--opcua-rate", type=float, default=10.0, help="server updates/s (Hz)")
    p.add_argument("--handler-api", action="store_true",
                   help="OPC UA: also measure asyncua's handler API (slow: a task per change)")
    args = bench_arguments(p).parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0:
        p.error("--rounds must be >= 1 and --seconds > 0")
    return args


async def _main(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Both halves; a half that fails (a device error) is said and recorded under
    ``failed``, and the other half still runs."""
    result: dict[str, Any] = {"goal_ratio": GOAL_RATIO, "failed": []}
    halves = {"modbus": run_modbus, "opcua": run_opcua}
    for half, measure in halves.items():
        if args.only not in (None, half):
            continue
        try:
            result[half] = await measure(args, workdir)
        except GatewayError as exc:
            print(f"\n{half}: failed: {exc}")
            result["failed"].append(f"{half}: {exc}")
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_async_bench("southbound", args, lambda workdir: _main(args, workdir),
                           packages=("pymodbus", "asyncua"), quiet=("asyncua", "pymodbus"))


if __name__ == "__main__":
    sys.exit(main())
