"""End-to-end throughput benchmark: Modbus decode -> pipeline -> MQTT -> a subscriber.

N tags (default 10,000) on simulated Modbus TCP devices, each in its own
process, are polled by a real gateway process (``python -m gateway.cli.main run``)
that publishes every sample (no deadband) as JSON to a real Mosquitto; a lean
subscriber in this process counts what arrives. After a warm-up it measures for
a fixed window and prints:

- tag-samples/s received by the subscriber;
- the gateway process's CPU seconds per 1,000 samples and the cores it used;
- the gateway's peak RSS (VmHWM);
- p50/p99/max latency from the sample's timestamp to the subscriber's receipt;
- samples with a quality other than good, and gaps in the data messages' ``seq``;
- the CPU used by the simulators, the broker and the subscriber, and which side
  limited the rate.

It writes the figures as JSON to ``bench/results/pipeline-<timestamp>.json``.

Run from the repository root with the virtualenv active::

    python bench/pipeline.py [--tags 10000] [--devices 4] [--rate 50000|max] [--seconds 20]

``--rate`` is the offered load: every device polls all its tags every
``tags / rate`` seconds. ``--rate max`` polls back to back to find the ceiling.
Every child process is stopped on exit, on Ctrl-C, on SIGTERM and on errors; if
this process is killed with SIGKILL the kernel kills the gateway and the
simulators with it (PR_SET_PDEATHSIG), but not Mosquitto.

Linux only (reads /proc). See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import json
import logging
import os
import platform
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from hil.broker import MqttBroker

try:  # a faster JSON parser for the subscriber, only if it happens to be installed
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads
    JSON_PARSER = "orjson"
except ImportError:
    _loads = json.loads
    JSON_PARSER = "json"

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
from modbus_bank_server import bank_layout  # noqa: E402  (sibling script module)

log = logging.getLogger("bench.pipeline")

HOST = "127.0.0.1"
TOPIC_ROOT = "bench/v1"
GATEWAY_ID = "bench-gw"
#: the gateway is deemed to meet the issue's target at this rate on at most one core
TARGET_SAMPLES_PER_S = 20_000
GOAL_SAMPLES_PER_S = 50_000
#: share of the offered rate that counts as delivered (the window is aligned on messages)
DELIVERED_SHARE = 0.97
#: a process running or waiting for a CPU at least this share of the time is CPU-bound
SATURATED_CORES = 0.90
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)


# --------------------------------------------------------------------------------------
# /proc helpers
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcTimes:
    """CPU accounting of one process (all its threads), in seconds."""

    user: float = 0.0
    system: float = 0.0
    #: CPU time of the main thread alone (the gateway's asyncio event loop)
    main_thread: float = 0.0
    #: time its threads were runnable but waited for a CPU (from /proc/PID/task/*/schedstat)
    run_queue_wait: float = 0.0
    #: the same for the main thread alone
    main_thread_wait: float = 0.0

    @property
    def cpu(self) -> float:
        return self.user + self.system

    def __sub__(self, other: ProcTimes) -> ProcTimes:
        return ProcTimes(
            self.user - other.user,
            self.system - other.system,
            self.main_thread - other.main_thread,
            self.run_queue_wait - other.run_queue_wait,
            self.main_thread_wait - other.main_thread_wait,
        )


def _stat_times(path: str) -> tuple[float, float]:
    with open(path, encoding="ascii") as fh:
        stat = fh.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15
    return int(fields[11]) / _CLOCK_TICKS, int(fields[12]) / _CLOCK_TICKS


def proc_times(pid: int) -> ProcTimes:
    """CPU times of a process from /proc (utime and stime include every thread)."""
    user, system = _stat_times(f"/proc/{pid}/stat")
    main_user, main_system = _stat_times(f"/proc/{pid}/task/{pid}/stat")
    wait_ns = main_wait_ns = 0
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            path = f"/proc/{pid}/task/{tid}/schedstat"
            with contextlib.suppress(OSError, ValueError, IndexError), open(path) as fh:
                ns = int(fh.read().split()[1])
                wait_ns += ns
                if tid == str(pid):
                    main_wait_ns = ns
    return ProcTimes(user, system, main_user + main_system, wait_ns / 1e9, main_wait_ns / 1e9)


def proc_status_kib(pid: int, key: str) -> int | None:
    """A ``kB`` field of /proc/PID/status, e.g. ``VmHWM`` (peak RSS) or ``VmRSS``."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as fh:
        parts = [int(x) for x in fh.readline().split()[1:]]
    idle = parts[3] + parts[4]  # idle + iowait
    total = sum(parts[:8])  # guest time is already in user
    return (total - idle) / _CLOCK_TICKS, total / _CLOCK_TICKS


