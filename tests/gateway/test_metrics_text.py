"""/metrics' own text renderer (gateway/metrics.py): the per-device families written as text
directly, and the drivers' families merged over the steps they are made in, are the bytes
prometheus_client's ``generate_latest`` writes for the same families and values."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
    SummaryMetricFamily,
    UnknownMetricFamily,
)
from prometheus_client.utils import floatToGoString

from gateway import metrics
from gateway.histogram import POLL_BUCKETS, Histogram
from gateway.metrics import DeviceSeries, DeviceText, Sections, metric_text, render
from gateway.runtime.gateway import Gateway
from tests.integration.gateway_harness import gateway_config, meter_device


def _reference(families: list[Metric]) -> str:
    """What prometheus_client writes for ``families``."""

    class Families:
        def collect(self) -> list[Metric]:
            return families

    return generate_latest(Families()).decode()  # type: ignore[arg-type]  # any collect() does


def _gateway(tmp_path: Path) -> Gateway:
    """A gateway of three meters, not running, with counters as a long run leaves them."""
    config = gateway_config(tmp_path, 1, [meter_device(f"meter-{i}", 1502 + i)
                                          for i in range(3)])
    gw = Gateway(config, tmp_path)
    for device in config.devices:
        gw._build_runner(device)
    stats = [r.stats for r in gw.runners.values()]
    stats[0].polls, stats[0].samples_read, stats[0].bad_samples = 5, 999_999, 1_000_000
    stats[1].polls, stats[1].samples_read = 123_456_789, 2**53 + 1
    stats[1].last_success_ns = 1_764_950_000_123_456_789
    for i, s in enumerate(stats):
        for group in ("fast", "slow", "a-b")[:i + 1]:
            histogram = s.poll_seconds.setdefault(group, Histogram(POLL_BUCKETS))
            for value in (0.0004, 0.003, 0.07 * (i + 1), 12.0):
                histogram.observe(value, times=i + 1)
    runners = list(gw.runners.values())
    driver = runners[0].driver
    assert driver is not None
    driver.errors.update({"timeout": 3, "exception_2": 1, 'odd "kind"\\with\nbreaks': 7})
    runners[2].driver = None  # a device whose driver could not be built
    return gw


def test_the_device_families_as_text_are_prometheus_clients(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gw = _gateway(tmp_path)
    series = DeviceSeries(CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily)
    for name, runner in gw.runners.items():
        series.add(name, runner)
    configs = {d.name: d for d in gw.config.devices}
    expected = _reference([*series.families(),  # type: ignore[list-item]  # they are Metrics
                           *gw.drivers.metrics([(configs[n], r.driver)
                                                for n, r in gw.runners.items()])])
    assert "chenxing_modbus_unit_requests_total" in expected  # the driver's own are there
    for per_step in (1, 2, metrics.DEVICES_PER_STEP):
        monkeypatch.setattr(metrics, "DEVICES_PER_STEP", per_step)
        text = DeviceText(gw)
        steps = sum(1 for _ in text.steps())
        assert steps == math.ceil(len(gw.runners) / per_step)
        assert text.text() == expected
    assert render(gw).decode().startswith(expected)  # then the gateway's, the process'...


def _every_kind() -> list[Metric]:
    counter = CounterMetricFamily("c", "a counter\\with a\nbreak", labels=["b", "a"])
    counter.add_metric(["x", 'quote " and \\ and \n'], 3, created=1_700_000_000.5)
    counter.add_metric(["y", "é"], 2**60)
    gauge = GaugeMetricFamily("g", "a gauge", labels=["z", "le_x", "a"])
    for value in (0.0, -1.0, 1e-9, 1234567.0, 1e21, math.inf, -math.inf, math.nan, True, 7):
        gauge.add_metric([str(value), "l", "m"], value, timestamp=1_700_000_000.123)
    histogram = HistogramMetricFamily("h", "a histogram", labels=["device"])
    histogram.add_metric(["d"], [("0.1", 1), ("1.0", 4), ("+Inf", 5)], 2.5)
    negative = HistogramMetricFamily("n", "negative buckets: no sum, no count")
    negative.add_metric([], [("-1.0", 1), ("+Inf", 2)], 3.0)
    gauge_histogram = GaugeHistogramMetricFamily("gh", "a gauge histogram", labels=["x"])
    gauge_histogram.add_metric(["y"], [("1.0", 2), ("+Inf", 3)], gsum_value=4.0)
    summary = SummaryMetricFamily("s", "a summary", count_value=3, sum_value=1.5)
    info = InfoMetricFamily("i", "an info", value={"version": "1", "a": "b"})
    state = StateSetMetricFamily("st", "a state set", value={"on": True, "off": False})
    unknown = UnknownMetricFamily("u", "an unknown", value=1.0)
    plain = GaugeMetricFamily("p", "no labels", value=12.0)
    return [counter, gauge, histogram, negative, gauge_histogram, summary, info, state,
            unknown, plain]


def test_any_family_as_text_is_prometheus_clients() -> None:
    families = _every_kind()
    ours = "".join(head + "".join(line for _, line in lines)
                   for family in families for _, head, lines in metric_text(family))
    assert ours == _reference(families)


def test_a_series_several_steps_have_is_written_once_as_the_first_step_had_it() -> None:
    """Each step's drivers' families: a series of a resource the devices of several steps
    share (a DTU's listening port) comes in each of them."""

    def step(devices: list[str], accepted: int) -> list[Metric]:
        per_device = CounterMetricFamily("chenxing_x", "per device", labels=["device"])
        for device in devices:
            per_device.add_metric([device], len(device))
        shared = CounterMetricFamily("chenxing_port", "shared", labels=["port", "outcome"])
        shared.add_metric(["502", "accepted"], accepted)
        return [per_device, shared]

    sections = Sections()
    sections.add_step(step(["a", "bb"], 1))
    sections.add_step(step(["ccc"], 2))  # the port's count moved on meanwhile
    assert sections.text() == _reference(step(["a", "bb", "ccc"], 1))


@pytest.mark.parametrize("value", [0, 1, -1, 999_999, 1_000_000, 1_234_567, -10**15 + 1,
                                   -10**15, 10**15, 2**53 + 1, 10**16, 0.5, 1e-7, 1.5e6,
                                   math.inf, math.nan, True])
def test_numbers_are_written_as_go_writes_floats(value: float) -> None:
    assert metrics._number(value) == floatToGoString(value)
