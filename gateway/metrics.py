"""Prometheus exposition of the gateway's live counters.

The runtime keeps plain counters (and histograms, gateway/histogram.py) in its own
objects; this collector reads them at scrape time, so there is one source of truth and
no global registry. Each scrape also has the standard process metrics (``process_*``:
memory, CPU, file descriptors), Python's (``python_info``, ``python_gc_*``),
``chenxing_build_info`` and the free space where the state directory lives.

The families with a series per device (tens of thousands of lines at thousands of devices)
are written as text by this module (:class:`DeviceText`), on the event loop a few devices
at a time; the others go through prometheus_client's ``generate_latest``. Both write the
same bytes for the same families (tests/gateway/test_metrics_text.py).
"""

from __future__ import annotations

import asyncio
import functools
import os
import platform
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol, cast

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
from prometheus_client.openmetrics.exposition import escape_label_name, escape_metric_name
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

import gateway
from gateway.histogram import Histogram
from gateway.northbound.outbox import OutboxStats
from gateway.pauses import Pauses

if TYPE_CHECKING:
    from gateway.runtime.device_runner import DeviceRunner
    from gateway.runtime.gateway import Gateway

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ValueFamily(Protocol):
    """A counter or gauge family being filled: prometheus_client's, or :class:`TextFamily`."""

    def add_metric(self, labels: Sequence[str], value: float) -> None: ...


class HistogramFamily(Protocol):
    def add_metric(self, labels: Sequence[str], buckets: Sequence[tuple[str, float]],
                   sum_value: float | None) -> None: ...


class DeviceSeries:
    """The families with a series per device (the runners' counters, state, poll times):
    ~36 lines a device, 72,000 at 2,000 devices. Written once for both kinds of family:
    :class:`TextFamily` (what ``/metrics`` serves) and prometheus_client's own (what
    tests/gateway/test_metrics_text.py compares its text with)."""

    def __init__(self, counter: Callable[..., ValueFamily], gauge: Callable[..., ValueFamily],
                 histogram: Callable[..., HistogramFamily]) -> None:
        self.counters = [(key, counter(name, doc, labels=["device"]))
                         for key, name, doc in _DEVICE_COUNTERS]
        self.errors = counter("chenxing_device_errors", "Device errors by kind",
                              labels=["device", "kind"])
        self.up = gauge("chenxing_device_up", "1 when the device is connected", labels=["device"])
        self.last_success = gauge(
            "chenxing_device_last_success_timestamp_seconds",
            "Unix time when the device last delivered a usable (good or uncertain) value; "
            "0 when it never did", labels=["device"])
        self.poll_seconds = histogram(
            "chenxing_device_poll_duration_seconds",
            "Seconds one poll of a poll group took (the requests and their answers)",
            labels=["device", "group"])

    def add(self, name: str, runner: DeviceRunner) -> None:
        """The series of one device. They only read plain counters, each container copied
        in one step (``sorted``), so a device changing meanwhile is seen before or after."""
        device = runner.stats
        labels = [name]
        for key, family in self.counters:
            family.add_metric(labels, getattr(device, key))
        self.up.add_metric(labels, 1.0 if device.state.value == "up" else 0.0)
        self.last_success.add_metric(labels, device.last_success_ns / 1e9)
        for group, histogram in sorted(device.poll_seconds.items()):
            self.poll_seconds.add_metric([name, group], histogram.cumulative(), histogram.total)
        if runner.driver is not None:
            for kind, count in sorted(runner.driver.errors.items()):
                self.errors.add_metric([name, kind], count)

    def families(self) -> list[object]:
        """In the order ``/metrics`` has them."""
        return [*(f for _, f in self.counters), self.errors, self.up, self.last_success,
                self.poll_seconds]


_DEVICE_COUNTERS = (
    ("samples_read", "chenxing_device_samples_read", "Samples read from the device"),
    ("bad_samples", "chenxing_device_bad_samples", "Samples read with a quality other than good"),
    ("polls", "chenxing_device_polls", "Completed polls"),
    ("overruns", "chenxing_device_poll_overruns", "Poll ticks skipped because a poll ran late"),
    ("connects", "chenxing_device_connects", "Successful connects"),
    ("connect_failures", "chenxing_device_connect_failures", "Failed connection attempts"),
    ("connection_losses", "chenxing_device_connection_losses", "Established connections lost"),
    ("crashes", "chenxing_device_task_crashes", "Device task crashes (restarted with backoff)"),
)

#: devices whose series one step of :func:`render_async` makes (the event loop runs between
#: steps): ~5 ms of CPU at 50 devices of 100 tags
DEVICES_PER_STEP = 50


