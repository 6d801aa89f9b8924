"""Scale: devices x tags x poll period through the whole gateway, every value checked.

The workload of issue 21: D simulated Modbus TCP devices of T float32 tags each
(``bench/modbus_fleet_server.py``, several devices per process, one port each), polled
every P by one gateway (``chenxing-gateway run``, JSON contract), through a real
Mosquitto to a subscriber in this process. Each value carries the time the simulator
wrote it and the index of its register, so the subscriber checks every value and takes
its age from the simulator's write time, not from the gateway's clock. ::

    python -m bench.scale --devices 2000 --tags 100 --poll 1.0     # 200,000 tags at 1 s
    python -m bench.scale --devices 200 --tags 100 --poll 0.1      # 200,000 values/s
    python -m bench.scale --devices 100 --tags 1000 --poll 10      # 100,000 tags, start-up

Figures (bench/README.md says what each means): config validation time (``validate``),
start-up to the first data message, RSS (steady, peak, after ``--reloads`` SIGHUPs),
CPU of each process, values received and missing in the window, value age p50/p99/max,
skipped polls, garbage-collector pauses and event-loop stalls (the gateway's
``/metrics``), births, and SIGTERM to the death message and to the exit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.harness import (
    HOST,
    BenchBroker,
    Child,
    CpuProbe,
    Run,
    load_note,
    percentiles,
    proc_status_kib,
    proc_times,
    sigterm_as_interrupt,
    spawn,
)
from bench.modbus_fleet_server import decode

log = logging.getLogger("bench.scale")


TOPIC_ROOT = "bench/v1"
SITE = "bench"
GATEWAY_ID = "scale-gw"
#: devices served by one simulator process
DEVICES_PER_SIMULATOR = 250


@dataclass(slots=True)
class Params:
    devices: int = 100
    tags: int = 100
    poll: float = 1.0
    seconds: float = 30.0
    warmup: float = 10.0
    publish_interval: float | None = None
    reloads: int = 0
    per_simulator: int = DEVICES_PER_SIMULATOR
    http: bool = True

    @property
    def total_tags(self) -> int:
        return self.devices * self.tags


# --------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------


def gateway_config(workdir: Path, broker_port: int, ports: list[int], params: Params) -> str:
    """One ``modbus_tcp`` device per simulated device, T float32 input-register tags each,
    every tag written out in block style as a plant's file has them (written as text:
    PyYAML's emitter takes minutes for 200,000 tags)."""
    lines = [
        "gateway:",
        f"  id: {GATEWAY_ID}",
        f"  site: {SITE}",
        "  line: line-1",
        "  description: bench/scale.py",
        f"  state_dir: {workdir / 'state'}",
        "northbound:",
        "  format: json",
        f"  topic_root: {TOPIC_ROOT}",
        "  mqtt:",
        f"    host: {HOST}",
        f"    port: {broker_port}",
    ]
    if params.publish_interval is not None:
        lines.append(f"  publish_interval: {params.publish_interval}")
    lines += ["http:", f"  enabled: {str(params.http).lower()}", f"  bind: {HOST}", "  port: 0",
              "logging:", "  level: INFO", "devices:"]  # fmt: skip
    tags = "".join(f"      - name: t{i:05d}\n        table: input\n        address: {2 * i}\n"
                   "        type: float32\n" for i in range(params.tags))  # fmt: skip
    head = "\n".join(lines) + "\n"
    return head + "".join(
        f"  - name: d{d:04d}\n    protocol: modbus_tcp\n    host: {HOST}\n    port: {port}\n"
        f"    poll_interval: {params.poll}\n    timeout: 2.0\n    tags:\n{tags}"
        for d, port in enumerate(ports))


# --------------------------------------------------------------------------------------
# the gateway's /metrics, with labels
# --------------------------------------------------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(port: int | None) -> list[tuple[str, dict[str, str], float]]:
    if port is None:
        return []
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    except OSError as exc:
        log.warning("cannot scrape the gateway's metrics: %s", exc)
        return []
    out = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            out.append((match[1], dict(_LABEL.findall(match[2] or "")), float(match[3])))
    return out


