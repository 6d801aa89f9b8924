"""Northbound throughput against raw paho: JSON v1 and Sparkplug B, disk spool on and off,
spool write rate, and backlog replay after a broker outage.

Everything talks to one real Mosquitto (``hil.broker.MqttBroker``) on a loopback port;
a counting subscriber runs in a process of its own (``bench/northbound_subscriber.py``)
and checks that every published data message arrived (distinct ``seq``, gaps).

1. *Throughput*: the real publisher (:class:`~gateway.northbound.publisher.Publisher`
   with the JSON contract, or the Sparkplug edge node with ``data_qos: 1``) runs in
   this process with its batcher and sender;
   a producer keeps ``--depth`` messages' worth of synthetic SampleBatches
   (``--tags`` float tags over 4 devices, ``--samples-per-message`` per message)
   waiting, so it publishes as fast as acknowledgements allow through encoding, the
   outbox (disk spool or memory), the in-flight window (``--window``) and paho.
   *raw* is a bare paho client publishing the same payload bytes at QoS 1 with the
   same window (a semaphore released by ``on_publish``), in paho's own network thread
   (``loop_start``, paho's usual mode): the goal's reference. *raw-loop* is the same
   with paho driven by this process's event loop, as :class:`MqttLink` drives it: the
   transport's ceiling, reported as "vs loop" (what the gateway costs on top of the
   same transport). Figures: acknowledged
   messages/s and samples/s over ``--seconds``, after a warm-up. Sides are
   interleaved, ABBA order, ``--rounds`` times; ratios are of the medians and the
   median of each round's ours ÷ raw. Two of them head the report (``ratios``):
   *publish only* (``spool``: the encoding replaced by a cached copy; the goal is
   judged on it) and *end to end* (``spool+encode``: the contract encodes every
   message, as in the gateway).
2. *Spool write rate*: ``DiskSpool.put_many`` of the JSON payloads in transactions of
   one flush's worth of messages (raw rate x publish interval), put only and the whole
   put+take+ack+maintain life.
3. *Replay*: per format, spool on, live data at ``--live-rate`` messages/s; Mosquitto is
   stopped for ``--outage`` seconds while data keeps coming, then started again. The
   replay rate is the backlog (messages waiting at the reconnect) ÷ the time from the
   reconnect until its last message was acknowledged, live data flowing meanwhile;
   ``spool.replay_rate`` is set to ``--replay-rate`` (reported: it bounds the figure).
   raw publishes the same number of messages of the same size, before and after.

Run from the repository root with the virtualenv active::

    python -m bench.northbound [--seconds 5] [--rounds 3] [--outage 60]

Writes ``bench/results/northbound-<timestamp>.json``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.harness import (
    BENCH_DIR,
    BenchBroker,
    Child,
    Run,
    abba_order,
    load_note,
    ratio_figures,
    self_cpu,
    sigterm_as_interrupt,
    spawn,
)
from gateway.config.loader import load_config_text
from gateway.config.models import GatewayConfig
from gateway.northbound.contract import Contract
from gateway.northbound.contract_json import JsonContract
from gateway.northbound.message import OutboundMessage
from gateway.northbound.outbox import MemoryOutbox, Outbox
from gateway.northbound.publisher import Publisher
from gateway.northbound.sequence import SequenceStore
from gateway.northbound.sparkplug.bdseq import BdSeqStore
from gateway.northbound.sparkplug.edge_node import SparkplugEdgeNode
from gateway.northbound.sparkplug.payloads import CurrentValue, SparkplugPayloads
from gateway.northbound.sparkplug.wire import with_seq
from gateway.northbound.spool import DiskSpool, SpoolLimits
from gateway.tags import TagCatalog
from gateway.types import SampleBatch, now_ns

log = logging.getLogger("bench.northbound")

GOAL_THROUGHPUT = 0.8  # ours ÷ raw, spool on
# "Goal: >= 0.8 of raw with the spool on; replay at least as fast": the replay rate,
# also against raw, at least the same 0.8 (the ratio itself is reported, so the stricter
# reading, replay >= raw, can be read off it too)
GOAL_REPLAY = 0.8
DEVICES = 4


def pin_plan(pin: bool) -> tuple[set[int], set[int]] | None:
    """``--pin``: (the publisher's CPUs, the broker's and the subscriber's CPUs), the
    first CPU for this process and the others for the rest, as when the broker runs on
    another machine; None without ``--pin``."""
    if not pin:
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("--pin needs at least 2 CPUs")
    return {cpus[0]}, set(cpus[1:])


# --------------------------------------------------------------------------------------
# the subscriber process
# --------------------------------------------------------------------------------------


class Subscriber:
    """``bench/northbound_subscriber.py`` in a process of its own, asked over its stdin."""

    def __init__(self, host: str, port: int, workdir: Path, cpus: set[int] | None = None) -> None:
        script = BENCH_DIR / "northbound_subscriber.py"
        self.child: Child = spawn("subscriber", [sys.executable, str(script), host, str(port)],
                                  workdir / "subscriber.log", stdout_pipe=True, stdin_pipe=True,
                                  cpus=cpus)  # fmt: skip
        first = json.loads(self.child.read_line(timeout=30))
        if not first.get("ready"):
            raise RuntimeError(f"subscriber failed: {first}")

    def report(self, prefix: str) -> dict[str, int]:
        self.child.write_line(f"report {prefix}")
        return json.loads(self.child.read_line(timeout=30))  # type: ignore[no-any-return]

    async def settle(self, prefix: str, expected: int, key: str, timeout: float = 20.0) -> dict:  # type: ignore[type-arg]
        """Wait until ``key`` reaches ``expected`` (or stops growing for 2 s)."""
        loop = asyncio.get_running_loop()
        last, last_change = -1, loop.time()
        deadline = loop.time() + timeout
        while True:
            got = self.report(prefix)
            if got[key] >= expected or loop.time() > deadline:
                return got
            if got[key] != last:
                last, last_change = got[key], loop.time()
            elif loop.time() - last_change > 2.0:
                return got
            await asyncio.sleep(0.05)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.child.write_line("quit")
            self.child.popen.wait(5)
        self.child.stop(5)
        self.child.close()


# --------------------------------------------------------------------------------------
# configuration and the publisher under test
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Params:
    tags: int
    samples_per_message: int
    window: int
    seconds: float
    warmup: float
    rounds: int
    depth: int
    publish_interval: float
    outage: float
    live_rate: float
    replay_rate: float
    formats: list[str]
    workdir: Path
    with_encode: bool
    #: ``--pin``: the broker's and the subscriber's CPUs (this process has the first one)
    broker_cpus: tuple[int, ...] = ()


def make_config(p: Params, fmt: str, run: str, spool: bool, port: int) -> GatewayConfig:
    per_device = p.tags // DEVICES
    devices = [
        {"name": f"meter-{d}", "protocol": "modbus_tcp", "host": "127.0.0.1",
         "tags": [{"name": f"t{i}", "table": "input", "address": 2 * i, "type": "float32"}
                  for i in range(per_device)]}
        for d in range(DEVICES)
    ]  # fmt: skip
    state = p.workdir / run
    body = {
        "gateway": {"id": run, "site": "bench", "line": "l1", "state_dir": str(state)},
        "devices": devices,
        "northbound": {
            "format": fmt,
            "publish_interval": p.publish_interval,
            "max_samples_per_message": p.samples_per_message,
            "mqtt": {"host": "127.0.0.1", "port": port, "qos": 1,
                     "reconnect_min": 0.5, "reconnect_max": 1.0},
            "outbox": {"max_inflight": p.window, "max_messages": 1_000_000},
            "spool": {"enabled": spool, "max_bytes": 8 * 2**30, "replay_rate": p.replay_rate},
            "sparkplug": {"data_qos": 1},
        },
    }  # fmt: skip
    return load_config_text(json.dumps(body), f"{run}.yaml")


def build_publisher(config: GatewayConfig, catalog: TagCatalog) -> Publisher:
    nb = config.northbound
    state = config.gateway.state_dir
    outbox: Outbox
    if nb.spool.enabled:
        outbox = DiskSpool(nb.spool.resolved_path(state), SpoolLimits(nb.spool.max_bytes,
                                                                      nb.spool.max_age))
    else:
        outbox = MemoryOutbox(nb.outbox.max_messages)
    states = {d: "up" for d in catalog.devices()}
    client_id = f"bench-{config.gateway.id}"
    contract: Contract
    if nb.format == "sparkplug":
        contract = SparkplugEdgeNode(
            config, SparkplugPayloads(config, catalog, "bench"), BdSeqStore(state / "bdseq.json"),
            lambda: states, lambda tag_id: CurrentValue(None, None, 0), None,
        )  # fmt: skip
    else:
        contract = JsonContract(config, catalog, "bench", SequenceStore(state / "sequence.json"))
    return Publisher(nb, catalog, contract, outbox, client_id, None, lambda: states)


class CachedEncoding:
    """Replaces a contract's ``encode`` with a cached encoding of the same message, so a run
    measures the publish path (outbox, spool, sender, paho) without the encoder, whose
    cost is measured on its own. JSON messages still get their own ``seq``; Sparkplug
    messages are cached live and historical (encoded so while no session is up)."""

    def __init__(self, nb: Publisher, one_batch: SampleBatch) -> None:
        contract: Any = nb.contract
        self.contract = contract
        self.real = contract.encode
        self.sparkplug = contract.format == "sparkplug"
        self.cache: dict[tuple[Any, ...], tuple[OutboundMessage, bytes, bytes]] = {}
        contract.encode = self.encode

    def encode(self, part: SampleBatch, ts_ns: int, live: bool) -> OutboundMessage:
        if self.sparkplug:  # parts are one device's samples: cache by device, size, flag
            key = (int(part.tag_ids[0]), len(part), live)
            cached = self.cache.get(key)
            if cached is None:
                cached = self.cache[key] = (self.real(part, ts_ns, live), b"", b"")
            m = cached[0]
            return OutboundMessage(m.topic, m.payload, m.kind, m.qos, samples=m.samples,
                                   oldest_ns=m.oldest_ns)  # fmt: skip
        sequence = self.contract.sequence
        seq = sequence.peek
        parts = self.cache.get((len(part),))
        if parts is None:
            m = self.real(part, ts_ns, live)  # takes seq
            head, tail = m.payload.split(b'"seq":%d,' % seq, 1)
            self.cache[(len(part),)] = (m, head, tail)
            return m
        sequence.next()
        m, head, tail = parts
        return OutboundMessage(m.topic, b'%s"seq":%d,%s' % (head, seq, tail), "data", m.qos,
                               samples=m.samples, oldest_ns=m.oldest_ns, seq=seq)  # fmt: skip


def stream_prefix(config: GatewayConfig) -> str:
    """The subscriber's stream key for this publisher's data."""
    if config.northbound.format == "sparkplug":
        return f"spBv1.0/{config.gateway.site}/{config.gateway.id}"
    return f"chenxing/v1/{config.gateway.site}/{config.gateway.line}/{config.gateway.id}/data"


def sample_payloads(p: Params, fmt: str, port: int) -> list[bytes]:
    """Data payloads exactly as the publisher sends them, for the raw client."""
    config = make_config(p, fmt, "payloads", False, port)
    catalog = TagCatalog(config.devices)
    batch = full_batch(catalog)
    if fmt == "sparkplug":
        spb = SparkplugPayloads(config, catalog, "bench")
        msgs = spb.data(batch, now_ns(), p.samples_per_message)
        return [with_seq(m.payload, i % 256) for i, m in enumerate(msgs)]
    js = JsonContract(config, catalog, "bench")
    n = p.samples_per_message
    return [js.data(batch.select(slice(s, s + n)), 10**9 + s, 1, now_ns()).payload  # type: ignore[arg-type]
            for s in range(0, len(batch), n)]  # fmt: skip


def full_batch(catalog: TagCatalog) -> SampleBatch:
    n = len(catalog)
    rng = np.random.default_rng(1)
    return SampleBatch.of(np.arange(n), rng.normal(230.0, 5.0, n), now_ns())


# --------------------------------------------------------------------------------------
# measurements
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Measurement:
    side: str
    round: int
    messages: int
    samples: int
    seconds: float
    cpu_s: float
    bytes_per_message: float = 0.0
    #: the subscriber's view: messages that should have arrived, distinct ones that did
    expected: int = 0
    received: int = 0
    duplicates: int = 0
    gaps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    @property
    def samples_rate(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.received)


class RawPublisher:
    """A bare paho client, QoS 1, at most ``window`` unacknowledged publishes."""

    def __init__(self, host: str, port: int, client_id: str, window: int) -> None:
        self.window = threading.Semaphore(window)
        self.acked = 0
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.max_inflight_messages_set(65535)  # the semaphore is the window
        self.client.max_queued_messages_set(0)
        self.client.on_publish = self._on_publish
        self.client.on_connect = lambda *a: self._connected.set()
        self.client.connect(host, port, 60)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise RuntimeError("raw client: no CONNACK")

    def _on_publish(self, *args: object) -> None:
        with self._lock:
            self.acked += 1
        self.window.release()

    def publish(self, topic: str, payloads: list[bytes], stop: Callable[[int], bool]) -> int:
        sent = 0
        n = len(payloads)
        while not stop(sent):
            self.window.acquire()
            self.client.publish(topic, payloads[sent % n], 1)
            sent += 1
        return sent

    def drain(self, sent: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.acked < sent and time.monotonic() < deadline:
            time.sleep(0.005)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class TimedWindow:
    """The measurement window of a raw side: starts after ``warmup``, lasts ``seconds``;
    acknowledgements and CPU are read at both ends."""

    def __init__(self, warmup: float, seconds: float, acked: Callable[[], int]) -> None:
        self.warmup, self.seconds, self.acked = warmup, seconds, acked
        self.start = time.perf_counter()
        self.t0: float | None = None  # the window's start: time, acknowledged, CPU
        self.a0, self.c0 = 0, 0.0

    def over(self) -> bool:
        """Call before each publish: marks the start, True once the window has passed."""
        now = time.perf_counter()
        if self.t0 is None and now - self.start >= self.warmup:
            self.t0, self.a0, self.c0 = now, self.acked(), self_cpu()
        return now - self.start >= self.warmup + self.seconds

    def result(self, sent: int) -> tuple[int, float, float, int]:
        """(acknowledged in the window, window seconds, CPU seconds, sent in all); call
        right after the last publish."""
        assert self.t0 is not None, "the window ended before the warm-up did"
        return self.acked() - self.a0, time.perf_counter() - self.t0, self_cpu() - self.c0, sent


def raw_timed(host: str, port: int, topic: str, payloads: list[bytes], window: int,
              warmup: float, seconds: float) -> tuple[int, float, float, int]:  # fmt: skip
    """(acknowledged in the window, window seconds, CPU seconds, sent in all)."""
    raw = RawPublisher(host, port, f"bench-raw-{topic.rsplit('/', 1)[-1]}", window)
    timed = TimedWindow(warmup, seconds, lambda: raw.acked)
    sent = raw.publish(topic, payloads, lambda sent: timed.over())
    result = timed.result(sent)
    raw.drain(sent)
    raw.close()
    return result


def raw_count(host: str, port: int, topic: str, payloads: list[bytes], window: int,
              count: int) -> tuple[float, float]:  # fmt: skip
    """Publish ``count`` messages; (seconds until the last acknowledgement, CPU seconds)."""
    raw = RawPublisher(host, port, f"bench-raw-{topic.rsplit('/', 1)[-1]}", window)
    c0, t0 = self_cpu(), time.perf_counter()
    sent = raw.publish(topic, payloads, lambda s: s >= count)
    raw.drain(sent)
    elapsed, cpu = time.perf_counter() - t0, self_cpu() - c0
    raw.close()
    return elapsed, cpu


async def raw_loop_timed(
    host: str, port: int, topic: str, payloads: list[bytes], window: int, warmup: float,
    seconds: float,
) -> tuple[int, float, float, int]:
    """:func:`raw_timed` with paho driven by this event loop instead of its own thread
    (``add_reader``/``add_writer``, as :class:`MqttLink` does): the transport's own
    ceiling, with nothing of the gateway on top."""
    loop = asyncio.get_running_loop()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-rawloop-{topic[-12:]}")
    client.max_inflight_messages_set(65535)
    client.max_queued_messages_set(0)
    slots = asyncio.Semaphore(window)
    acked = [0]
    connected = asyncio.Event()

    def on_publish(*args: object) -> None:
        acked[0] += 1
        slots.release()

    client.on_publish = on_publish
    client.on_connect = lambda *a: connected.set()
    client.on_socket_open = lambda c, u, sock: loop.add_reader(sock, client.loop_read)
    client.on_socket_close = lambda c, u, sock: loop.remove_reader(sock)
    client.on_socket_register_write = lambda c, u, sock: loop.add_writer(sock, client.loop_write)
    client.on_socket_unregister_write = lambda c, u, sock: loop.remove_writer(sock)
    client.connect(host, port, 60)
    await asyncio.wait_for(connected.wait(), 10)
    timed = TimedWindow(warmup, seconds, lambda: acked[0])
    sent, n = 0, len(payloads)
    while not timed.over():
        await slots.acquire()
        client.publish(topic, payloads[sent % n], 1)
        sent += 1
    result = timed.result(sent)
    await wait_for(lambda: acked[0] >= sent, 30, "raw-loop: not all acknowledged")
    client.disconnect()
    await wait_for(lambda: client.socket() is None, 5, "raw-loop: no disconnect")
    return result


async def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.01)


def session_up(nb: Publisher) -> bool:
    return nb.in_session() and not nb._inflight


def queued(outbox: Outbox) -> int:
    """Live messages not yet handed out, including those whose commit is running (which
    ``stats`` does not count yet); without ``DiskSpool.stats``'s query of the oldest age."""
    if isinstance(outbox, DiskSpool):
        return int(outbox._next_id - 1 - outbox._live_cursor)  # instrumentation only
    return outbox.stats().queued


async def keep_full(nb: Publisher, batch: SampleBatch, depth: int, spm: int) -> None:
    """Keep about ``depth`` messages waiting (buffered or in the outbox)."""
    per_batch = -(-len(batch) // spm)
    tick = nb.config.publish_interval / 4
    while True:
        waiting = queued(nb.outbox) + nb.counters.buffered_samples // spm
        for _ in range(max(0, depth - waiting) // per_batch):
            nb.submit(batch)
        await asyncio.sleep(tick)


async def produce_at(nb: Publisher, batch: SampleBatch, messages_per_s: float, spm: int,
                     produced: list[int]) -> None:  # fmt: skip
    """Submit whole batches at ``messages_per_s`` (``produced[0]`` counts messages)."""
    per_batch = -(-len(batch) // spm)
    start = time.monotonic()
    while True:
        due = int((time.monotonic() - start) * messages_per_s / per_batch)
        while produced[0] // per_batch < due:
            nb.submit(SampleBatch.of(batch.tag_ids, batch.values, now_ns()))
            produced[0] += per_batch
        await asyncio.sleep(0.01)


async def ours_timed(p: Params, fmt: str, spool: bool, encode: bool, run: str, port: int,
                     sub: Subscriber) -> Measurement:  # fmt: skip
    config = make_config(p, fmt, run, spool, port)
    catalog = TagCatalog(config.devices)
    nb = build_publisher(config, catalog)
    if not encode:
        CachedEncoding(nb, full_batch(catalog))
    task = asyncio.create_task(nb.run())
    producer: asyncio.Task[None] | None = None
    try:
        await wait_for(lambda: session_up(nb), 10, "no session")
        producer = asyncio.create_task(
            keep_full(nb, full_batch(catalog), p.depth, p.samples_per_message))
        await asyncio.sleep(p.warmup)
        c0, t0 = self_cpu(), time.perf_counter()
        m0, s0 = nb.counters.messages_published, nb.counters.samples_published
        await asyncio.sleep(p.seconds)
        c1, t1 = self_cpu(), time.perf_counter()
        m1, s1 = nb.counters.messages_published, nb.counters.samples_published
        producer.cancel()
        nb.flush()
        if not await nb.drain(30):
            log.warning("%s: not drained", run)
        expected = nb.contract.sequence.peek if fmt == "json" else None  # type: ignore[attr-defined]
        data_sent = nb.counters.messages_published
    finally:
        if producer is not None:
            producer.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await nb.stop()
    prefix = stream_prefix(config)
    if fmt == "json":
        got = await sub.settle(prefix, expected or 0, "distinct_seq")
        exp, rec = expected or 0, got["distinct_seq"]
    else:
        got = await sub.settle(prefix, data_sent, "messages")
        exp, rec = data_sent, got["messages"]
    side = f"{fmt}-{'spool' if spool else 'memory'}{'+encode' if encode else ''}"
    return Measurement(side, 0, m1 - m0, s1 - s0, t1 - t0, c1 - c0,
                       got["bytes"] / max(1, got["messages"]), exp, rec,
                       got["duplicates"], got["gaps"])  # fmt: skip


# --------------------------------------------------------------------------------------
# rounds and summaries
# --------------------------------------------------------------------------------------


def summarise(ms: list[Measurement], baseline: str) -> dict[str, Any]:
    by_side: dict[str, list[Measurement]] = {}
    for m in ms:
        by_side.setdefault(m.side, []).append(m)
    out: dict[str, Any] = {}
    raw = {m.round: m.rate for m in by_side[baseline]}
    loop = {m.round: m.rate for m in by_side.get(f"{baseline}-loop", [])}
    for side, xs in by_side.items():
        rates = {m.round: m.rate for m in xs}
        to_raw = ratio_figures(rates, raw)
        out[side] = {
            "messages_per_s_median": round(statistics.median(rates.values()), 1),
            "samples_per_s_median": round(statistics.median(m.samples_rate for m in xs), 1),
            "cpu_ms_per_message_median": round(
                statistics.median(1000 * m.cpu_s / max(1, m.messages) for m in xs), 4),
            "bytes_per_message": round(statistics.median(m.bytes_per_message for m in xs)),
            "ratio_of_medians": to_raw["ratio_of_medians"],
            "median_of_round_ratios": to_raw["median_of_round_ratios"],
            #: against paho on the event loop (the transport MqttLink uses)
            "ratio_to_raw_loop": ratio_figures(rates, loop)["ratio_of_medians"],
            "rounds": [round(m.rate, 1) for m in xs],
            "lost": sum(m.lost for m in xs),
            "duplicates": sum(m.duplicates for m in xs),
            "gaps": sum(m.gaps for m in xs),
        }
    return out


def headline_ratios(fmt: str, sides: dict[str, Any]) -> dict[str, Any]:
    """Ours ÷ raw paho with the disk spool on, two ways: *publish only* (the payload encoding
    replaced by a cached copy: outbox, spool, in-flight window, paho; the goal is judged on
    it) and *end to end* (the contract encodes every message, as in the gateway). raw
    publishes ready bytes in both."""

    def figures(side: str) -> dict[str, Any] | None:
        s = sides.get(side)
        if s is None:
            return None
        judged = s["median_of_round_ratios"]
        return {
            "side": side,
            "messages_per_s_median": s["messages_per_s_median"],
            "median_of_round_ratios": judged,
            "ratio_of_medians": s["ratio_of_medians"],
            "ratio_to_raw_loop": s["ratio_to_raw_loop"],
            "at_least_goal": None if judged is None else judged >= GOAL_THROUGHPUT,
        }

    return {
        "publish_only": figures(f"{fmt}-spool"),
        "end_to_end": figures(f"{fmt}-spool+encode"),
        "judged": "publish_only",
        "goal": GOAL_THROUGHPUT,
    }


async def throughput(p: Params, broker: BenchBroker, sub: Subscriber, fmt: str,
                     counter: list[int]) -> tuple[list[Measurement], dict[str, Any]]:  # fmt: skip
    payloads = sample_payloads(p, fmt, broker.port)
    spm = p.samples_per_message

    def raw(side: str, timed: Callable[..., Awaitable[tuple[int, float, float, int]]]
            ) -> Callable[[], Awaitable[Measurement]]:  # fmt: skip
        async def run() -> Measurement:
            counter[0] += 1
            topic = f"bench/raw/{fmt}-{counter[0]}"
            acked, secs, cpu, sent = await timed(
                broker.host, broker.port, topic, payloads, p.window, p.warmup, p.seconds)
            got = await sub.settle(topic, sent, "messages")
            return Measurement(side, 0, acked, acked * spm, secs, cpu,
                               got["bytes"] / max(1, got["messages"]), sent, got["messages"])
        return run

    def in_thread(*args: Any) -> Awaitable[tuple[int, float, float, int]]:
        return asyncio.to_thread(raw_timed, *args)

    def ours(spool: bool, encode: bool = False) -> Callable[[], Awaitable[Measurement]]:
        async def run() -> Measurement:
            counter[0] += 1
            return await ours_timed(p, fmt, spool, encode, f"gw{counter[0]}", broker.port, sub)
        return run

    sides: dict[str, Callable[[], Awaitable[Measurement]]] = {
        f"{fmt}-spool": ours(True), f"{fmt}-raw": raw(f"{fmt}-raw", in_thread),
        f"{fmt}-memory": ours(False), f"{fmt}-raw-loop": raw(f"{fmt}-raw-loop", raw_loop_timed),
    }
    if p.with_encode:
        sides[f"{fmt}-spool+encode"] = ours(True, encode=True)
    ms: list[Measurement] = []
    for r in range(p.rounds):
        for side in abba_order(list(sides), r):
            m = await sides[side]()
            m.round = r
            log.info("round %d %-18s %8.0f msg/s %10.0f samples/s  %.3f ms CPU/msg  lost %d "
                     "dup %d gaps %d", r + 1, side, m.rate, m.samples_rate,
                     1000 * m.cpu_s / max(1, m.messages), m.lost, m.duplicates, m.gaps)
            ms.append(m)
    return ms, summarise(ms, f"{fmt}-raw")


def spool_write_rate(p: Params, payload: bytes, per_flush: int, seconds: float,
                     cycle: bool) -> dict[str, Any]:  # fmt: skip
    path = p.workdir / f"spool-write-{int(cycle)}.db"
    spool = DiskSpool(path, SpoolLimits(1 << 40, 1e9))
    topic = "chenxing/v1/bench/l1/spool/data"
    messages, commits = 0, []
    start = time.perf_counter()
    c0 = self_cpu()
    while time.perf_counter() - start < seconds:
        batch = [OutboundMessage(topic, payload, "data", samples=p.samples_per_message,
                                 seq=messages + i) for i in range(per_flush)]  # fmt: skip
        t = time.perf_counter()
        spool.put_many(batch)
        if cycle:
            while (m := spool.take()) is not None:
                spool.ack(m.id)
            spool.maintain()
        commits.append(time.perf_counter() - t)
        messages += per_flush
    elapsed, cpu = time.perf_counter() - start, self_cpu() - c0
    spool.close()
    ms = sorted(1000 * c for c in commits)
    return {
        "mode": "put+take+ack+maintain" if cycle else "put",
        "messages_per_flush": per_flush,
        "messages_per_s": round(messages / elapsed, 1),
        "mb_per_s": round(messages * len(payload) / elapsed / 1e6, 1),
        "cpu_ms_per_message": round(1000 * cpu / messages, 4),
        "flush_ms_p50": round(statistics.median(ms), 3),
        "flush_ms_p99": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 3),
    }


async def replay(p: Params, broker: BenchBroker, sub: Subscriber, fmt: str,
                 counter: list[int]) -> dict[str, Any]:  # fmt: skip
    counter[0] += 1
    run = f"gw{counter[0]}"
    config = make_config(p, fmt, run, True, broker.port)
    catalog = TagCatalog(config.devices)
    nb = build_publisher(config, catalog)
    outbox = nb.outbox
    mark: dict[str, float] = {}
    acked_backlog = [0]
    real_mark, real_ack = outbox.mark_backlog, outbox.ack

    def mark_backlog() -> int:  # instrumentation: when the replay starts and its size
        n = real_mark()
        if broker_restarted.is_set() and "t0" not in mark:
            mark.update(t0=time.perf_counter(), backlog=n, top=outbox_top())
        return n

    def ack(message_id: int) -> None:
        real_ack(message_id)
        if "t0" in mark and message_id <= mark["top"]:
            acked_backlog[0] += 1
            if acked_backlog[0] == mark["backlog"]:
                mark["t1"] = time.perf_counter()

    def outbox_top() -> int:
        return int(outbox._next_id) - 1  # type: ignore[attr-defined]

    broker_restarted = threading.Event()
    outbox.mark_backlog = mark_backlog  # type: ignore[method-assign]
    outbox.ack = ack  # type: ignore[method-assign]
    produced = [0]
    task = asyncio.create_task(nb.run())
    producer: asyncio.Task[None] | None = None
    try:
        await wait_for(lambda: session_up(nb), 10, "no session")
        producer = asyncio.create_task(
            produce_at(nb, full_batch(catalog), p.live_rate, p.samples_per_message, produced))
        await asyncio.sleep(2.0)
        log.info("%s: stopping the broker for %.0f s", fmt, p.outage)
        await asyncio.to_thread(broker.stop)
        await asyncio.sleep(p.outage)
        waiting = outbox.stats().queued
        broker_restarted.set()
        await asyncio.to_thread(broker.start)
        c0 = self_cpu()
        await wait_for(lambda: "t1" in mark, 600, "backlog not drained")
        cpu = self_cpu() - c0
        secs = mark["t1"] - mark["t0"]
        live_during = produced[0]
        await asyncio.sleep(1.0)
        producer.cancel()
        nb.flush()
        await nb.drain(60)
        expected = (nb.contract.sequence.peek if fmt == "json"  # type: ignore[attr-defined]
                    else nb.counters.messages_published)
        spb = asdict(nb.contract.counters) if fmt == "sparkplug" else {}  # type: ignore[attr-defined]
    finally:
        if producer is not None:
            producer.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await nb.stop()
    prefix = stream_prefix(config)
    key = "distinct_seq" if fmt == "json" else "messages"
    got = await sub.settle(prefix, expected, key, timeout=60)
    backlog = int(mark["backlog"])
    payloads = sample_payloads(p, fmt, broker.port)
    raws = []
    for i in range(2):
        topic = f"bench/raw/replay-{fmt}-{counter[0]}-{i}"
        elapsed, rcpu = await asyncio.to_thread(
            raw_count, broker.host, broker.port, topic, payloads, p.window, backlog)
        sub_got = await sub.settle(topic, backlog, "messages")
        raws.append({"messages_per_s": round(backlog / elapsed, 1),
                     "cpu_ms_per_message": round(1000 * rcpu / backlog, 4),
                     "lost": backlog - sub_got["messages"]})  # fmt: skip
    raw_rate = statistics.median(r["messages_per_s"] for r in raws)
    rate = backlog / secs
    return {
        "format": fmt,
        "outage_s": p.outage,
        "live_rate_messages_per_s": p.live_rate,
        "replay_rate_bound": p.replay_rate,
        "waiting_at_restart": waiting,
        "backlog": backlog,
        "drain_s": round(secs, 3),
        "replay_messages_per_s": round(rate, 1),
        "replay_samples_per_s": round(rate * p.samples_per_message, 1),
        "cpu_ms_per_message": round(1000 * cpu / max(1, backlog), 4),
        "live_messages_produced": live_during,
        "raw": raws,
        "raw_messages_per_s_median": raw_rate,
        "ratio": round(rate / raw_rate, 3) if raw_rate else None,
        "expected": expected,
        "received": got[key],
        "lost": max(0, expected - got[key]),
        "duplicates": got["duplicates"] if fmt == "json" else max(0, got["messages"] - expected),
        "gaps": got["gaps"],
        "out_of_order": got["out_of_order"],
        "sparkplug": spb,
    }


# --------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------


def _verdict(ratio: float | None, goal: float) -> str:
    return "n/a" if ratio is None else ("PASS" if ratio >= goal else "MISS")


def _ratio_text(r: dict[str, Any] | None, label: str, judged: bool) -> str:
    if r is None:
        return f"{label}: not measured" + ("" if judged else " (--no-encode)")
    judged_ratio = r["median_of_round_ratios"]
    text = f"{label} {judged_ratio or 0:.2f} ({r['ratio_of_medians'] or 0:.2f})"
    if judged:
        return text + f", goal >= {GOAL_THROUGHPUT}: {_verdict(judged_ratio, GOAL_THROUGHPUT)}"
    side = "at least" if r["at_least_goal"] else "below"
    return text + f", {side} {GOAL_THROUGHPUT} (not judged)"


def print_report(result: dict[str, Any]) -> None:
    print(f"\nnorthbound: {result['parameters']['samples_per_message']} samples/message, "
          f"window {result['parameters']['window']}, {result['parameters']['rounds']} rounds "
          f"of {result['parameters']['seconds']} s (medians)")  # fmt: skip
    print(f"{'side':<18} {'msg/s':>9} {'samples/s':>11} {'B/msg':>7} {'CPU ms/msg':>10} "
          f"{'ratio med':>9} {'med rounds':>10} {'vs loop':>7}  {'lost/dup/gaps':>13}  "
          "goal")  # fmt: skip
    for sides in result["throughput"].values():
        for side, s in sides.items():
            goal = ""
            if side.endswith("-spool"):
                goal = (f">= {GOAL_THROUGHPUT}: "
                        f"{_verdict(s['median_of_round_ratios'], GOAL_THROUGHPUT)}")
            print(f"{side:<18} {s['messages_per_s_median']:>9,.0f} "
                  f"{s['samples_per_s_median']:>11,.0f} {s['bytes_per_message']:>7,} "
                  f"{s['cpu_ms_per_message_median']:>10.3f} {s['ratio_of_medians']:>9.3f} "
                  f"{s['median_of_round_ratios'] or 0:>10.3f} {s['ratio_to_raw_loop'] or 0:>7.3f}  "
                  f"{s['lost']:>4}/{s['duplicates']}/{s['gaps']:<5}  {goal}")  # fmt: skip
    print("\nours ÷ raw paho, disk spool on: median of rounds (ratio of medians); raw publishes "
          "ready bytes")  # fmt: skip
    for fmt, r in result.get("ratios", {}).items():
        print(f"  {fmt:<10} {_ratio_text(r['publish_only'], 'publish only', judged=True)};  "
              f"{_ratio_text(r['end_to_end'], 'end to end (encode + publish)', judged=False)}")
    for w in result.get("spool_write", []):
        print(f"spool write ({w['mode']}, {w['messages_per_flush']}/flush): "
              f"{w['messages_per_s']:,.0f} msg/s, {w['mb_per_s']} MB/s, flush p50/p99 "
              f"{w['flush_ms_p50']}/{w['flush_ms_p99']} ms; "
              f"x{w['ratio_to_raw']} of raw json")  # fmt: skip
    for r in result.get("replay", []):
        print(f"replay {r['format']}: {r['backlog']:,} messages after {r['outage_s']:.0f} s "
              f"outage in {r['drain_s']} s = {r['replay_messages_per_s']:,.0f} msg/s "
              f"(bound {r['replay_rate_bound']:,.0f}/s) vs raw "
              f"{r['raw_messages_per_s_median']:,.0f} msg/s: ratio {r['ratio']} "
              f"(goal >= {GOAL_REPLAY}: "
              f"{_verdict(r['ratio'], GOAL_REPLAY)}); lost {r['lost']}, dup {r['duplicates']}, "
              f"gaps {r['gaps']}, out of order {r['out_of_order']}")  # fmt: skip


async def run(p: Params, skip_replay: bool) -> dict[str, Any]:
    counter = [0]
    result: dict[str, Any] = {"throughput": {}, "ratios": {}, "replay": [], "spool_write": []}
    # persistence: the subscriber's session (clean_session off) and what is queued for it
    # survive the outage, so data the gateway replays before the subscriber is back is
    # still counted
    others = set(p.broker_cpus) or None
    with BenchBroker(persistence=True, cpus=others) as broker:
        sub = Subscriber(broker.host, broker.port, p.workdir, others)
        try:
            for fmt in p.formats:
                _, summary = await throughput(p, broker, sub, fmt, counter)
                result["throughput"][fmt] = summary
                result["ratios"][fmt] = headline_ratios(fmt, summary)
            raw_json = result["throughput"].get("json", {}).get("json-raw")
            payload = sample_payloads(p, "json", broker.port)[0]
            raw_rate = raw_json["messages_per_s_median"] if raw_json else 2000.0
            per_flush = max(1, round(raw_rate * p.publish_interval))
            for cycle in (False, True):
                w = spool_write_rate(p, payload, per_flush, 3.0, cycle)
                w["ratio_to_raw"] = round(w["messages_per_s"] / raw_rate, 2)
                w["payload_bytes"] = len(payload)
                result["spool_write"].append(w)
            if not skip_replay:
                for fmt in p.formats:
                    result["replay"].append(await replay(p, broker, sub, fmt, counter))
        finally:
            sub.close()
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tags", type=int, default=2000, help="tags over 4 devices")
    ap.add_argument("--samples-per-message", type=int, default=500)
    ap.add_argument("--window", type=int, default=32, help="max in flight (outbox.max_inflight)")
    ap.add_argument("--seconds", type=float, default=5.0, help="measurement window per run")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--depth", type=int, default=800, help="messages kept waiting (ours)")
    ap.add_argument("--publish-interval", type=float, default=0.05)
    ap.add_argument("--outage", type=float, default=60.0, help="broker down (s) for replay")
    ap.add_argument("--live-rate", type=float, default=100.0,
                    help="messages/s produced during and after the outage")  # fmt: skip
    ap.add_argument("--replay-rate", type=float, default=1e6, help="spool.replay_rate")
    ap.add_argument("--formats", default="json,sparkplug")
    ap.add_argument("--skip-replay", action="store_true")
    ap.add_argument("--no-encode", action="store_true",
                    help="skip the spool+encode side (publish path with the real encoder)")
    ap.add_argument("--dir", type=Path, default=Path("var/bench-northbound"),
                    help="spool files (a real disk, not tmpfs)")  # fmt: skip
    ap.add_argument("--pin", action="store_true",
                    help="this process (ours and raw) on the first CPU, the broker and the "
                         "subscriber on the others, as when the broker is another machine")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")  # fmt: skip
    if not args.verbose:
        logging.getLogger("bench.northbound").setLevel(logging.INFO)
    args.dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="nb-", dir=args.dir))
    p = Params(args.tags, args.samples_per_message, args.window, args.seconds, args.warmup,
               args.rounds, args.depth, args.publish_interval, args.outage, args.live_rate,
               args.replay_rate, args.formats.split(","), workdir, not args.no_encode)  # fmt: skip
    plan = pin_plan(args.pin)
    if plan is not None:  # before any thread starts: threads inherit the main thread's
        os.sched_setaffinity(0, plan[0])
        p.broker_cpus = tuple(sorted(plan[1]))
    bench_run = Run("northbound")
    print(f"northbound: {load_note(bench_run.load_at_start)} at the start")
    try:
        with sigterm_as_interrupt():
            result = asyncio.run(run(p, args.skip_replay))
    except KeyboardInterrupt:
        print("interrupted; every child process was stopped", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    params = {k: v for k, v in asdict(p).items() if k != "workdir"}
    document = bench_run.document({
        "parameters": params,
        "goals": {"throughput_ratio_spool_on": GOAL_THROUGHPUT, "replay_ratio": GOAL_REPLAY,
                  "judged_throughput_ratio": "publish_only"},
        **result,
    })  # fmt: skip
    print_report(document)
    out = bench_run.save(document, args.out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