def machine_info() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "paho_mqtt": _version("paho-mqtt"),
        "pymodbus": _version("pymodbus"),
        "subscriber_json": JSON_PARSER,
    }


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _die_with_parent() -> None:
    """preexec_fn: the child is killed when this bench process dies, even by SIGKILL.

    SIGKILL rather than SIGTERM: a gateway told to stop in the very moment its devices
    vanish can hang in its shutdown (see bench/README.md), and nobody would be left to
    kill it.
    """
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


# --------------------------------------------------------------------------------------
# child processes
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Child:
    """A child process we started, with what is needed to stop and report on it."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0
    final_stats: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def stop(self, timeout: float) -> int | None:
        """SIGTERM, wait ``timeout`` s, then SIGKILL. Returns the exit code."""
        proc = self.popen
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning(
                    "%s (pid %d) did not stop in %.0f s: killing it", self.name, proc.pid, timeout
                )
                proc.kill()
                proc.wait(timeout=5)
        return proc.returncode


def _spawn(cmd: list[str], log_path: Path, *, stdout_pipe: bool) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else log_file,
            stderr=log_file,
            cwd=REPO_ROOT,
            start_new_session=True,  # Ctrl-C reaches this process only; it stops the children
            preexec_fn=_die_with_parent,
        )


def start_simulator(name: str, tags: int, workdir: Path) -> Child:
    """Start one simulated device (``modbus_bank_server.py``); :func:`wait_ready` follows."""
    log_path = workdir / f"{name}.log"
    script = BENCH_DIR / "modbus_bank_server.py"
    popen = _spawn(
        [sys.executable, str(script), "--tags", str(tags), "--host", HOST],
        log_path,
        stdout_pipe=True,
    )
    return Child(name, popen, log_path)


def wait_ready(child: Child, deadline: float) -> None:
    """Read the simulator's ``READY <port>`` line."""
    assert child.popen.stdout is not None
    fd = child.popen.stdout.fileno()
    buffer = b""
    while b"\n" not in buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not child.alive():
            raise RuntimeError(f"simulator {child.name} did not start:\n{child.log_tail()}")
        readable, _, _ = select.select([fd], [], [], min(remaining, 0.5))
        if readable:
            chunk = os.read(fd, 256)
            if not chunk:
                raise RuntimeError(f"simulator {child.name} exited:\n{child.log_tail()}")
            buffer += chunk
    line = buffer.split(b"\n", 1)[0].decode()
    match = re.fullmatch(r"READY (\d+)", line.strip())
    if not match:
        raise RuntimeError(f"simulator {child.name} said {line!r}, expected 'READY <port>'")
    child.port = int(match.group(1))


def stop_simulator(child: Child) -> None:
    """Stop a simulated device and keep the request counts it printed on its way out."""
    child.stop(timeout=5.0)
    if child.popen.stdout is not None:
        rest = child.popen.stdout.read().decode(errors="replace")
        child.popen.stdout.close()
        for line in rest.splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    child.final_stats = json.loads(line)


# --------------------------------------------------------------------------------------
# gateway config
# --------------------------------------------------------------------------------------


def split_tags(tags: int, devices: int) -> list[int]:
    """Tags per device: as even as possible, the first devices take the remainder."""
    base, extra = divmod(tags, devices)
    return [base + (1 if i < extra else 0) for i in range(devices)]


def gateway_config(
    workdir: Path,
    broker_port: int,
    sims: list[tuple[str, int, int]],
    poll_interval: float,
    publish_interval: float,
    max_samples: int,
) -> dict[str, Any]:
    """The gateway's config as a dict; ``sims`` is (device name, port, tags) per device."""
    devices = []
    for name, port, tags in sims:
        devices.append(
            {
                "name": name,
                "protocol": "modbus_tcp",
                "host": HOST,
                "port": port,
                "unit_id": 1,
                "poll_interval": round(poll_interval, 6),
                "timeout": 2.0,
                "tags": [
                    # no deadband: every sample read is published
                    {"name": t.name, "table": "input", "address": t.address, "type": t.type}
                    for t in bank_layout(tags)
                ],
            }
        )
    return {
        "gateway": {
            "id": GATEWAY_ID,
            "site": "bench",
            "line": "line-1",
            "description": "bench/pipeline.py",
            "state_dir": str(workdir / "state"),
        },
        "devices": devices,
        "northbound": {
            "format": "json",
            "topic_root": TOPIC_ROOT,
            "publish_interval": publish_interval,
            "max_samples_per_message": max_samples,
            "mqtt": {"host": HOST, "port": broker_port, "qos": 1},
        },
        "http": {"enabled": True, "bind": HOST, "port": 0},
        "logging": {"level": "INFO"},
    }


