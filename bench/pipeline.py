"""End-to-end throughput benchmark: Modbus decode -> pipeline -> MQTT -> a subscriber.

N tags (default 10,000) on simulated Modbus TCP devices, each in its own
process, are polled by a real gateway process (``python -m gateway.cli.main run``)
that publishes every sample (no deadband) to a real Mosquitto with the gateway's
northbound defaults (Sparkplug B, disk spool on, publish interval and message size
as the gateway's config defaults them; ``--format json`` for the JSON contract at
QoS 1); a lean subscriber in this process counts what arrives. After a warm-up it
measures for a fixed window and prints:

- tag-samples/s received by the subscriber;
- the gateway process's CPU seconds per 1,000 samples and the cores it used;
- the gateway's peak RSS (VmHWM);
- p50/p99/max latency from the sample's timestamp to the subscriber's receipt;
- samples with a quality other than good, and gaps in the data messages' ``seq``;
- the CPU used by the simulators, the broker and the subscriber, and which side
  limited the rate.

It writes the figures as JSON to ``bench/results/pipeline-<timestamp>.json``.

Run from the repository root with the virtualenv active::

    python -m bench.pipeline [--tags 10000] [--devices 4] [--rate 50000|max] [--seconds 20]

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
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python bench/pipeline.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import paho.mqtt.client as mqtt
import yaml
from google.protobuf.message import DecodeError
from paho.mqtt.enums import CallbackAPIVersion

from bench.harness import (
    HOST,
    BenchBroker,
    Child,
    CpuProbe,
    ProcTimes,
    Run,
    filesystem_of,
    load_note,
    percentiles,
    proc_status_kib,
    sigterm_as_interrupt,
    spawn,
    start_modbus_bank,
    stop_modbus_bank,
    wait_modbus_bank,
)
from bench.modbus_bank_server import bank_layout
from gateway.config.loader import load_config
from gateway.config.models import NorthboundConfig
from gateway.northbound.sparkplug import sparkplug_b_pb2 as pb

try:  # a faster JSON parser for the subscriber, only if it happens to be installed
    import orjson  # type: ignore[import-not-found]

    _loads: Callable[[bytes], Any] = orjson.loads
    JSON_PARSER = "orjson"
except ImportError:
    _loads = json.loads
    JSON_PARSER = "json"

log = logging.getLogger("bench.pipeline")

TOPIC_ROOT = "bench/v1"
SITE = "bench"
GATEWAY_ID = "bench-gw"
#: the gateway's default payload contract (``northbound.format``)
DEFAULT_FORMAT: str = NorthboundConfig().format
#: the gateway is deemed to meet the issue's target at this rate on at most one core
TARGET_SAMPLES_PER_S = 20_000
GOAL_SAMPLES_PER_S = 50_000
#: share of the offered rate that counts as delivered (the window is aligned on messages)
DELIVERED_SHARE = 0.97
#: a process running or waiting for a CPU at least this share of the time is CPU-bound
SATURATED_CORES = 0.90
#: Sparkplug ``Quality`` property codes that are not good (see ``datatypes.quality_of``)
_SPARKPLUG_GOOD_MIN = 192
_SPARKPLUG_STALE = 500


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
    params: Params,
) -> dict[str, Any]:
    """The gateway's config as a dict; ``sims`` is (device name, port, tags) per device.

    Northbound settings the bench was not told to change are left out, so the gateway's
    own defaults apply (what :func:`effective_northbound` reads back)."""
    devices = []
    for name, port, tags in sims:
        devices.append(
            {
                "name": name,
                "protocol": "modbus_tcp",
                "host": HOST,
                "port": port,
                "unit_id": 1,
                "poll_interval": round(params.poll_interval, 6),
                "timeout": 2.0,
                "tags": [
                    # no deadband: every sample read is published
                    {"name": t.name, "table": "input", "address": t.address, "type": t.type}
                    for t in bank_layout(tags)
                ],
            }
        )
    northbound: dict[str, Any] = {
        "format": params.format,
        "mqtt": {"host": HOST, "port": broker_port},
    }
    if params.format == "json":
        northbound["topic_root"] = TOPIC_ROOT
    if params.publish_interval is not None:
        northbound["publish_interval"] = params.publish_interval
    if params.max_samples_per_message is not None:
        northbound["max_samples_per_message"] = params.max_samples_per_message
    if not params.spool:
        northbound["spool"] = {"enabled": False}
    return {
        "gateway": {
            "id": GATEWAY_ID,
            "site": SITE,
            "line": "line-1",
            "description": "bench/pipeline.py",
            "state_dir": str(workdir / "state"),
        },
        "devices": devices,
        "northbound": northbound,
        "http": {"enabled": True, "bind": HOST, "port": 0},
        "logging": {"level": "INFO"},
    }


def effective_northbound(config_path: Path) -> dict[str, Any]:
    """The northbound settings the gateway runs with, read back through its own loader."""
    config = load_config(config_path)
    nb = config.northbound
    state_dir = config.gateway.state_dir
    spool_path = nb.spool.resolved_path(state_dir) if nb.spool.enabled else None
    return {
        "format": nb.format,
        "data_qos": nb.mqtt.qos if nb.format == "json" else nb.sparkplug.data_qos,
        "publish_interval_s": nb.publish_interval,
        "max_samples_per_message": nb.max_samples_per_message,
        "spool": nb.spool.enabled,
        "spool_filesystem": filesystem_of(spool_path.parent) if spool_path else None,
        "max_inflight": nb.outbox.max_inflight,
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
    #: per message: receipt - the message's timestamp (the gateway's flush time)
    flush_to_receipt_ms: list[float] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DataMessage:
    """The figures of one decoded data message."""

    samples: int
    ts_ms: np.ndarray
    non_good: int
    flushed_ms: int


def decode_json_data(payload: bytes) -> tuple[int, DataMessage]:
    """(seq, figures) of a JSON v1 data message (columnar ``samples`` arrays)."""
    body = _loads(payload)
    samples = body["samples"]
    ts = samples["ts"]
    quality = samples["q"]
    data = DataMessage(len(ts), np.asarray(ts, dtype=np.float64),
                       len(ts) - quality.count("good"), int(body["ts"]))  # fmt: skip
    return int(body["seq"]), data


def sparkplug_non_good(payload: bytes, metrics: Any) -> int:
    """Metrics whose ``Quality`` property is not good (the gateway adds one only then)."""
    if b"Quality" not in payload:
        return 0
    bad = 0
    for metric in metrics:
        if not metric.HasField("properties"):
            continue
        keys = list(metric.properties.keys)
        if "Quality" in keys:
            code = metric.properties.values[keys.index("Quality")].int_value
            bad += code < _SPARKPLUG_GOOD_MIN or code == _SPARKPLUG_STALE
    return bad


class Subscriber:
    """A lean MQTT subscriber of the gateway's data: counts samples and latencies.

    It decodes each data message (JSON: the columnar arrays; Sparkplug B: the DDATA
    metrics' timestamps, with protobuf) and keeps, per message, one NumPy array of
    latencies. The receipt time of a message is used for all its samples.

    Sequence numbers: JSON's ``seq`` counts data messages (a gap is a jump, a lower one
    is out of order); Sparkplug's ``seq`` (0-255) counts every message of the edge node
    but NDEATH, restarting at the NBIRTH (a gap is any seq that is not the previous + 1).

    The measurement window is aligned on messages, so that a window does not
    count part of a poll's worth of samples: it starts at the receipt of the
    first data message after :meth:`open_window` (counted) and ends at the
    receipt of the first data message after :meth:`close_window` was called
    (not counted).
    """

    def __init__(self, host: str, port: int, fmt: str) -> None:
        self.format = fmt
        self.topic = f"{TOPIC_ROOT}/#" if fmt == "json" else f"spBv1.0/{SITE}/#"
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
        self.device_births = 0
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
        self._client.on_message = self._on_json if fmt == "json" else self._on_sparkplug

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: Any, properties: object
    ) -> None:
        if reason.is_failure:
            log.error("subscriber: connection refused: %s", reason)
            return
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, *args: object) -> None:
        self._subscribed.set()

    def _on_json(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
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
        payload = bytes(msg.payload)
        try:
            seq, data = decode_json_data(payload)
        except (ValueError, KeyError, TypeError):
            self.undecodable += 1
            return
        self._record(seq, len(payload), data, received, received_ms)

    def _on_sparkplug(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        received_ms = time.time_ns() / 1e6
        received = time.monotonic()
        parts = msg.topic.split("/")  # spBv1.0/{group}/{type}/{edge node}[/{device}]
        if len(parts) < 4:
            return
        kind = parts[2]
        if kind == "NDEATH":
            self.deaths += 1
            return
        payload = bytes(msg.payload)
        try:
            decoded = pb.Payload.FromString(payload)
        except DecodeError:
            self.undecodable += 1
            return
        seq = decoded.seq if decoded.HasField("seq") else None
        if kind == "NBIRTH":
            self.births += 1
            with self._lock:
                self._last_seq = seq
            return
        if kind != "DDATA":  # DBIRTH, DDEATH, NDATA: in the seq count, not data samples
            self.device_births += kind == "DBIRTH"
            self._record(seq, len(payload), None, received, received_ms)
            return
        metrics = decoded.metrics
        data = DataMessage(
            len(metrics),
            np.fromiter((m.timestamp for m in metrics), dtype=np.float64, count=len(metrics)),
            sparkplug_non_good(payload, metrics),
            decoded.timestamp,
        )
        self._record(seq, len(payload), data, received, received_ms)

    def _seq_step(self, last: int | None, seq: int | None) -> tuple[int, int]:
        """(missing messages, out of order) between the previous ``seq`` and this one."""
        if last is None:
            return 0, 0
        if self.format == "json":
            if seq is None:
                return 0, 0
            if seq > last + 1:
                return seq - last - 1, 0
            return 0, int(seq <= last)
        if seq is None:
            return 1, 0
        return (seq - last - 1) % 256, 0

    def _record(self, seq: int | None, size: int, data: DataMessage | None, received: float,
                received_ms: float) -> None:  # fmt: skip
        """Count one message in the window (``data`` None: not a data message, only its seq)."""
        if data is not None:
            self.data_messages += 1
            self.samples_total += data.samples
            self._first_data.set()
        with self._lock:
            last, self._last_seq = self._last_seq, seq
            if data is not None:
                if self._state == "armed":
                    self._state, self._started = "recording", received
                elif self._state == "closing":
                    self._state, self._ended = "idle", received
                    self._window_done.set()
            if self._state != "recording":
                return
            w = self._window
            missing, out_of_order = self._seq_step(last, seq)
            if missing:
                w.seq_gaps += 1
                w.missing_messages += missing
            w.out_of_order += out_of_order
            if data is None:
                return
            w.messages += 1
            w.samples += data.samples
            w.payload_bytes += size
            w.non_good += data.non_good
            # ts is in whole ms (floored): receipt - ts over-states the latency by < 1 ms
            w.latencies_ms.append(received_ms - data.ts_ms)
            w.flush_to_receipt_ms.append(received_ms - data.flushed_ms)

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
    #: the payload contract, ``northbound.format``
    format: str = DEFAULT_FORMAT
    #: None: the gateway's default
    publish_interval: float | None = None
    #: None: the gateway's default
    max_samples_per_message: int | None = None
    #: the disk spool (the gateway's default) or the memory outbox
    spool: bool = True

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
    #: the northbound settings the gateway ran with (:func:`effective_northbound`)
    northbound: dict[str, Any]
    gateway_exit: int | None = None
    sim_stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    births: int = 0
    device_births: int = 0
    deaths: int = 0
    undecodable: int = 0


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


def run_benchmark(
    params: Params, keep_workdir: bool = False, workdir_parent: Path | None = None
) -> Measurement:
    """Start broker, simulators, gateway and subscriber; measure; stop them all."""
    broker = BenchBroker()  # FileNotFoundError without Mosquitto
    if workdir_parent is not None:
        workdir_parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="chenxing-bench-", dir=workdir_parent))
    sims: list[Child] = []
    gateway: Child | None = None
    subscriber: Subscriber | None = None
    try:
        broker.start()
        assert broker.pid is not None
        log.info("mosquitto on %s (pid %d)", broker.url, broker.pid)

        per_device = split_tags(params.tags, params.devices)
        sims = [start_modbus_bank(f"bank-{i}", n, workdir) for i, n in enumerate(per_device)]
        deadline = time.monotonic() + 30.0
        for sim in sims:
            wait_modbus_bank(sim, deadline)
        log.info("%d simulators on ports %s", len(sims), ", ".join(str(s.port) for s in sims))

        config = gateway_config(
            workdir,
            broker.port,
            [(s.name, s.port, n) for s, n in zip(sims, per_device, strict=True)],
            params,
        )
        config_path = workdir / "gateway.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        northbound = effective_northbound(config_path)
        cmd = [sys.executable, "-m", "gateway.cli.main", "run", "-c", str(config_path)]
        gateway_log = workdir / "gateway.log"
        gateway = spawn("gateway", cmd, gateway_log)
        log.info("gateway pid %d, poll interval %.3f s, northbound %s", gateway.pid,
                 params.poll_interval, northbound)  # fmt: skip

        # the subscriber's network thread starts only now: no fork() with a thread running
        subscriber = Subscriber(HOST, broker.port, params.format)
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
            northbound,
        )

        log.info("stopping the gateway (SIGTERM)")
        m.gateway_exit = gateway.stop(timeout=30.0)
        if m.gateway_exit != 0:
            log.error("gateway exited with %s:\n%s", m.gateway_exit, gateway.log_tail())
        time.sleep(0.2)  # the death message
        subscriber.stop()
        m.births, m.device_births, m.deaths, m.undecodable = (
            subscriber.births,
            subscriber.device_births,
            subscriber.deaths,
            subscriber.undecodable,
        )
        for sim in sims:
            stop_modbus_bank(sim)
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
            sim.close()
        broker.close()
        if keep_workdir:
            print(f"kept the work directory {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def build_result(params: Params, m: Measurement) -> dict[str, Any]:
    """The figures of one run: the body of its JSON result (:meth:`Run.document`)."""
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
        "parameters": {
            **asdict(params),
            "northbound": m.northbound,
            "subscriber_json_parser": JSON_PARSER,
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
            #: what the rest of the (shared) machine used meanwhile: busy cores - this run's
            "other_processes_cores": round(max(0.0, m.machine_cores - sum(cores.values())), 3),
            "simulators": {
                "cores_total": round(sum(sim_cores), 3),
                "cores_max": round(max(sim_cores), 3),
                "cpu_us_per_request": _per_request(sum(sim_cores), request_rate),
                "requests_whole_run": sum(int(s.get("requests", 0)) for s in m.sim_stats.values()),
            },
            "subscriber": {
                "births": m.births,
                "device_births": m.device_births,
                "deaths": m.deaths,
                "undecodable": m.undecodable,
            },
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
    nb = p["northbound"]
    lines = [
        f"pipeline benchmark: {p['tags']:,} tags on {p['devices']} simulated Modbus devices, "
        f"offered {offered} (poll every {p['poll_interval_s']:g} s), {r['window_s']:.1f} s window",
        f"northbound: {nb['format']}, data QoS {nb['data_qos']}, "
        + (f"disk spool ({nb['spool_filesystem']})" if nb["spool"] else "memory outbox")
        + f", publish interval {nb['publish_interval_s']:g} s, "
        f"<= {nb['max_samples_per_message']:,} samples per message",
        f"machine: {mach['nproc']} CPUs, {mach['cpu_model']}, Python {mach['python']}; "
        f"{load_note(mach['load_average_start'])} at the start",
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
        f"{_fmt(fl['max'], '.0f')} ms   (message ts -> receipt: encode, spool commit, MQTT, "
        "broker, decode; the rest is polling and waiting for the publish interval)",
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
        + f"; whole machine {r['machine_busy_cores']:.2f} of {mach['nproc']} "
        f"(other processes {r['other_processes_cores']:.2f})",
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
    defaults = NorthboundConfig()
    parser = argparse.ArgumentParser(
        prog="python -m bench.pipeline",
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
        "--format",
        choices=("sparkplug", "json"),
        default=DEFAULT_FORMAT,
        help=f"northbound.format (default the gateway's: {DEFAULT_FORMAT}); JSON publishes "
        "at mqtt.qos (default 1), Sparkplug data at sparkplug.data_qos (default 0)",
    )
    parser.add_argument(
        "--publish-interval",
        type=float,
        default=None,
        help=f"northbound.publish_interval in s (default the gateway's: "
        f"{defaults.publish_interval:g})",
    )
    parser.add_argument(
        "--max-samples",
        type=int,
        default=None,
        help=f"northbound.max_samples_per_message (default the gateway's: "
        f"{defaults.max_samples_per_message})",
    )
    parser.add_argument(
        "--no-spool",
        action="store_true",
        help="the memory outbox instead of the disk spool (the gateway's default)",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where the work directory (config, logs, the gateway's state and spool) goes; "
        "default the system's temporary directory (it should be a disk, not tmpfs)",
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
    if args.seconds <= 0 or args.warmup < 0:
        parser.error("--seconds must be positive, --warmup not negative")
    if args.publish_interval is not None and args.publish_interval <= 0:
        parser.error("--publish-interval must be positive")
    if args.max_samples is not None and not 1 <= args.max_samples <= 100_000:
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
        format=args.format,
        publish_interval=args.publish_interval,
        max_samples_per_message=args.max_samples,
        spool=not args.no_spool,
    )
    run = Run("pipeline", packages=("pymodbus",))
    try:
        with sigterm_as_interrupt():
            measurement = run_benchmark(params, args.keep_workdir, args.dir)
    except KeyboardInterrupt:
        print("interrupted; every child process was stopped", file=sys.stderr)
        return 130
    except (RuntimeError, OSError) as exc:  # TimeoutError is an OSError
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    result = run.document(build_result(params, measurement))
    out = run.save(result, args.out)
    print_summary(result, out)
    return 0 if measurement.gateway_exit == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