def total(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(v for n, lab, v in samples
               if n == name and all(lab.get(k) == x for k, x in labels.items()))  # fmt: skip


def pauses_over(samples: list[tuple[str, dict[str, str], float]], family: str,
                bound: str) -> float:  # fmt: skip
    """Pauses longer than ``bound`` s in a pause histogram (all its label sets)."""
    return (total(samples, f"{family}_bucket", le="+Inf")
            - total(samples, f"{family}_bucket", le=bound))  # fmt: skip


# --------------------------------------------------------------------------------------
# subscriber
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Received:
    """What the subscriber saw of the window's values, and everything else."""

    received: np.ndarray  # per tag: values written inside the window and received
    ages: list[np.ndarray] = field(default_factory=list)
    #: per value of the window: the simulator's write time - the gateway's read time (the
    #: request on its way to the device), and the message's encoding time - the read time
    #: (the gateway's pipeline and gathering); per message: receipt - its encoding time
    #: (spool, sender, broker, this subscriber)
    read_ms: list[np.ndarray] = field(default_factory=list)
    to_encode_ms: list[np.ndarray] = field(default_factory=list)
    transit_ms: list[np.ndarray] = field(default_factory=list)
    samples: int = 0
    not_good: int = 0
    wrong_values: int = 0
    before_read: int = 0
    data_messages: int = 0
    seq_gaps: int = 0
    births: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    birth_bytes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    first_data: float | None = None  # monotonic
    death_at: float | None = None  # monotonic, the first death after SIGTERM was sent


class Subscriber:
    """Subscribes to the gateway's topics; checks and counts every value of every message."""

    def __init__(self, port: int, params: Params) -> None:
        self.params = params
        self.index = {f"d{d:04d}.t{i:05d}": d * params.tags + i
                      for d in range(params.devices) for i in range(params.tags)}  # fmt: skip
        self.got = Received(np.zeros(params.total_tags, np.int32))
        self.window_ms = (math.inf, math.inf)
        self.watch_death = False
        self._last_seq: int | None = None
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._first = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"scale-{os.getpid()}")
        self._client.on_connect = lambda c, *_: c.subscribe(f"{TOPIC_ROOT}/#", qos=1)
        self._client.on_subscribe = lambda *_: self._ready.set()
        self._client.on_message = self._on_message
        self._client.connect(HOST, port)
        self._client.loop_start()
        if not self._ready.wait(10):
            raise RuntimeError("the subscriber could not subscribe")

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        received_ms = time.time_ns() / 1e6
        kind = msg.topic[len(TOPIC_ROOT) + 1:].split("/")[3]  # site/line/gateway/kind[/device]
        if kind != "data":
            with self._lock:
                self.got.births[kind] += 1
                self.got.birth_bytes[kind] += len(msg.payload)
                if kind == "death" and self.watch_death and self.got.death_at is None:
                    self.got.death_at = time.monotonic()
            return
        body = json.loads(msg.payload)
        s = body["samples"]
        index = self.index
        tag = np.fromiter((index[t] for t in s["tag"]), np.int64, len(s["tag"]))
        values = np.array(s["value"], dtype=np.float64)
        read_ms = np.array(s["ts"], dtype=np.float64)
        good = np.array([q == "good" for q in s["q"]], dtype=bool)
        ok, written = decode(values, tag % self.params.tags, received_ms)
        w0, w1 = self.window_ms
        with self._lock:
            got = self.got
            if got.first_data is None:
                got.first_data = time.monotonic()
                self._first.set()
            seq = int(body["seq"])
            if self._last_seq is not None and seq != self._last_seq + 1:
                got.seq_gaps += 1
            self._last_seq = seq
            got.data_messages += 1
            got.samples += len(tag)
            got.not_good += int((~good).sum())
            got.wrong_values += int((good & ~ok).sum())
            got.before_read += int((good & ok & (written < read_ms - 1)).sum())
            inside = good & ok & (written >= w0) & (written < w1)
            np.add.at(got.received, tag[inside], 1)
            got.ages.append(received_ms - written[inside])
            if inside.any():
                encoded_ms = float(body["ts"])
                got.read_ms.append(written[inside] - read_ms[inside])
                got.to_encode_ms.append(encoded_ms - read_ms[inside])
                got.transit_ms.append(np.array([received_ms - encoded_ms]))

    def wait_first_data(self, timeout: float) -> bool:
        return self._first.wait(timeout)

    def stop(self) -> None:
        self._client.loop_stop()
        with contextlib.suppress(Exception):
            self._client.disconnect()


# --------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------