_API_LINE = re.compile(r"local API on http://[^:]+:(\d+)")


def find_http_port(log_path: Path) -> int | None:
    with contextlib.suppress(OSError):
        match = _API_LINE.search(log_path.read_text(errors="replace"))
        if match:
            return int(match.group(1))
    return None


def scrape_metrics(port: int | None) -> dict[str, float]:
    """The gateway's Prometheus counters summed over their labels (empty if unreachable)."""
    if port is None:
        return {}
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError as exc:
        log.warning("cannot scrape the gateway's metrics: %s", exc)
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        with contextlib.suppress(ValueError):
            out[name] = out.get(name, 0.0) + float(value)
    return out


# --------------------------------------------------------------------------------------
# subscriber
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class WindowFigures:
    """What the subscriber saw in the measurement window (see :class:`Subscriber`)."""

    seconds: float = 0.0
    messages: int = 0
    samples: int = 0
    payload_bytes: int = 0
    non_good: int = 0
    seq_gaps: int = 0
    missing_messages: int = 0
    out_of_order: int = 0
    latencies_ms: list[np.ndarray] = field(default_factory=list)
    #: per message: receipt - the message's ``ts`` (the gateway's flush time)
    flush_to_receipt_ms: list[float] = field(default_factory=list)


class Subscriber:
    """A lean MQTT subscriber of the gateway's data: counts samples and latencies.

    It parses each JSON data message's columnar arrays and keeps, per message,
    one NumPy array of latencies; no per-sample Python objects. The receipt time
    of a message is used for all its samples.

    The measurement window is aligned on messages, so that a window does not
    count part of a poll's worth of samples: it starts at the receipt of the
    first data message after :meth:`open_window` (counted) and ends at the
    receipt of the first data message after :meth:`close_window` was called
    (not counted).
    """

    def __init__(self, host: str, port: int, topic_root: str) -> None:
        self.topic = f"{topic_root}/#"
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._first_data = threading.Event()
        self._window_done = threading.Event()
        self._state = "idle"  # idle -> armed -> recording -> closing -> idle
        self._window = WindowFigures()
        self._started = 0.0
        self._ended = 0.0
        self._last_seq: int | None = None
        self.births = 0
        self.deaths = 0
        self.data_messages = 0
        self.undecodable = 0
        self.samples_total = 0
        self._host, self._port = host, port
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{os.getpid()}", clean_session=True
        )
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: Any, properties: object
    ) -> None:
        if reason.is_failure:
            log.error("subscriber: connection refused: %s", reason)
            return
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, *args: object) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        received_ms = time.time_ns() / 1e6
        received = time.monotonic()
        topic = msg.topic
        if topic.endswith("/birth"):
            self.births += 1
            return
        if topic.endswith("/death"):
            self.deaths += 1
            return
        if not topic.endswith("/data"):
            return
        try:
            body = _loads(msg.payload)
            samples = body["samples"]
            ts = samples["ts"]
            quality = samples["q"]
            seq = int(body["seq"])
            flushed_ms = int(body["ts"])
        except (ValueError, KeyError, TypeError):
            self.undecodable += 1
            return
        n = len(ts)
        self.data_messages += 1
        self.samples_total += n
        self._first_data.set()
        with self._lock:
            last, self._last_seq = self._last_seq, seq
            if self._state == "armed":
                self._state, self._started = "recording", received
            elif self._state == "closing":
                self._state, self._ended = "idle", received
                self._window_done.set()
            if self._state != "recording":
                return
            w = self._window
            w.messages += 1
            w.samples += n
            w.payload_bytes += len(msg.payload)
            w.non_good += n - quality.count("good")
            if last is not None:
                if seq > last + 1:
                    w.seq_gaps += 1
                    w.missing_messages += seq - last - 1
                elif seq <= last:
                    w.out_of_order += 1
            # ts is in whole ms (floored): receipt - ts over-states the latency by < 1 ms
            w.latencies_ms.append(received_ms - np.asarray(ts, dtype=np.float64))
            w.flush_to_receipt_ms.append(received_ms - flushed_ms)

    def start(self, timeout: float = 10.0) -> None:
        self._client.connect_async(self._host, self._port, keepalive=30)
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            raise TimeoutError(f"subscriber could not subscribe on {self._host}:{self._port}")

    def wait_first_data(self, timeout: float) -> bool:
        return self._first_data.wait(timeout)

    def open_window(self) -> None:
        with self._lock:
            self._window = WindowFigures()
            self._window_done.clear()
            self._state = "armed"
            self._started = time.monotonic()  # replaced by the first message's receipt

    def close_window(self, timeout: float = 5.0) -> WindowFigures:
        """Stop counting at the next data message (or after ``timeout`` s without one)."""
        with self._lock:
            closed = time.monotonic()
            waiting = self._state == "recording"
            if waiting:
                self._state = "closing"
            else:  # not one data message during the whole window
                self._state, self._ended = "idle", closed
        if waiting and not self._window_done.wait(timeout):
            with self._lock:
                if self._state == "closing":
                    log.warning("no data message within %.1f s after the window", timeout)
                    self._state, self._ended = "idle", closed
        with self._lock:
            self._window.seconds = self._ended - self._started
            return self._window

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


