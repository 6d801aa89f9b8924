"""Live config changes: one device changed while the others publish, an automatic rollback,
and one tag edited in a 10,000-tag config.

The gateway runs in this process (``gateway.runtime.gateway.Gateway``, as ``chenxing-gateway
run`` builds it) with the JSON contract, a real Mosquitto and simulated Modbus TCP devices
(``bench/modbus_bank_server.py``, one process each). Changes go through
``Gateway.live.apply(text, author, expected_version)``, the entry point of the config API
and the brain's ``config/apply``; every figure is measured from that call.

1. **one device**: D devices of T tags each, polled every P s; each round changes one tag
   of device 0 (its scale, so device 0 restarts) and applies. Figures: seconds from the call
   to the result (the device is up again with a good value read and the births confirmed);
   on the other devices, whether every poll reached the broker (samples received of a probe
   tag = polls made, counted after a clean stop) and the largest interval between two of
   their samples, as a multiple of the poll interval.
2. **rollback**: each round adds a device on a port where nothing listens, with the connect
   test off, so it cannot come up; the gateway rolls the change back by itself. Figure: how
   long after the watch time ran out the rollback was complete.
3. **10k tags**: 4 devices of 2,500 tags (1 s poll); each round changes the scale of one
   tag. Figure: seconds from the call to the result, with the stages.

Targets (issue 16): (1) <= 2 s with no sample gap elsewhere, (2) <= 2 s, (3) <= 1 s.

    python -m bench.config_apply [--rounds 5] [--only one-device,rollback,10k]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from bench.harness import (
    HOST,
    BenchBroker,
    Child,
    Run,
    load_note,
    start_modbus_bank,
    stop_modbus_bank,
    wait_modbus_bank,
)
from bench.modbus_bank_server import bank_layout
from gateway.config.loader import load_config_file
from gateway.runtime.config_apply import ApplyResult
from gateway.runtime.gateway import Gateway
from hil.netutil import free_port

log = logging.getLogger("bench.config_apply")

SCENARIOS = ("one-device", "rollback", "10k")


class ProbeSubscriber:
    """Counts the samples of a few tags (and their timestamps) in the JSON data messages."""

    def __init__(self, port: int, tags: set[str]) -> None:
        self.tags = tags
        self.stamps: dict[str, list[int]] = {t: [] for t in tags}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"bench-probe-{time.time_ns()}")
        self._client.on_connect = lambda c, *a: c.subscribe("chenxing/v1/+/+/+/data", qos=1)
        self._client.on_subscribe = lambda *a: self._ready.set()
        self._client.on_message = self._on_message
        self._client.connect(HOST, port)
        self._client.loop_start()
        if not self._ready.wait(10):
            raise RuntimeError("the probe subscriber could not subscribe")

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        samples = json.loads(msg.payload)["samples"]
        with self._lock:
            for tag, ts in zip(samples["tag"], samples["ts"], strict=True):
                if tag in self.tags:
                    self.stamps[tag].append(ts)

    def snapshot(self) -> dict[str, list[int]]:
        with self._lock:
            return {t: list(s) for t, s in self.stamps.items()}

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def device_body(name: str, port: int, tags: int, poll: float) -> dict[str, Any]:
    return {
        "name": name, "protocol": "modbus_tcp", "host": HOST, "port": port,
        "poll_interval": poll, "timeout": "2s",
        "tags": [{"name": t.name, "table": "input", "address": t.address, "type": t.type}
                 for t in bank_layout(tags)],
    }


def gateway_body(workdir: Path, broker_port: int, devices: list[dict[str, Any]],
                 watch: float) -> dict[str, Any]:
    return {
        "gateway": {"id": "bench-live", "site": "bench", "line": "l1",
                    "state_dir": str(workdir / "state")},
        "devices": devices,
        "northbound": {"format": "json", "publish_interval": "100ms",
                       "max_samples_per_message": 5000,
                       "mqtt": {"host": HOST, "port": broker_port}},
        "http": {"enabled": False},
        "management": {"watch": watch},
    }


@contextlib.contextmanager
def banks(workdir: Path, sizes: list[int]) -> Iterator[list[Child]]:
    children = [start_modbus_bank(f"bank{i}", n, workdir) for i, n in enumerate(sizes)]
    try:
        deadline = time.monotonic() + 30
        for child in children:
            wait_modbus_bank(child, deadline)
        yield children
    finally:
        for child in children:
            stop_modbus_bank(child)


async def start_gateway(path: Path) -> tuple[Gateway, asyncio.Event, asyncio.Task[Any]]:
    document = load_config_file(path)
    gateway = Gateway(document.config, path.parent, path, document=document)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    started = asyncio.create_task(gateway.started.wait())
    await asyncio.wait([started, task], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    started.cancel()
    return gateway, stop, task


async def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.05)


def dump(body: dict[str, Any]) -> str:
    return yaml.safe_dump(body, sort_keys=False)


def check(result: ApplyResult, outcome: str) -> None:
    if result.outcome != outcome:
        raise RuntimeError(f"expected {outcome}: {result.describe()}")


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3)}


async def one_device(workdir: Path, broker: BenchBroker, rounds: int, devices: int,
                     tags: int, poll: float) -> dict[str, Any]:
    with banks(workdir, [tags] * devices) as children:
        body = gateway_body(workdir, broker.port, [
            device_body(f"dev{i}", c.port, tags, poll) for i, c in enumerate(children)], 10.0)
        path = workdir / "one-device.yaml"
        path.write_text(dump(body))
        probes = {f"dev{i}.t00000" for i in range(1, devices)}
        sub = ProbeSubscriber(broker.port, probes)
        gateway, stop, task = await start_gateway(path)
        try:
            await wait_for(lambda: all(r.delivering for r in gateway.runners.values()), 30,
                           "every device up")
            steady = {n: r for n, r in gateway.runners.items() if n != "dev0"}
            results = []
            windows: list[tuple[int, int]] = []  # ms: each apply, from the call to the result
            for round_no in range(rounds):
                await asyncio.sleep(2 * poll)
                body["devices"][0]["tags"][1]["scale"] = 1.0 + (round_no + 1) * 0.5
                version = gateway.live.version
                text = await asyncio.to_thread(dump, body)  # as an API request brings it
                called = time.time_ns() // 1_000_000
                result = await gateway.live.apply(text, "bench", version)
                windows.append((called, time.time_ns() // 1_000_000))
                check(result, "applied")
                results.append(result)
                log.info("round %d: %.3f s %s", round_no, result.seconds, result.stages)
            await asyncio.sleep(2 * poll)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            await asyncio.sleep(0.5)  # the last messages reach the probe
            sub.close()
        stamps = sub.snapshot()
        gaps: dict[str, dict[str, float]] = {}
        lost = {}
        for name, runner in steady.items():
            got = stamps[f"{name}.t00000"]
            lost[name] = runner.stats.polls - len(got)
            during, outside = 0, 0
            for a, b in itertools.pairwise(got):
                spans = any(a <= end and b >= called for called, end in windows)
                if spans:
                    during = max(during, b - a)
                else:
                    outside = max(outside, b - a)
            gaps[name] = {"during_applies": round(during / 1000 / poll, 2),
                          "otherwise": round(outside / 1000 / poll, 2),
                          "overruns": runner.stats.overruns}
        restarts = {n: r.stats.connects - 1 for n, r in steady.items()}
    return {
        "devices": devices, "tags_per_device": tags, "poll_interval_s": poll,
        "apply_s": summary([r.seconds for r in results]),
        "stages_median_s": median_stages(results),
        "other_devices": {"polls_not_published": lost,
                          "largest_interval_in_poll_intervals": gaps,
                          "restarts": restarts},
        "target_s": 2.0,
    }


async def rollback(workdir: Path, broker: BenchBroker, rounds: int, watch: float,
                   tags: int, poll: float) -> dict[str, Any]:
    with banks(workdir, [tags]) as children:
        body = gateway_body(workdir, broker.port, [device_body("dev0", children[0].port, tags,
                                                               poll)], watch)
        path = workdir / "rollback.yaml"
        path.write_text(dump(body))
        gateway, stop, task = await start_gateway(path)
        after_watch = []
        results = []
        try:
            await wait_for(lambda: all(r.delivering for r in gateway.runners.values()), 30,
                           "every device up")
            for _ in range(rounds):
                changed = json.loads(json.dumps(body))
                changed["management"]["connect_test"] = False
                changed["devices"].append(device_body("ghost", free_port(), 4, poll))
                text = await asyncio.to_thread(dump, changed)
                result = await gateway.live.apply(text, "bench", gateway.live.version)
                check(result, "rolled_back")
                results.append(result)
                # from the end of the watch time to the rollback complete
                after_watch.append(result.stages["watch"] - watch + result.stages["rollback"])
                log.info("rollback: %.3f s after the watch (%s)", after_watch[-1],
                         result.stages)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
    return {"watch_s": watch, "complete_after_watch_s": summary(after_watch),
            "apply_s": summary([r.seconds for r in results]),
            "stages_median_s": median_stages(results), "target_s": 2.0}


async def ten_k(workdir: Path, broker: BenchBroker, rounds: int) -> dict[str, Any]:
    sizes = [2500] * 4
    with banks(workdir, sizes) as children:
        body = gateway_body(workdir, broker.port, [
            device_body(f"dev{i}", c.port, n, 1.0)
            for i, (c, n) in enumerate(zip(children, sizes, strict=True))], 10.0)
        path = workdir / "10k.yaml"
        path.write_text(dump(body))
        gateway, stop, task = await start_gateway(path)
        results = []
        try:
            await wait_for(lambda: all(r.delivering for r in gateway.runners.values()), 60,
                           "every device up")
            for round_no in range(rounds):
                await asyncio.sleep(1.0)
                body["devices"][2]["tags"][1234]["scale"] = 1.0 + (round_no + 1) * 0.5
                text = await asyncio.to_thread(dump, body)
                result = await gateway.live.apply(text, "bench", gateway.live.version)
                check(result, "applied")
                results.append(result)
                log.info("10k round %d: %.3f s %s", round_no, result.seconds, result.stages)
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)
    return {"tags": sum(sizes), "devices": len(sizes),
            "apply_s": summary([r.seconds for r in results]),
            "stages_median_s": median_stages(results), "target_s": 1.0}


def median_stages(results: list[ApplyResult]) -> dict[str, float]:
    names = dict.fromkeys(k for r in results for k in r.stages)
    return {k: round(statistics.median(r.stages.get(k, 0.0) for r in results), 3)
            for k in names}


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        workdir = Path(tmp)
        broker = BenchBroker().start()
        try:
            if "one-device" in args.only:
                out["one_device"] = await one_device(workdir, broker, args.rounds, args.devices,
                                                     args.tags, args.poll)
            if "rollback" in args.only:
                out["rollback"] = await rollback(workdir, broker, args.rounds, args.watch,
                                                 args.tags, args.poll)
            if "10k" in args.only:
                out["ten_k"] = await ten_k(workdir, broker, args.rounds)
        finally:
            broker.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help=f"scenarios, comma-separated: {', '.join(SCENARIOS)}")
    parser.add_argument("--devices", type=int, default=4, help="one-device: devices")
    parser.add_argument("--tags", type=int, default=200, help="tags per device (1, 2)")
    parser.add_argument("--poll", type=float, default=0.1, help="poll interval (1, 2), s")
    parser.add_argument("--watch", type=float, default=2.0, help="rollback: the watch time, s")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run = Run("config_apply", packages=("pydantic", "pymodbus", "PyYAML"))
    print(f"config_apply bench, {load_note(run.load_at_start)}", file=sys.stderr)
    body = asyncio.run(run_all(args))
    path = run.write({"rounds": args.rounds, **body})
    print(json.dumps(body, indent=1))
    print(f"result: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