def start_simulators(params: Params, workdir: Path) -> tuple[list[Child], list[int]]:
    script = str(Path(__file__).resolve().parent / "modbus_fleet_server.py")
    sims, ports = [], []
    left = params.devices
    while left:
        n = min(left, params.per_simulator)
        name = f"sim-{len(sims)}"
        sims.append(spawn(name, [sys.executable, script, "--devices", str(n), "--tags",
                                 str(params.tags), "--host", HOST],
                          workdir / f"{name}.log", stdout_pipe=True))  # fmt: skip
        left -= n
    for sim in sims:
        line = sim.read_line(120)
        if not line.startswith("READY "):
            raise RuntimeError(f"{sim.name} said {line!r}")
        ports.extend(int(p) for p in line.split()[1:])
    return sims, ports


def time_validate(config_path: Path) -> tuple[float, float, str]:
    """Wall and CPU seconds (user + system) of ``chenxing-gateway validate``, its output."""
    started = time.monotonic()
    before = os.times()
    done = subprocess.run([sys.executable, "-m", "gateway.cli.main", "validate", "-c",
                           str(config_path)], capture_output=True, text=True)  # fmt: skip
    after = os.times()
    cpu = (after.children_user - before.children_user
           + after.children_system - before.children_system)
    return time.monotonic() - started, cpu, (done.stdout + done.stderr).strip()


def wait_log(child: Child, pattern: str, timeout: float) -> re.Match[str] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(pattern, child.log_tail(1_000_000))
        if match:
            return match
        if not child.alive():
            return None
        time.sleep(0.1)
    return None