# --------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Params:
    tags: int
    devices: int
    #: offered tag-samples/s; None polls back to back ("--rate max")
    rate: float | None
    seconds: float
    warmup: float
    publish_interval: float
    max_samples_per_message: int

    @property
    def poll_interval(self) -> float:
        """Every device polls all its tags this often, so that N tags make ``rate`` samples/s."""
        return MAX_RATE_POLL_INTERVAL if self.rate is None else self.tags / self.rate


#: poll interval of ``--rate max``: shorter than any poll, so every device polls back to back
MAX_RATE_POLL_INTERVAL = 0.001


def requests_per_poll(tags: int) -> int:
    """Read requests the gateway's planner makes for one poll of a bank of ``tags``."""
    from drivers.modbus.planner import TagSpan, plan_requests

    spans = [
        TagSpan(i, "input", t.address, 2 if t.type == "float32" else 1, t.name)
        for i, t in enumerate(bank_layout(tags))
    ]
    return len(plan_requests(spans))


@dataclass(slots=True)
class CpuProbe:
    """CPU times of a set of processes and busy cores of the machine between two points."""

    pids: dict[str, int]
    _start: dict[str, ProcTimes] = field(default_factory=dict)
    _machine: tuple[float, float] = (0.0, 0.0)
    _wall: float = 0.0

    def _snapshot(self) -> dict[str, ProcTimes]:
        out = {}
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                out[name] = proc_times(pid)
        return out

    def begin(self) -> None:
        self._start = self._snapshot()
        self._machine = machine_busy_seconds()
        self._wall = time.monotonic()

    def end(self) -> tuple[float, dict[str, ProcTimes], float]:
        """(wall seconds, CPU times per process over the interval, busy cores of the machine)."""
        now = self._snapshot()
        busy, total = machine_busy_seconds()
        wall = time.monotonic() - self._wall
        d_busy, d_total = busy - self._machine[0], total - self._machine[1]
        machine_cores = (os.cpu_count() or 1) * d_busy / d_total if d_total > 0 else 0.0
        times = {k: now[k] - self._start[k] for k in now if k in self._start}
        return wall, times, machine_cores


@dataclass(slots=True)
class Measurement:
    """Raw figures of one run, before they are turned into the result document."""

    window: WindowFigures
    cpu_wall_s: float
    times: dict[str, ProcTimes]
    machine_cores: float
    peak_rss_kib: int | None
    rss_kib: int | None
    metrics_before: dict[str, float]
    metrics_after: dict[str, float]
    gateway_exit: int | None = None
    sim_stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    births: int = 0
    deaths: int = 0
    undecodable: int = 0


def percentiles(latencies: list[np.ndarray]) -> dict[str, float | None]:
    if not latencies:
        return {"p50": None, "p99": None, "max": None, "min": None, "mean": None}
    all_ms = np.concatenate(latencies)
    p50, p99 = np.percentile(all_ms, [50, 99])
    return {
        "p50": round(float(p50), 1),
        "p99": round(float(p99), 1),
        "max": round(float(all_ms.max()), 1),
        "min": round(float(all_ms.min()), 1),
        "mean": round(float(all_ms.mean()), 1),
    }


def _delta(after: dict[str, float], before: dict[str, float], key: str) -> float | None:
    if key in after and key in before:
        return after[key] - before[key]
    return None


