"""Per-unit Modbus counters in /metrics, on a running gateway against the simulated meter.

The meter answers its own unit id (1) and exception 11 for any other; the device polls
tags on unit 1 and unit 2 over one connection, so unit 2 fails and backs off while
unit 1 keeps answering. Then the meter is made busy (exception 6, retried) and slow
(timeouts), and each shows on unit 1's own series.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hil.broker import MqttBroker
from tests.integration.gateway_harness import METER_TAGS, gateway_config, meter_device, running
from tests.waiting import until

pytestmark = pytest.mark.broker

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape_until(port: int, check: Callable[[Samples], bool], timeout: float = 20) -> Samples:
    """The scraped metrics once ``check`` holds for them."""
    last: list[Samples] = [{}]

    async def matching() -> Samples | None:
        last[0] = await asyncio.to_thread(scrape, port)
        return last[0] if check(last[0]) else None

    def shown() -> Samples:  # the last Modbus unit series
        return {k: v for k, v in last[0].items() if "modbus_unit" in k[0]}

    return await until(matching, "the metrics to match", timeout=timeout, interval=0.2,
                       seen=shown)


async def test_unit_counters_show_exceptions_retries_timeouts_and_backoff(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any
) -> None:
    unit2 = [{**tag, "name": f"u2_{tag['name']}", "unit_id": 2} for tag in METER_TAGS]
    device = meter_device("meter", waveform_meter.port, retries=1, tags=[*METER_TAGS, *unit2])
    config = gateway_config(tmp_path, mosquitto.port, [device])
    m = "chenxing_modbus_unit_"
    u1 = {"device": "meter", "unit": "1"}
    u2 = {"device": "meter", "unit": "2"}
    async with running(config) as gw:
        port = gw.gateway.http_port
        assert port

        # unit 2 is absent behind the meter: exception 11, then backed off; unit 1 is fine
        s = await scrape_until(port, lambda s: value(s, m + "backed_off", **u2) == 1)
        assert value(s, m + "exceptions_total", code="11", **u2) >= 3
        assert value(s, m + "backoffs_total", **u2) >= 1
        assert value(s, m + "backoff_remaining_seconds", **u2) > 0
        assert value(s, m + "failures_in_a_row", **u2) >= 3
        assert value(s, m + "requests_total", **u1) > 0
        assert value(s, m + "backed_off", **u1) == 0
        assert value(s, m + "exceptions_total", code="11", **u1) == 0
        assert value(s, m + "timeouts_total", **u1) == 0
        assert value(s, m + "bad_frames_total", kind="garbled", **u1) == 0
        # exception 11 is not retried: unit 2's requests are its exceptions, nothing more
        assert value(s, m + "retries_total", **u2) == 0
        s = await scrape_until(port, lambda s: value(s, m + "skipped_requests_total", **u2) > 0)

        # busy (exception 6) is retried once (retries: 1), and counted on unit 1 only
        waveform_meter.inject_exception(6)
        s = await scrape_until(
            port, lambda s: value(s, m + "exceptions_total", code="6", **u1) >= 4
        )
        assert value(s, m + "retries_total", **u1) >= 2
        assert value(s, m + "exceptions_total", code="6", **u2) == 0
        waveform_meter.clear_faults()

        # an answer later than the device's timeout (500 ms) is a timeout of unit 1
        before = value(s, m + "requests_total", **u1)
        waveform_meter.response_delay = 0.8
        s = await scrape_until(port, lambda s: value(s, m + "timeouts_total", **u1) >= 1)
        assert value(s, m + "requests_total", **u1) > before
        waveform_meter.clear_faults()
