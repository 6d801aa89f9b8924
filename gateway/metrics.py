"""Prometheus exposition of the gateway's live counters.

The runtime keeps plain counters (and histograms, gateway/histogram.py) in its own
objects; this collector reads them at scrape time, so there is one source of truth and
no global registry. Each scrape also has the standard process metrics (``process_*``:
memory, CPU, file descriptors), Python's (``python_info``, ``python_gc_*``),
``chenxing_build_info`` and the free space where the state directory lives.
"""

from __future__ import annotations

import asyncio
import gc
import os
import platform
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

import gateway
from gateway.histogram import Histogram
from gateway.northbound.outbox import OutboxStats
from gateway.pauses import Pauses

if TYPE_CHECKING:
    from gateway.runtime.gateway import Gateway

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class DeviceCollector(Collector):
    """The families with a series per device (and each driver's own): thousands of lines
    at thousands of devices, so :func:`render_async` makes them in a worker thread. They
    only read plain counters, each container copied in one step (``list``, ``sorted``),
    so a device changing on the event loop meanwhile is seen before or after, whole."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def collect(self) -> Iterator[Metric]:
        gw = self.gateway
        runners = list(gw.runners.items())
        device_counters = {
            "samples_read": ("chenxing_device_samples_read", "Samples read from the device"),
            "bad_samples": (
                "chenxing_device_bad_samples",
                "Samples read with a quality other than good",
            ),
            "polls": ("chenxing_device_polls", "Completed polls"),
            "overruns": (
                "chenxing_device_poll_overruns",
                "Poll ticks skipped because a poll ran late",
            ),
            "connects": ("chenxing_device_connects", "Successful connects"),
            "connect_failures": ("chenxing_device_connect_failures", "Failed connection attempts"),
            "connection_losses": (
                "chenxing_device_connection_losses",
                "Established connections lost",
            ),
            "crashes": (
                "chenxing_device_task_crashes",
                "Device task crashes (restarted with backoff)",
            ),
        }
        families = {
            key: CounterMetricFamily(name, doc, labels=["device"])
            for key, (name, doc) in device_counters.items()
        }
        errors = CounterMetricFamily(
            "chenxing_device_errors", "Device errors by kind", labels=["device", "kind"]
        )
        up = GaugeMetricFamily(
            "chenxing_device_up", "1 when the device is connected", labels=["device"]
        )
        last_success = GaugeMetricFamily(
            "chenxing_device_last_success_timestamp_seconds",
            "Unix time when the device last delivered a usable (good or uncertain) value; "
            "0 when it never did", labels=["device"])
        poll_seconds = HistogramMetricFamily(
            "chenxing_device_poll_duration_seconds",
            "Seconds one poll of a poll group took (the requests and their answers)",
            labels=["device", "group"])
        for name, runner in runners:
            device = runner.stats
            for key, family in families.items():
                family.add_metric([name], getattr(device, key))
            up.add_metric([name], 1.0 if device.state.value == "up" else 0.0)
            last_success.add_metric([name], device.last_success_ns / 1e9)
            for group, histogram in sorted(device.poll_seconds.items()):
                _add_histogram(poll_seconds, [name, group], histogram)
            if runner.driver is not None:
                for kind, count in sorted(runner.driver.errors.items()):
                    errors.add_metric([name, kind], count)
        yield from families.values()
        yield errors
        yield up
        yield last_success
        yield poll_seconds
        configs = {d.name: d for d in gw.config.devices}
        yield from gw.drivers.metrics(  # each driver's own families (its registration's)
            [(configs[n], r.driver) for n, r in runners if n in configs])


class GatewayCollector(Collector):
    """Everything else: one series or a few each, some read from state only the event
    loop may touch (the spool's)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def collect(self) -> Iterator[Metric]:
        gw = self.gateway
        reload_counters = getattr(gw, "reloads", None)
        if reload_counters is not None:
            reloads = CounterMetricFamily(
                "chenxing_config_reloads", "Config reloads (SIGHUP) by outcome", labels=["outcome"]
            )
            for outcome in ("applied", "unchanged", "refused", "invalid", "connect_failed",
                            "rolled_back"):
                reloads.add_metric([outcome], reload_counters.outcomes[outcome])
            yield reloads
        live = getattr(gw, "live", None)
        if live is not None:
            changes = CounterMetricFamily(
                "chenxing_config_changes", "Live config changes by source (file, api, brain, "
                "cli) and outcome (applied, rolled_back, refused...)", labels=["source", "outcome"])
            for (source, outcome), count in sorted(live.counters.outcomes.items()):
                changes.add_metric([source, outcome], count)
            yield changes
            if live.version is not None:
                yield GaugeMetricFamily("chenxing_config_version",
                                        "The config version running ({state_dir}/config)",
                                        value=live.version)

        pauses = getattr(gw, "pauses", None)
        if pauses is not None:
            yield from _pause_metrics(pauses)

        p = gw.pipeline.counters
        yield from _scalars(
            (_C, "chenxing_pipeline_samples_in", "Samples entering the pipeline", p.samples_in),
            (_C, "chenxing_pipeline_samples_suppressed", "Samples not published by deadband",
             p.samples_suppressed),
            (_C, "chenxing_pipeline_samples_invalid",
             "Samples with a non-finite value, published as bad", p.samples_invalid),
        )

        models = getattr(gw, "models", None)
        if models is not None:
            yield from models.metrics()  # per-model inferences, errors, latency, loads

        influxdb = getattr(gw, "influxdb", None)
        if influxdb is not None:
            from gateway.influxdb.metrics import sink_metrics

            yield from sink_metrics(influxdb)

        nb = gw.northbound
        if nb is None:
            return
        c = nb.counters
        stats = nb.outbox.stats()
        yield from _scalars(
            (_C, "chenxing_samples_published", "Samples acknowledged by the broker",
             c.samples_published),
            (_C, "chenxing_messages_published", "Messages acknowledged by the broker",
             c.messages_published),
            (_C, "chenxing_births", "Birth messages sent", c.births),
            (_C, "chenxing_encode_failures",
             "Data messages that could not be encoded (a bug; see the log)", c.encode_failures),
            (_C, "chenxing_encode_dropped_samples",
             "Samples dropped because their message could not be encoded",
             c.encode_dropped_samples),
            (_C, "chenxing_samples_dropped",
             "Samples dropped before reaching the broker (spool full, too old, purged)",
             stats.dropped_samples),
            (_C, "chenxing_messages_dropped",
             "Messages dropped before reaching the broker (spool full, too old, purged)",
             stats.dropped),
        )
        depth = GaugeMetricFamily(
            "chenxing_outbox_messages", "Messages in the outbox", labels=["state"]
        )
        depth.add_metric(["queued"], stats.queued)
        depth.add_metric(["inflight"], stats.inflight)
        yield depth
        yield from _spool_metrics(stats)
        yield from _scalars(
            (_C, "chenxing_spool_write_errors",
             "Spool transactions that failed (disk full, I/O error); the log sums them up",
             getattr(nb.outbox, "write_errors", 0)),
            (_G, "chenxing_northbound_buffered_samples",
             "Samples waiting to be gathered into a message", c.buffered_samples),
            (_G, "chenxing_mqtt_connected", "1 when connected to the broker",
             1.0 if nb.link.connected.is_set() else 0.0),
            (_C, "chenxing_mqtt_disconnects", "Broker connections lost", nb.link.disconnects),
        )
        yield InfoMetricFamily(
            "chenxing_mqtt_broker",
            "The broker connected to or being tried (northbound.mqtt.urls failover)",
            value={"url": nb.link.url},
        )
        age = HistogramMetricFamily(
            "chenxing_publish_value_age_seconds",
            "Age of the oldest value of each data message when it is handed to the broker "
            "(read to publish: pipeline, publish interval, spool)")
        _add_histogram(age, [], c.value_age)
        yield age
        yield from _scalars(
            (_C, "chenxing_mqtt_broker_switches",
             "Moves to the next broker after the current one was lost (failover)",
             getattr(nb.link, "broker_switches", 0)),
            (_G, "chenxing_uptime_seconds", "Seconds since the gateway started", gw.uptime_s),
            (_C, "chenxing_restricted_samples_withheld",
             "Samples of restricted tags kept in the gateway (northbound.publish_restricted off)",
             c.restricted_withheld),
        )
        yield from nb.contract.metrics()  # the contract's own (Sparkplug: births, STATE, ...)
        yield _C("chenxing_messages_taken_back",
                 "Messages of a dropped connection the broker may not have had (QoS 0 not "
                 "confirmed; QoS 1 unacknowledged, Sparkplug), sent again", value=c.taken_back)
        yield from _scalars(
            (_C, "chenxing_audit_lines", "Lines written to the audit log", gw.audit.lines),
            (_C, "chenxing_audit_write_errors",
             "Audit lines that could not be written (a full disk; see the log)", gw.audit.errors),
        )
        if gw.http_api is not None:
            refused = CounterMetricFamily(
                "chenxing_http_refused", "Local API requests refused: unauthenticated (wrong or "
                "no credentials), forbidden (role too low), login_failed, login_locked",
                labels=["reason"])
            for reason, count in gw.http_api.access_counts().items():
                refused.add_metric([reason], count)
            yield refused
        if gw.commands is not None:
            cc = gw.commands.counters
            commands = CounterMetricFamily(
                "chenxing_commands", "Commands from the brain by outcome", labels=["outcome"]
            )
            for outcome in ("accepted", "rejected", "failed", "duplicates"):
                commands.add_metric([outcome.rstrip("s")], getattr(cc, outcome))
            commands.add_metric(["ignored_empty"], cc.empty_ignored)
            yield commands
            yield CounterMetricFamily(
                "chenxing_command_writes", "Writes sent to devices by commands", value=cc.writes
            )


_C, _G = CounterMetricFamily, GaugeMetricFamily


def _scalars(
    *rows: tuple[type[CounterMetricFamily] | type[GaugeMetricFamily], str, str, float],
) -> Iterator[Metric]:
    """Unlabelled metrics, one per ``(family, name, help, value)`` row, in order."""
    for family, name, doc, value in rows:
        yield family(name, doc, value=value)


def _pause_metrics(pauses: Pauses) -> Iterator[Metric]:
    """Garbage-collector pauses by generation and event-loop stalls (gateway/pauses.py)."""
    gc_pauses = HistogramMetricFamily(
        "chenxing_gc_pause_seconds",
        "Pauses of the cyclic garbage collector (the whole process waits), by generation",
        labels=["generation"],
    )
    for generation, durations in enumerate(pauses.gc):
        gc_pauses.add_metric([str(generation)], durations.cumulative(), durations.total_s)
    yield gc_pauses
    stalls = HistogramMetricFamily(
        "chenxing_event_loop_stall_seconds",
        "How late the event loop woke a task asking to wake every 0.1 s (every poll waits "
        "as long)",
    )
    stalls.add_metric([], pauses.stalls.cumulative(), pauses.stalls.total_s)
    yield stalls
    yield from _scalars(
        (_G, "chenxing_gc_pause_longest_seconds", "Longest garbage-collector pause so far",
         max(d.longest_s for d in pauses.gc)),
        (_G, "chenxing_event_loop_stall_longest_seconds", "Longest event-loop stall so far",
         pauses.stalls.longest_s),
    )


def _spool_metrics(stats: OutboxStats) -> Iterator[Metric]:
    """The spool (or, when it is disabled, the in-memory outbox): size, age, drops by reason."""
    yield from _scalars(
        (_G, "chenxing_spool_messages", "Messages held (waiting and in flight)", stats.messages),
        (_G, "chenxing_spool_backlog_messages",
         "Messages from before the last reconnect still waiting to be replayed", stats.backlog),
        (_G, "chenxing_spool_bytes", "Payload and topic bytes held", stats.bytes),
        (_G, "chenxing_spool_oldest_age_seconds",
         "Age of the oldest message held (0 when empty)", stats.oldest_age_s),
    )
    messages = CounterMetricFamily(
        "chenxing_spool_dropped_messages",
        "Messages dropped before reaching the broker, by reason (full, age, purged, error)",
        labels=["reason"],
    )
    samples = CounterMetricFamily(
        "chenxing_spool_dropped_samples",
        "Samples dropped before reaching the broker, by reason (full, age, purged, error)",
        labels=["reason"],
    )
    for reason, count in stats.drops.items():
        messages.add_metric([reason], count.messages)
        samples.add_metric([reason], count.samples)
    yield messages
    yield samples


def _add_histogram(family: HistogramMetricFamily, labels: list[str],
                   histogram: Histogram) -> None:
    family.add_metric(labels, histogram.cumulative(), histogram.total)


def build_info() -> InfoMetricFamily:
    """``chenxing_build_info``: the version and what it runs on, as labels of a 1."""
    return InfoMetricFamily("chenxing_build", "The gateway's version and platform", value={
        "version": gateway.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "system": platform.system(),
    })


class _BoxCollector(Collector):
    """What the gateway knows of the box: its build, the free space of the state directory
    (the spool and sequence numbers live there)."""

    def __init__(self, gw: Gateway) -> None:
        self.gateway = gw

    def collect(self) -> Iterator[Metric]:
        yield build_info()
        try:
            fs = os.statvfs(self.gateway.config.gateway.state_dir)
        except OSError:
            return  # not there yet: nothing to say
        yield from _scalars(
            (_G, "chenxing_state_dir_free_bytes",
             "Bytes free to the gateway on the file system of the state directory",
             fs.f_bavail * fs.f_frsize),
            (_G, "chenxing_state_dir_size_bytes",
             "Size of the file system of the state directory", fs.f_blocks * fs.f_frsize),
        )


class _Collected(Collector):
    """Families collected already."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def _generate(collectors: list[Collector]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(standard)  # process_*, python_info, python_gc_*
    return generate_latest(registry)


def render(gateway: Gateway) -> bytes:
    """The exposition text, made here and now."""
    return _generate([DeviceCollector(gateway), GatewayCollector(gateway),
                      _BoxCollector(gateway)])


async def render_async(gateway: Gateway) -> bytes:
    """:func:`render` for the event loop: the few families of the gateway as a whole are
    collected here, the per-device ones and the text in a worker thread. At 2,000 devices
    a scrape is 72,000 lines and ~1 s of CPU; made on the loop it held every poll that
    long (a scrape in bench/scale.py's window: polls skipped, issue 21). The thread lets
    the loop run between its switch intervals."""
    whole = _Collected(list(GatewayCollector(gateway).collect()))
    return await asyncio.to_thread(_generate_uncollected, [DeviceCollector(gateway), whole,
                                                           _BoxCollector(gateway)])


def _generate_uncollected(collectors: list[Collector]) -> bytes:
    """:func:`_generate` with the garbage collector off meanwhile (unless it was off): a
    scrape at 2,000 devices makes ~150,000 short-lived objects (a sample and its labels
    per line), enough to start a dozen collections, each a pause of the whole process
    (the event loop's too) of 20-50 ms, where every one of them dies by its reference
    count once the text is made."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        return _generate(collectors)
    finally:
        if was_on:
            gc.enable()