def run(params: Params, keep: bool) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="chenxing-scale-"))
    broker = BenchBroker()
    sims: list[Child] = []
    gateway: Child | None = None
    subscriber: Subscriber | None = None
    out: dict[str, Any] = {"params": asdict(params)}
    try:
        broker.start()
        assert broker.pid is not None
        sims, ports = start_simulators(params, workdir)
        log.info("%d devices on %d simulator processes", len(ports), len(sims))
        config_path = workdir / "gateway.yaml"
        config_path.write_text(gateway_config(workdir, broker.port, ports, params),
                               encoding="utf-8")
        out["config_bytes"] = config_path.stat().st_size
        out["validate_s"], out["validate_cpu_s"], out["validate_output"] = \
            time_validate(config_path)
        log.info("validate: %.2f s, %.2f s of CPU (%s)", out["validate_s"],
                 out["validate_cpu_s"], out["validate_output"])

        subscriber = Subscriber(broker.port, params)
        started = time.monotonic()
        gateway = spawn("gateway", [sys.executable, "-m", "gateway.cli.main", "run", "-c",
                                    str(config_path)], workdir / "gateway.log")  # fmt: skip
        while not subscriber.wait_first_data(0.2):
            if not gateway.alive():
                raise RuntimeError(f"the gateway exited:\n{gateway.log_tail()}")
            if time.monotonic() - started > 300:
                raise RuntimeError(f"no data within 300 s:\n{gateway.log_tail()}")
        assert subscriber.got.first_data is not None
        out["startup_to_first_data_s"] = subscriber.got.first_data - started
        out["startup_cpu_s"] = proc_times(gateway.pid).cpu  # by the gateway, to first data
        out["rss_at_first_data_mib"] = (proc_status_kib(gateway.pid, "VmRSS") or 0) / 1024
        log.info("first data after %.2f s", out["startup_to_first_data_s"])
        api = wait_log(gateway, r"local API on http://[^:]+:(\d+)", 30) if params.http else None
        http_port = int(api[1]) if api else None
        time.sleep(params.warmup)

        pids = {"gateway": gateway.pid, "broker": broker.pid, "subscriber": os.getpid()}
        pids.update({s.name: s.pid for s in sims})
        probe = CpuProbe(pids)
        before = scrape(http_port)
        probe.begin()
        w0 = time.time_ns() / 1e6
        subscriber.window_ms = (w0, w0 + params.seconds * 1000)
        time.sleep(params.seconds)
        wall, times, machine_cores = probe.end()
        after = scrape(http_port)
        out["rss_mib"] = (proc_status_kib(gateway.pid, "VmRSS") or 0) / 1024
        out["rss_peak_mib"] = (proc_status_kib(gateway.pid, "VmHWM") or 0) / 1024
        out["cores"] = {name: round(t.cpu / wall, 3) for name, t in times.items()}
        out["gateway_main_thread_cores"] = round(times["gateway"].main_thread / wall, 3)
        out["gateway_waited_for_cpu"] = round(times["gateway"].main_thread_wait / wall, 3)
        out["machine_busy_cores"] = round(machine_cores, 2)

        def delta(name: str, **labels: str) -> float:
            return total(after, name, **labels) - total(before, name, **labels)

        out["metrics_window"] = {
            "polls": delta("chenxing_device_polls_total"),
            "overruns": delta("chenxing_device_poll_overruns_total"),
            "connect_failures_total": total(after, "chenxing_device_connect_failures_total"),
            "devices_up": total(after, "chenxing_device_up"),
            "gc_collections": delta("chenxing_gc_pause_seconds_count"),
            "gc_pauses_over_50ms": pauses_over(after, "chenxing_gc_pause_seconds", "0.05")
            - pauses_over(before, "chenxing_gc_pause_seconds", "0.05"),
            "gc_longest_s_since_start": total(after, "chenxing_gc_pause_longest_seconds"),
            "stalls_over_50ms": pauses_over(after, "chenxing_event_loop_stall_seconds", "0.05")
            - pauses_over(before, "chenxing_event_loop_stall_seconds", "0.05"),
            "stall_longest_s_since_start":
                total(after, "chenxing_event_loop_stall_longest_seconds"),
            # start-up's too: what the window's figures leave out
            "stalls_over_50ms_since_start":
                pauses_over(after, "chenxing_event_loop_stall_seconds", "0.05"),
            "gc_pauses_over_50ms_since_start":
                pauses_over(after, "chenxing_gc_pause_seconds", "0.05"),
        }

        if params.reloads:
            rss_before = out["rss_mib"]
            for i in range(params.reloads):
                done = total(scrape(http_port), "chenxing_config_reloads_total")
                gateway.popen.send_signal(signal.SIGHUP)
                deadline = time.monotonic() + 120
                while total(scrape(http_port), "chenxing_config_reloads_total") <= done:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"reload {i + 1} did not finish in 120 s")
                    time.sleep(0.2)
            time.sleep(2)
            out["rss_after_reloads_mib"] = (proc_status_kib(gateway.pid, "VmRSS") or 0) / 1024
            out["rss_growth_after_reloads_mib"] = out["rss_after_reloads_mib"] - rss_before

        subscriber.watch_death = True
        term = time.monotonic()
        gateway.popen.send_signal(signal.SIGTERM)
        try:
            out["gateway_exit"] = gateway.popen.wait(timeout=60)
        except subprocess.TimeoutExpired:
            out["gateway_exit"] = None
        out["sigterm_to_exit_s"] = time.monotonic() - term
        time.sleep(0.5)
        death = subscriber.got.death_at
        out["sigterm_to_death_s"] = None if death is None else death - term
        stopped = re.search(r"gateway stopped \(drained=(\w+), death published=(\w+)\)",
                            gateway.log_tail(20_000))  # fmt: skip
        out["drained"] = stopped is not None and stopped[1] == "True"
        out["death_published"] = stopped is not None and stopped[2] == "True"
        out["gateway_log_warnings"] = sum(
            1 for line in gateway.log_tail(50_000_000).splitlines() if " WARNING " in line)
        subscriber.stop()
        out.update(figures(subscriber.got, params))
        return out
    finally:
        if subscriber is not None:
            subscriber.stop()
        if gateway is not None and gateway.alive():
            gateway.stop(timeout=10)
        for sim in sims:
            sim.stop(timeout=10)
            sim.close()
        broker.close()
        if keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def figures(got: Received, params: Params) -> dict[str, Any]:
    """Loss against the poll schedule: in a window of W s at a period of P s every tag is
    read W/P times (rounded down or up); fewer values received is loss."""
    expected = int(params.seconds / params.poll)
    missing = np.maximum(expected - got.received, 0)
    per_device = got.received.reshape(params.devices, params.tags).sum(axis=1)
    return {
        "values_expected": expected * params.total_tags,
        "values_received_in_window": int(got.received.sum()),
        "values_missing": int(missing.sum()),
        "loss_percent": round(100.0 * float(missing.sum()) / (expected * params.total_tags), 3),
        "tags_missing_values": int((missing > 0).sum()),
        "devices_without_values": int((per_device == 0).sum()),
        "value_age_ms": percentiles(got.ages),
        "age_parts_ms": {"read_to_write": percentiles(got.read_ms),
                         "read_to_encode": percentiles(got.to_encode_ms),
                         "encode_to_receipt": percentiles(got.transit_ms)},
        "samples_received": got.samples,
        "samples_not_good": got.not_good,
        "wrong_values": got.wrong_values,
        "written_before_read": got.before_read,
        "data_messages": got.data_messages,
        "seq_gaps": got.seq_gaps,
        "messages_by_kind": dict(got.births),
        "bytes_by_kind": dict(got.birth_bytes),
    }