class DeviceText:
    """The per-device families and each driver's own as exposition text, made
    :data:`DEVICES_PER_STEP` devices at a time (:meth:`steps`).

    At 2,000 devices a scrape was ~1.2 s of CPU with prometheus_client (a ``Sample`` and a
    dict of labels per line, then the text); made in a worker thread the event loop waited
    for the GIL behind it at every socket call (stalls of 0.1-0.5 s, issue 21). Written as
    text directly it is a fraction of that, on the event loop between its other work."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.runners = list(gateway.runners.items())
        self.configs = {d.name: d for d in gateway.config.devices}
        self.series = DeviceSeries(TextCounter, TextGauge, TextHistogram)
        self.driver_sections = Sections()

    def steps(self) -> Iterator[None]:
        """Add :data:`DEVICES_PER_STEP` devices' series a step, the drivers' families of
        the same devices with them (merged by :class:`Sections`)."""
        gw, configs, series = self.gateway, self.configs, self.series
        for start in range(0, len(self.runners), DEVICES_PER_STEP):
            chunk = self.runners[start:start + DEVICES_PER_STEP]
            for name, runner in chunk:
                series.add(name, runner)
            self.driver_sections.add_step(gw.drivers.metrics(  # their registration's
                [(configs[n], r.driver) for n, r in chunk if n in configs]))
            yield
        if not self.runners:  # a driver's families with no series may still say something
            self.driver_sections.add_step(gw.drivers.metrics([]))

    def text(self) -> str:
        families = cast("list[_TextLines]", self.series.families())
        return "".join([*(f.text() for f in families), self.driver_sections.text()])


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


# --- exposition text, as prometheus_client writes it --------------------------------------


def _label_value(value: str) -> str:
    """A label value escaped as in the text format (backslash, newline, double quote)."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')
    return value


def _number(value: float) -> str:
    """``floatToGoString(value)``, shorter for the common case of a counter: an integer of
    fewer than 7 digits is written as a float (``12.0``); Go's format has an exponent from 7
    digits on (``1.234567e+06``), larger integers and floats go through it."""
    if type(value) is int and -10**15 < value < 1_000_000:
        return f"{value}.0"
    return _go_float(value)


#: prometheus_client's number format (its function has no annotations)
_go_float = cast("Callable[[float], str]", floatToGoString)


@functools.lru_cache(maxsize=4096)
def _metric_name(name: str) -> str:
    return escape_metric_name(name)


@functools.lru_cache(maxsize=1024)
def _label_name(name: str) -> str:
    return escape_label_name(name)


def _help(documentation: str) -> str:
    return documentation.replace("\\", r"\\").replace("\n", r"\n")


class _TextLines:
    """A family written as text line by line as its samples are added: the
    lines prometheus_client's ``generate_latest`` writes for a family of that name, type,
    labels and values (tests/gateway/test_metrics_text.py compares them byte for byte),
    without the ``Sample`` and dict of labels it makes per line. Label values are escaped;
    names must be valid (they are this module's constants)."""

    kind = "gauge"
    __slots__ = ("_labelnames", "_order", "head", "lines", "name")

    def __init__(self, name: str, documentation: str, labels: Sequence[str] = ()) -> None:
        sample = name + "_total" if self.kind == "counter" else name
        self.name = sample
        self.head = f"# HELP {sample} {_help(documentation)}\n# TYPE {sample} {self.kind}\n"
        self.lines: list[str] = []
        self._labelnames = tuple(labels)
        #: the label positions by name: the text format has them sorted
        self._order = sorted(range(len(self._labelnames)), key=self._labelnames.__getitem__)

    def _labels(self, values: Sequence[str]) -> str:
        names = self._labelnames
        pairs = [f'{names[i]}="{_label_value(values[i])}"' for i in self._order]
        return "{" + ",".join(pairs) + "}" if pairs else ""

    def text(self) -> str:
        return self.head + "".join(self.lines)


class TextFamily(_TextLines):
    """A counter or gauge family as text."""

    __slots__ = ()

    def add_metric(self, labels: Sequence[str], value: float) -> None:
        self.lines.append(f"{self.name}{self._labels(labels)} {_number(value)}\n")


class TextCounter(TextFamily):
    kind = "counter"
    __slots__ = ()


class TextGauge(TextFamily):
    __slots__ = ()


class TextHistogram(_TextLines):
    """A histogram family as text (``_bucket`` lines with ``le`` last among the labels as
    long as the other label names sort before it, then ``_count`` and ``_sum``)."""

    kind = "histogram"
    __slots__ = ()

    def __init__(self, name: str, documentation: str, labels: Sequence[str] = ()) -> None:
        if any(label >= "le" for label in labels):
            raise ValueError(f"{name}: a label that sorts after 'le' is not supported here")
        super().__init__(name, documentation, labels)

    def add_metric(self, labels: Sequence[str], buckets: Sequence[tuple[str, float]],
                   sum_value: float | None) -> None:
        name, lines = self.name, self.lines
        plain = self._labels(labels)
        inner = plain[1:-1] + "," if plain else ""
        for bound, count in buckets:
            lines.append(f'{name}_bucket{{{inner}le="{_label_value(bound)}"}} '
                         f"{_number(count)}\n")
        if float(buckets[0][0]) >= 0 and sum_value is not None:
            lines.append(f"{name}_count{plain} {_number(buckets[-1][1])}\n")
            lines.append(f"{name}_sum{plain} {_number(sum_value)}\n")