def judge_limit(
    offered: float | None,
    achieved: float,
    busy: dict[str, float],
    waiting: dict[str, float],
    machine_cores: float,
    request_ms: float | None,
) -> tuple[str, list[str]]:
    """Which side limited the rate: a short verdict, and the processes that were CPU-bound.

    ``busy`` is the share of one core each process used and ``waiting`` the share of the
    time it was runnable but had no CPU (for the gateway: its event-loop thread). A
    process that was running or waiting to run nearly all the time is CPU-bound: on a
    machine with fewer free cores than processes it may be so at well under one core.
    """
    ncpu = os.cpu_count() or 1
    demand = {name: busy[name] + waiting.get(name, 0.0) for name in busy}
    bound = sorted((n for n, d in demand.items() if d >= SATURATED_CORES), key=lambda n: -demand[n])
    if offered is not None and achieved >= DELIVERED_SHARE * offered:
        verdict = "nothing: the offered rate was delivered (raise --rate to find the ceiling)"
        return verdict, bound
    if bound:
        top = bound[0]
        what = {
            "gateway": "the gateway: its event-loop thread",
            "subscriber": "the subscriber (this bench process)",
            "broker": "the broker",
        }.get(top, f"the simulator {top}")
        verdict = f"{what} ran {busy[top]:.0%} of the time"
        if waiting.get(top, 0.0) >= 0.05:
            verdict += (
                f" and waited for a CPU {waiting[top]:.0%}: it is CPU-bound, sharing the "
                f"{ncpu} cores ({machine_cores:.2f} busy) with the other processes"
            )
        return verdict, bound
    if machine_cores >= 0.9 * ncpu:
        return f"the machine: {machine_cores:.2f} of {ncpu} cores busy", bound
    if request_ms is not None:
        return (
            "request round trips: each device has one Modbus request in flight at a time, "
            f"~{request_ms:.2f} ms each, and no process is CPU-bound (more --devices raise "
            "the ceiling)",
            bound,
        )
    return "unclear: no process is CPU-bound; see poll overruns and latency", bound


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so that the cleanup always runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_alive(gateway: Child) -> None:
    if not gateway.alive():
        raise RuntimeError(
            f"the gateway exited with {gateway.popen.returncode}:\n{gateway.log_tail()}"
        )