def summary(result: dict[str, Any]) -> str:
    p = result["params"]
    age = result["value_age_ms"]
    m = result["metrics_window"]
    tags = p["devices"] * p["tags"]
    rss = result["rss_mib"]
    lines = [
        f"{p['devices']} devices x {p['tags']} tags = {tags:,} tags, poll {p['poll']} s, "
        f"{tags / p['poll']:,.0f} values/s offered, window {p['seconds']} s",
        f"validate {result['validate_s']:.2f} s ({result['validate_cpu_s']:.2f} s of CPU); "
        f"start to first data {result['startup_to_first_data_s']:.2f} s (the gateway's CPU "
        f"{result['startup_cpu_s']:.2f} s)",
        f"RSS {rss:.1f} MiB (peak {result['rss_peak_mib']:.1f}); goal 80 MB + 1.5 KB/tag = "
        f"{80 + 1.5 * tags / 1000:.0f} MB; per tag above 80 MB: "
        f"{max(0.0, rss * 1.048576 - 80) * 1000 / tags:.2f} KB",
        f"values missing {result['values_missing']:,} of {result['values_expected']:,} "
        f"({result['loss_percent']} %), {result['tags_missing_values']:,} tags short, "
        f"{result['devices_without_values']} devices silent; wrong values "
        f"{result['wrong_values']}, not good {result['samples_not_good']}, seq gaps "
        f"{result['seq_gaps']}",
        f"value age p50 / p99 / max {age['p50']} / {age['p99']} / {age['max']} ms; of it "
        + ", ".join(f"{k.replace('_', ' ')} p50 {v['p50']} p99 {v['p99']}"
                    for k, v in result["age_parts_ms"].items()),
        f"skipped polls {m['overruns']:.0f}; gc pauses > 50 ms {m['gc_pauses_over_50ms']:.0f}"
        f" (longest {1000 * m['gc_longest_s_since_start']:.0f} ms), loop stalls > 50 ms "
        f"{m['stalls_over_50ms']:.0f} (longest {1000 * m['stall_longest_s_since_start']:.0f} ms); "
        f"since start {m['stalls_over_50ms_since_start']:.0f} stalls and "
        f"{m['gc_pauses_over_50ms_since_start']:.0f} gc pauses > 50 ms",
        "cores: " + ", ".join(f"{k} {v:.2f}" for k, v in result["cores"].items()
                              if not k.startswith("sim-"))
        + f", simulators {sum(v for k, v in result['cores'].items() if k.startswith('sim-')):.2f}"
        + f"; machine {result['machine_busy_cores']} busy; the gateway's event loop waited "
        f"for a CPU {100 * result['gateway_waited_for_cpu']:.0f} % of the window",
        f"SIGTERM to death {result['sigterm_to_death_s']} s, to exit "
        f"{result['sigterm_to_exit_s']:.2f} s (exit {result['gateway_exit']}, drained "
        f"{result['drained']}, death published {result['death_published']})",
        f"messages by kind {result['messages_by_kind']}, bytes {result['bytes_by_kind']}",
    ]
    if "rss_growth_after_reloads_mib" in result:
        lines.append(f"RSS after {p['reloads']} reloads {result['rss_after_reloads_mib']:.1f} "
                     f"MiB ({result['rss_growth_after_reloads_mib']:+.1f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--tags", type=int, default=100, help="float32 tags per device")
    parser.add_argument("--poll", type=float, default=1.0, help="poll interval, s")
    parser.add_argument("--seconds", type=float, default=30.0, help="measurement window")
    parser.add_argument("--warmup", type=float, default=10.0,
                        help="seconds after the first data message before the window")
    parser.add_argument("--publish-interval", type=float, default=None)
    parser.add_argument("--reloads", type=int, default=0, help="SIGHUPs after the window")
    parser.add_argument("--per-simulator", type=int, default=DEVICES_PER_SIMULATOR)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--keep-workdir", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    params = Params(args.devices, args.tags, args.poll, args.seconds, args.warmup,
                    args.publish_interval, args.reloads, args.per_simulator)
    bench = Run("scale", packages=("pymodbus",))
    with sigterm_as_interrupt():
        try:
            result = run(params, args.keep_workdir)
        except KeyboardInterrupt:
            return 130
        except RuntimeError as exc:
            print(f"failed: {exc}", file=sys.stderr)
            return 1
    path = bench.write(result, args.out)
    print(load_note(bench.load_at_start))
    print(summary(result))
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