#: a family's head, its lines, the series (name and labels) of the lines
_Section = tuple[str, list[str], set[str]]


class Sections:
    """prometheus_client families (the drivers') as text, made in steps (a subset of the
    devices each) and merged by family: each family's head once, where it first came, then
    its lines of every step in order. A series a step has again (the same name and labels:
    a resource the devices of several steps share, such as a DTU's listening port) is kept
    as the first step had it. The text of each family is ``generate_latest``'s."""

    def __init__(self) -> None:
        self._sections: dict[str, _Section] = {}

    def add_step(self, metrics: Iterable[Metric]) -> None:
        step: dict[str, list[tuple[str, str]]] = {}
        for metric in metrics:
            for key, head, lines in metric_text(metric):
                if key not in self._sections:
                    self._sections[key] = (head, [], set())
                step.setdefault(key, []).extend(lines)
        for key, lines in step.items():
            _, kept, seen = self._sections[key]
            fresh = [(series, line) for series, line in lines if series not in seen]
            kept.extend(line for _, line in fresh)
            seen.update(series for series, _ in fresh)

    def text(self) -> str:
        return "".join(head + "".join(lines) for head, lines, _ in self._sections.values())


#: prometheus_client's type of a family in the text format, where it differs
_TEXT_TYPES = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram",
               "unknown": "untyped"}
#: OpenMetrics samples the text format puts in a gauge family of their own after the family
_OM_SUFFIXES = ("_created", "_gsum", "_gcount")


def metric_text(metric: Metric) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """``(name, head, lines)`` of the family ``metric`` and of the gauge families that carry
    its OpenMetrics-only samples (``_created`` ...), as ``generate_latest`` writes them;
    each line with its series (name and labels)."""
    name = metric.name
    if metric.type == "counter":
        name += "_total"
    elif metric.type == "info":
        name += "_info"
    doc = _help(metric.documentation)
    kind = _TEXT_TYPES.get(metric.type, metric.type)
    lines: list[tuple[str, str]] = []
    extra: dict[str, list[tuple[str, str]]] = {}
    om_names = {metric.name + suffix: suffix for suffix in _OM_SUFFIXES}
    for sample in metric.samples:
        suffix = om_names.get(sample.name)
        (lines if suffix is None else extra.setdefault(suffix, [])).append(_sample_line(sample))
    out = [(escape_metric_name(name), f"# HELP {escape_metric_name(name)} {doc}\n"
            f"# TYPE {escape_metric_name(name)} {kind}\n", lines)]
    for suffix, om_lines in sorted(extra.items()):
        om_name = escape_metric_name(metric.name + suffix)
        out.append((om_name, f"# HELP {om_name} {doc}\n# TYPE {om_name} gauge\n", om_lines))
    return out


def _sample_line(sample: Sample) -> tuple[str, str]:
    """The sample's series (name and labels) and its line."""
    labels = ",".join([f'{_label_name(k)}="{_label_value(v)}"'
                       for k, v in sorted(sample.labels.items())])
    series = _metric_name(sample.name) + ("{" + labels + "}" if labels else "")
    stamp = "" if sample.timestamp is None else f" {int(float(sample.timestamp) * 1000):d}"
    return series, f"{series} {_number(sample.value)}{stamp}\n"


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
    devices = DeviceText(gateway)
    for _ in devices.steps():
        pass
    return devices.text().encode() + _generate([GatewayCollector(gateway),
                                                _BoxCollector(gateway)])


async def render_async(gateway: Gateway) -> bytes:
    """:func:`render` for the event loop: the per-device families in steps of
    :data:`DEVICES_PER_STEP` devices, the event loop running its other work between them
    (at 2,000 devices the text is 72,000 lines, ~0.2 s of CPU in all); the families of the
    gateway as a whole (a few hundred lines) in one step. Made in a worker thread instead,
    the event loop waited for the GIL at each of its socket calls meanwhile: stalls of
    0.1-0.5 s at 2,000 devices (issue 21)."""
    whole = _Collected(list(GatewayCollector(gateway).collect()))
    devices = DeviceText(gateway)
    for _ in devices.steps():
        await asyncio.sleep(0)
    return devices.text().encode() + _generate([whole, _BoxCollector(gateway)])