def _sleep_watching(seconds: float, gateway: Child) -> None:
    """Sleep, failing early if the gateway exits."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        _check_alive(gateway)
        time.sleep(min(left, 0.2))


def run_benchmark(params: Params, keep_workdir: bool = False) -> Measurement:
    """Start broker, simulators, gateway and subscriber; measure; stop them all."""
    broker = MqttBroker(host=HOST, kind="mosquitto")  # FileNotFoundError without Mosquitto
    workdir = Path(tempfile.mkdtemp(prefix="chenxing-bench-"))
    sims: list[Child] = []
    gateway: Child | None = None
    subscriber: Subscriber | None = None
    try:
        broker.start()
        assert broker.pid is not None
        log.info("mosquitto on %s (pid %d)", broker.url, broker.pid)

        per_device = split_tags(params.tags, params.devices)
        sims = [start_simulator(f"bank-{i}", n, workdir) for i, n in enumerate(per_device)]
        deadline = time.monotonic() + 30.0
        for sim in sims:
            wait_ready(sim, deadline)
        log.info("%d simulators on ports %s", len(sims), ", ".join(str(s.port) for s in sims))

        config = gateway_config(
            workdir,
            broker.port,
            [(s.name, s.port, n) for s, n in zip(sims, per_device, strict=True)],
            params.poll_interval,
            params.publish_interval,
            params.max_samples_per_message,
        )
        config_path = workdir / "gateway.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        cmd = [sys.executable, "-m", "gateway.cli.main", "run", "-c", str(config_path)]
        gateway_log = workdir / "gateway.log"
        gateway = Child("gateway", _spawn(cmd, gateway_log, stdout_pipe=False), gateway_log)
        log.info("gateway pid %d, poll interval %.3f s", gateway.pid, params.poll_interval)

        # the subscriber's network thread starts only now: no fork() with a thread running
        subscriber = Subscriber(HOST, broker.port, TOPIC_ROOT)
        subscriber.start()
        first_data_deadline = time.monotonic() + 60.0
        while not subscriber.wait_first_data(timeout=0.2):
            _check_alive(gateway)
            if time.monotonic() > first_data_deadline:
                raise RuntimeError(
                    f"no data message from the gateway within 60 s:\n{gateway.log_tail()}"
                )
        log.info("first data message; warming up %.1f s", params.warmup)
        _sleep_watching(params.warmup, gateway)

        http_port = find_http_port(gateway_log)
        pids = {"gateway": gateway.pid, "broker": broker.pid, "subscriber": os.getpid()}
        pids.update({s.name: s.pid for s in sims})
        probe = CpuProbe(pids)
        metrics_before = scrape_metrics(http_port)
        probe.begin()
        subscriber.open_window()
        log.info("measuring %.1f s", params.seconds)
        _sleep_watching(params.seconds, gateway)
        window = subscriber.close_window()
        cpu_wall, times, machine_cores = probe.end()
        metrics_after = scrape_metrics(http_port)
        m = Measurement(
            window,
            cpu_wall,
            times,
            machine_cores,
            proc_status_kib(gateway.pid, "VmHWM"),
            proc_status_kib(gateway.pid, "VmRSS"),
            metrics_before,
            metrics_after,
        )

        log.info("stopping the gateway (SIGTERM)")
        m.gateway_exit = gateway.stop(timeout=30.0)
        if m.gateway_exit != 0:
            log.error("gateway exited with %s:\n%s", m.gateway_exit, gateway.log_tail())
        time.sleep(0.2)  # the death message
        subscriber.stop()
        m.births, m.deaths, m.undecodable = (
            subscriber.births,
            subscriber.deaths,
            subscriber.undecodable,
        )
        for sim in sims:
            stop_simulator(sim)
            m.sim_stats[sim.name] = sim.final_stats
        return m
    finally:
        if subscriber is not None:
            with contextlib.suppress(Exception):
                subscriber.stop()
        if gateway is not None and gateway.alive():
            gateway.stop(timeout=10.0)
        for sim in sims:
            if sim.alive():
                sim.stop(timeout=5.0)
            if sim.popen.stdout is not None:
                sim.popen.stdout.close()
        broker.close()
        if keep_workdir:
            print(f"kept the work directory {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def build_result(params: Params, started_at: dt.datetime, m: Measurement) -> dict[str, Any]:
    """The JSON result document of one run."""
    w = m.window
    rate = w.samples / w.seconds if w.seconds > 0 else 0.0
    wall = m.cpu_wall_s or 1.0
    sims = [f"bank-{i}" for i in range(params.devices)]
    names = ("gateway", "broker", "subscriber", *sims)
    t = {name: m.times.get(name, ProcTimes()) for name in names}
    cores = {name: t[name].cpu / wall for name in names}
    waiting = {name: t[name].run_queue_wait / wall for name in names}
    waiting["gateway"] = t["gateway"].main_thread_wait / wall  # its event-loop thread
    gw = t["gateway"]
    gw_cores = cores["gateway"]
    gw_loop = gw.main_thread / wall
    busy = {**cores, "gateway": gw_loop}
    sim_cores = [cores[name] for name in sims]
    before, after = m.metrics_before, m.metrics_after
    polls = _delta(after, before, "chenxing_device_polls_total")
    overruns = _delta(after, before, "chenxing_device_poll_overruns_total")
    per_poll = [requests_per_poll(n) for n in split_tags(params.tags, params.devices)]
    request_rate = polls * sum(per_poll) / len(per_poll) / wall if polls else None
    # a device that polls back to back always has one request in flight
    back_to_back = bool(overruns) or params.rate is None
    request_ms = params.devices / request_rate * 1000 if request_rate and back_to_back else None
    verdict, cpu_bound = judge_limit(params.rate, rate, busy, waiting, m.machine_cores, request_ms)
    cpu_per_1000 = gw_cores / rate * 1000 if rate else None
    # the window is aligned on whole messages, so the measured rate jitters by up to one
    # message's worth of samples; an offered rate counts as delivered within DELIVERED_SHARE
    delivered = params.rate is not None and rate >= DELIVERED_SHARE * params.rate

    def reached(level: float) -> bool | None:
        """True if ``level`` samples/s went through on at most one gateway core; None if
        this run did not offer that much."""
        offered_enough = params.rate is None or params.rate >= level
        if gw_cores <= 1.0 and (rate >= level or (delivered and offered_enough)):
            return True
        return False if offered_enough else None

    return {
        "benchmark": "pipeline",
        "started_at": started_at.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "parameters": {
            **asdict(params),
            "rate": params.rate if params.rate is not None else "max",
            "poll_interval_s": round(params.poll_interval, 6),
            "tags_per_device": split_tags(params.tags, params.devices),
            "requests_per_poll": per_poll,
            "tag_types": "repeating float32, int16, float32, uint16 (input registers)",
            "deadband": None,
        },
        "results": {
            "tag_samples_per_s": round(rate, 1),
            "window_s": round(w.seconds, 3),
            "samples": w.samples,
            "messages": w.messages,
            "payload_bytes_per_s": round(w.payload_bytes / w.seconds) if w.seconds else None,
            "gateway": {
                "cores": round(gw_cores, 3),
                "event_loop_thread_cores": round(gw_loop, 3),
                "cpu_s": round(gw.cpu, 3),
                "system_cpu_s": round(gw.system, 3),
                "cpu_s_per_1000_samples": None if cpu_per_1000 is None else round(cpu_per_1000, 5),
                "samples_per_cpu_s": round(rate / gw_cores) if gw_cores else None,
                "peak_rss_mib": _mib(m.peak_rss_kib),
                "rss_mib_at_end": _mib(m.rss_kib),
                "exit_code": m.gateway_exit,
                "polls": polls,
                "poll_overruns": overruns,
                "modbus_requests_per_s": None if request_rate is None else round(request_rate),
                "request_round_trip_ms": None if request_ms is None else round(request_ms, 3),
                "cpu_us_per_request": _per_request(gw_cores, request_rate),
                "samples_read": _delta(after, before, "chenxing_device_samples_read_total"),
                "samples_acked_by_broker": _delta(
                    after, before, "chenxing_samples_published_total"
                ),
                "outbox_messages_at_end": after.get("chenxing_outbox_messages"),
                "messages_dropped_total": after.get("chenxing_messages_dropped_total"),
            },
            "latency_ms": percentiles(w.latencies_ms),
            "flush_to_receipt_ms": percentiles([np.asarray(w.flush_to_receipt_ms)])
            if w.flush_to_receipt_ms
            else percentiles([]),
            "non_good_samples": w.non_good,
            "sequence": {
                "gaps": w.seq_gaps,
                "missing_messages": w.missing_messages,
                "out_of_order": w.out_of_order,
            },
            "cores": {k: round(v, 3) for k, v in cores.items()},
            "cpu_wait_share": {k: round(v, 3) for k, v in waiting.items()},
            "machine_busy_cores": round(m.machine_cores, 3),
            "simulators": {
                "cores_total": round(sum(sim_cores), 3),
                "cores_max": round(max(sim_cores), 3),
                "cpu_us_per_request": _per_request(sum(sim_cores), request_rate),
                "requests_whole_run": sum(int(s.get("requests", 0)) for s in m.sim_stats.values()),
            },
            "subscriber": {"births": m.births, "deaths": m.deaths, "undecodable": m.undecodable},
            "limited_by": verdict,
            "cpu_bound": cpu_bound,
            "delivered_offered_rate": delivered,
            "target": {
                "samples_per_s": TARGET_SAMPLES_PER_S,
                "max_gateway_cores": 1.0,
                "met": reached(TARGET_SAMPLES_PER_S),
                "goal_samples_per_s": GOAL_SAMPLES_PER_S,
                "goal_met": reached(GOAL_SAMPLES_PER_S),
            },
        },
    }


def _per_request(cores: float, request_rate: float | None) -> float | None:
    """Microseconds of CPU per Modbus request."""
    return round(cores / request_rate * 1e6, 1) if request_rate else None


def _mib(kib: int | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


def _verdict(met: bool | None) -> str:
    return "not tested (offered less; use --rate)" if met is None else "MET" if met else "NOT MET"


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def print_summary(result: dict[str, Any], out_path: Path | None) -> None:
    p, r, mach = result["parameters"], result["results"], result["machine"]
    g, lat, seq, tgt = r["gateway"], r["latency_ms"], r["sequence"], r["target"]
    fl = r["flush_to_receipt_ms"]
    offered = "as fast as it goes" if p["rate"] == "max" else f"{p['rate']:,.0f} samples/s"
    per_1000 = g["cpu_s_per_1000_samples"]
    system = g["system_cpu_s"] / g["cpu_s"] if g["cpu_s"] else 0.0
    lines = [
        f"pipeline benchmark: {p['tags']:,} tags on {p['devices']} simulated Modbus devices, "
        f"offered {offered} (poll every {p['poll_interval_s']:g} s), {r['window_s']:.1f} s window",
        f"machine: {mach['nproc']} CPUs, {mach['cpu_model']}, Python {mach['python']}",
        "",
        f"  tag-samples/s        {r['tag_samples_per_s']:>10,.0f}   "
        f"({r['samples']:,} samples in {r['messages']} messages, "
        f"{_fmt(r['payload_bytes_per_s'] and r['payload_bytes_per_s'] / 1e6, '.1f')} MB/s)",
        f"  gateway CPU          {_fmt(per_1000 and per_1000 * 1000, '.2f'):>10} ms per 1,000 "
        f"samples   ({g['cores']:.2f} cores, {system:.0%} of it in the kernel; "
        f"{_fmt(g['samples_per_cpu_s'], ',')} samples per CPU second)",
        f"  gateway peak RSS     {_fmt(g['peak_rss_mib'], '.1f'):>10} MiB",
        f"  latency p50/p99/max  {_fmt(lat['p50'], '.0f'):>4} / {_fmt(lat['p99'], '.0f')} / "
        f"{_fmt(lat['max'], '.0f')} ms   (sample ts -> subscriber receipt: an upper bound of "
        "simulator -> subscriber)",
        f"    of which after the flush  {_fmt(fl['p50'], '.0f'):>4} / {_fmt(fl['p99'], '.0f')} / "
        f"{_fmt(fl['max'], '.0f')} ms   (message ts -> receipt: encode, MQTT, broker, parse; "
        "the rest is polling and waiting for the publish interval)",
        f"  non-good samples     {r['non_good_samples']:>10,}",
        f"  seq gaps             {seq['gaps']:>10,}   (missing messages "
        f"{seq['missing_messages']}, out of order {seq['out_of_order']})",
        f"  polls / overruns     {_fmt(g['polls'], ',.0f'):>10} / "
        f"{_fmt(g['poll_overruns'], ',.0f')}   ({_fmt(g['modbus_requests_per_s'], ',')} Modbus "
        "requests/s"
        + (
            f", ~{g['request_round_trip_ms']:.2f} ms each, back to back)"
            if g["request_round_trip_ms"] is not None
            else ")"
        ),
        "  cores used           "
        + ", ".join(f"{name} {c:.2f}" for name, c in r["cores"].items())
        + f"; whole machine {r['machine_busy_cores']:.2f} of {mach['nproc']}",
        f"  gateway event loop   {g['event_loop_thread_cores']:>10.2f} cores (its main thread)",
        f"  CPU per request      {_fmt(g['cpu_us_per_request'], '.0f'):>10} us gateway, "
        f"{_fmt(r['simulators']['cpu_us_per_request'], '.0f')} us simulator (pymodbus server)",
        "  waited for a CPU     "
        + ", ".join(f"{name} {w:.0%}" for name, w in r["cpu_wait_share"].items())
        + " of the time (gateway: its event-loop thread)",
        f"  gateway exit code    {g['exit_code']}",
        "",
        f"limited by: {r['limited_by']}",
        f"target >= {tgt['samples_per_s']:,} samples/s on <= 1 gateway core: "
        f"{_verdict(tgt['met'])}; goal >= {tgt['goal_samples_per_s']:,}: "
        f"{_verdict(tgt['goal_met'])}",
    ]
    if out_path is not None:
        lines.append(f"result written to {out_path}")
    print("\n".join(lines))


def _rate(text: str) -> float | None:
    if text == "max":
        return None
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("the rate must be positive (or 'max')")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/pipeline.py",
        description="Modbus decode -> pipeline -> MQTT -> subscriber throughput, "
        "with a real Mosquitto and simulated devices in their own processes.",
    )
    parser.add_argument("--tags", type=int, default=10_000, help="tags in all (default 10000)")
    parser.add_argument(
        "--devices",
        type=int,
        default=4,
        help="simulated Modbus devices, one process each (default 4)",
    )
    parser.add_argument(
        "--rate",
        type=_rate,
        default=float(GOAL_SAMPLES_PER_S),
        help="offered tag-samples/s, which sets the poll interval; 'max' polls "
        "back to back (default 50000)",
    )
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="measurement window in s (default 20)"
    )
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="s of running before the window (default 3)"
    )
    parser.add_argument(
        "--publish-interval",
        type=float,
        default=0.1,
        help="northbound publish_interval in s (default 0.1)",
    )
    parser.add_argument(
        "--max-samples",
        type=int,
        default=5000,
        help="northbound max_samples_per_message (default 5000)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON result file (default bench/results/pipeline-<timestamp>.json)",
    )
    parser.add_argument(
        "--keep-workdir",
        action="store_true",
        help="keep the temporary directory with the config and the logs",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    args = parser.parse_args(argv)
    if not 1 <= args.devices <= args.tags:
        parser.error("need 1 <= --devices <= --tags")
    if args.seconds <= 0 or args.warmup < 0 or args.publish_interval <= 0:
        parser.error("--seconds and --publish-interval must be positive, --warmup not negative")
    if not 1 <= args.max_samples <= 100_000:
        parser.error("--max-samples must be 1..100000")
    try:
        for n in split_tags(args.tags, args.devices):
            bank_layout(n)
    except ValueError as exc:
        parser.error(f"{exc}: use more --devices")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    params = Params(
        tags=args.tags,
        devices=args.devices,
        rate=args.rate,
        seconds=args.seconds,
        warmup=args.warmup,
        publish_interval=args.publish_interval,
        max_samples_per_message=args.max_samples,
    )
    started_at = dt.datetime.now(dt.UTC)
    try:
        with _sigterm_as_interrupt():
            measurement = run_benchmark(params, keep_workdir=args.keep_workdir)
    except KeyboardInterrupt:
        print("interrupted; every child process was stopped", file=sys.stderr)
        return 130
    except (RuntimeError, OSError) as exc:  # TimeoutError is an OSError
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    result = build_result(params, started_at, measurement)
    out: Path = args.out or BENCH_DIR / "results" / (
        f"pipeline-{started_at.astimezone():%Y%m%d-%H%M%S}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print_summary(result, out)
    return 0 if measurement.gateway_exit == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
