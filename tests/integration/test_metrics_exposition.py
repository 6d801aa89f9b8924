"""/metrics of a running gateway (simulated meter, real Mosquitto): the standard process
and platform metrics, chenxing_build_info, the poll-duration and value-age histograms,
each device's last success, the broker as an info metric; every name as promtool's
``check metrics`` wants it; and the README's alert rules name only metrics it has."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import gateway
from hil.broker import MqttBroker
from tests.integration.gateway_harness import gateway_config, meter_device, running
from tests.promlint import problems
from tests.waiting import until

pytestmark = pytest.mark.broker

REPO = Path(__file__).resolve().parents[2]

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> tuple[str, Series]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    series: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return text, series


def value(series: Series, name: str, **labels: str) -> float | None:
    return series.get((name, tuple(sorted(labels.items()))))


def buckets(series: Series, name: str, **labels: str) -> list[tuple[float, float]]:
    """(le, cumulative count) of one histogram, in bucket order."""
    out = []
    for (sample, pairs), count in series.items():
        given = dict(pairs)
        le = given.pop("le", None)
        if sample == f"{name}_bucket" and given == labels and le is not None:
            out.append((float(le), count))
    return sorted(out)


async def test_metrics_of_a_running_gateway(tmp_path: Path, mosquitto: MqttBroker,
                                            waveform_meter: Any) -> None:
    started = time.time()
    config = gateway_config(tmp_path, mosquitto.port, [meter_device("meter",
                                                                      waveform_meter.port)])
    async with running(config) as gw:
        port = gw.gateway.http_port
        assert port

        async def published() -> tuple[str, Series] | None:
            text, series = await asyncio.to_thread(scrape, port)
            count = value(series, "chenxing_publish_value_age_seconds_count") or 0
            polls = value(series, "chenxing_device_poll_duration_seconds_count",
                          device="meter", group="default") or 0
            return (text, series) if count >= 3 and polls >= 3 else None

        text, series = await until(published, "polls and published messages", timeout=30)

    assert problems(text) == []  # promtool check metrics

    # the process and the platform
    assert (value(series, "process_resident_memory_bytes") or 0) > 10e6
    assert (value(series, "process_open_fds") or 0) > 3
    assert value(series, "process_cpu_seconds_total") is not None
    assert any(name == "python_info" for name, _ in series)
    assert (value(series, "chenxing_state_dir_free_bytes") or 0) > 0
    build = [dict(labels) for name, labels in series if name == "chenxing_build_info"]
    assert len(build) == 1 and build[0]["version"] == gateway.__version__
    assert set(build[0]) == {"version", "python", "machine", "system"}

    # poll duration: cumulative buckets up to +Inf = count; a local simulator answers in
    # well under a second
    poll = buckets(series, "chenxing_device_poll_duration_seconds", device="meter",
                   group="default")
    counts = [c for _, c in poll]
    assert counts == sorted(counts) and poll[-1][0] == float("inf")
    total = value(series, "chenxing_device_poll_duration_seconds_count", device="meter",
                  group="default")
    assert poll[-1][1] == total
    assert dict(poll)[1.0] == total

    # value age at publish: every message's oldest value is younger than a minute here
    age = buckets(series, "chenxing_publish_value_age_seconds")
    assert dict(age)[60.0] == value(series, "chenxing_publish_value_age_seconds_count")
    assert (value(series, "chenxing_publish_value_age_seconds_sum") or 0) > 0

    last = value(series, "chenxing_device_last_success_timestamp_seconds", device="meter")
    assert last is not None and started <= last <= time.time()
    assert value(series, "chenxing_mqtt_broker_info",
                 url=f"mqtt://127.0.0.1:{mosquitto.port}") == 1.0
    assert not any(name == "chenxing_mqtt_broker" for name, _ in series)  # was a 0/1 gauge

    # the README's alert rules use metrics that exist (histograms by their _bucket series)
    names = {name for name, _ in series}
    readme = (REPO / "README.md").read_text()
    rules = readme.split("<!-- alert rules -->")[1]
    used = set(re.findall(r"\b((?:chenxing|process|python)_[a-z0-9_]+)", rules))
    assert len(used) >= 5
    assert used <= names, used - names
