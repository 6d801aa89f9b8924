"""End to end: simulated Modbus meter -> gateway -> real Mosquitto -> subscriber."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import urllib.request
from pathlib import Path

import pytest

from hil.broker import MqttBroker
from hil.process.energy_meter import waveform_reading
from hil.recorder import TelemetryRecorder
from tests.integration.gateway_harness import gateway_config, meter_device, running
from tests.waiting import until

pytestmark = pytest.mark.broker


def http_get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


async def test_known_waveform_arrives_scaled_with_units_timestamps_and_qualities(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter
) -> None:
    params = waveform_meter.waveform_params
    config = gateway_config(tmp_path, mosquitto.port, [meter_device("meter", waveform_meter.port)])
    started_ms = time.time_ns() // 1_000_000
    with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec:
        async with running(config) as gw:
            assert await rec.until(
                lambda s: len([x for x in s.samples if x.tag == "meter.voltage"]) >= 20, timeout=15
            )
            report = await gw.stop()
        assert await rec.until(lambda s: len(s.deaths) >= 1, timeout=5)
    ended_ms = time.time_ns() // 1_000_000
    snap = rec.snapshot()
    assert report.drained and report.death_published

    # the birth is the catalog: units, types, device
    birth = snap.births[-1]
    catalog = {t["tag"]: t for t in birth["tags"]}
    assert catalog["meter.voltage"]["unit"] == "V" and catalog["meter.voltage"]["type"] == "float32"
    assert catalog["meter.energy_import"]["unit"] == "kWh"
    assert catalog["meter.energy_import"]["type"] == "float64"  # uint32 * 0.01
    assert catalog["meter.relay_closed"]["type"] == "bool"

    # every value is the simulator's waveform at the sample's timestamp
    by_tag: dict[str, list] = {}
    for s in snap.samples:
        by_tag.setdefault(s.tag, []).append(s)
    for tag, getter, tol in (
        ("meter.voltage", lambda r: r.voltage_v, 0.15),
        ("meter.current", lambda r: r.current_a, 0.05),
        ("meter.active_power", lambda r: r.active_power_kw, 0.05),
        ("meter.energy_import", lambda r: r.energy_import_kwh, 0.011),
        ("meter.temperature", lambda r: r.temperature_c, 0.11),
    ):
        samples = by_tag[tag]
        assert len(samples) >= 15, tag
        for s in samples:
            assert s.quality == "good"
            expected = getter(waveform_reading(s.ts_ms / 1000, params))
            assert s.value == pytest.approx(expected, abs=tol), (tag, s)
    assert all(s.value is True for s in by_tag["meter.relay_closed"])

    # gateway timestamps: inside the run, increasing per tag; the waveform really moved
    volts = by_tag["meter.voltage"]
    assert started_ms <= volts[0].ts_ms and volts[-1].ts_ms <= ended_ms
    assert all(a.ts_ms < b.ts_ms for a, b in itertools.pairwise(volts))
    assert max(s.value for s in volts) - min(s.value for s in volts) > 0.5

    # sequence numbers: consecutive, no gap, no duplicate
    seqs = [m["seq"] for m in snap.data_messages]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert snap.deaths[-1]["reason"] == "shutdown"


async def test_exception_response_gives_bad_quality_then_recovers(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter
) -> None:
    config = gateway_config(tmp_path, mosquitto.port, [meter_device("meter", waveform_meter.port)])
    with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec:
        async with running(config) as gw:
            assert await rec.until(lambda s: "meter.voltage" in s.latest, timeout=10)
            waveform_meter.inject_exception(6)  # server device busy
            assert await rec.until(
                lambda s: (
                    s.latest["meter.voltage"].quality == "bad"
                    and s.latest["meter.relay_closed"].quality == "bad"
                ),
                timeout=10,
            )
            runner = gw.gateway.runners["meter"]
            assert runner.driver is not None and runner.driver.errors["exception_6"] > 0
            assert runner.stats.crashes == 0 and runner.stats.state.value == "up"
            waveform_meter.clear_faults()
            assert await rec.until(
                lambda s: s.latest["meter.voltage"].quality == "good", timeout=10
            )
    bad = [s for s in rec.snapshot().samples if s.tag == "meter.voltage" and s.quality == "bad"]
    assert bad and all(s.value is None for s in bad)


async def test_dropped_connection_gives_bad_quality_and_reconnects(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter
) -> None:
    config = gateway_config(tmp_path, mosquitto.port, [meter_device("meter", waveform_meter.port)])
    with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec:
        async with running(config) as gw:
            assert await rec.until(lambda s: "meter.voltage" in s.latest, timeout=10)
            await waveform_meter.stop()  # the device goes away (power cut)
            assert await rec.until(lambda s: s.latest["meter.voltage"].quality == "bad", timeout=10)
            runner = gw.gateway.runners["meter"]
            assert runner.stats.state.value == "down" and runner.stats.last_error
            failed = runner.stats.connect_failures
            await until(lambda: runner.stats.connect_failures >= failed + 2,
                        "a few failed reconnects with backoff")
            await waveform_meter.start()  # back on the same port
            assert await rec.until(
                lambda s: s.latest["meter.voltage"].quality == "good", timeout=15
            )
            assert runner.stats.connects >= 2 and runner.stats.crashes == 0
            assert runner.stats.state.value == "up"


async def test_one_dead_device_does_not_hold_up_another(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter
) -> None:
    from hil.netutil import free_port

    devices = [meter_device("meter", waveform_meter.port), meter_device("ghost", free_port())]
    config = gateway_config(tmp_path, mosquitto.port, devices)
    with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec:
        async with running(config) as gw:
            assert await rec.until(
                lambda s: (
                    sum(1 for x in s.samples if x.tag == "meter.voltage" and x.quality == "good")
                    >= 10
                ),
                timeout=10,
            )
            ghost = gw.gateway.runners["ghost"]
            assert ghost.stats.state.value == "down" and ghost.stats.connect_failures >= 1
            assert "refused" in (ghost.stats.last_error or "").lower()
            status, body = await asyncio.to_thread(http_get, gw.gateway.http_port, "/healthz")
            health = json.loads(body)
            assert status == 503 and health["status"] == "degraded"
            assert health["devices"]["meter"]["state"] == "up"
            assert health["devices"]["ghost"]["state"] == "down"
            assert health["broker"]["connected"] is True
            status, metrics = await asyncio.to_thread(http_get, gw.gateway.http_port, "/metrics")
            text = metrics.decode()
            assert status == 200
            assert 'chenxing_device_up{device="meter"} 1.0' in text
            assert 'chenxing_device_up{device="ghost"} 0.0' in text
            assert "chenxing_samples_published_total" in text
            assert 'chenxing_outbox_messages{state="queued"}' in text
    ghost_samples = [s for s in rec.snapshot().samples if s.tag.startswith("ghost.")]
    assert ghost_samples and all(s.quality == "bad" for s in ghost_samples)


async def test_broker_restart_loses_nothing_and_sends_a_new_birth(
    tmp_path: Path, waveform_meter
) -> None:
    # a brain-side subscriber with a persistent session on a broker that persists it
    with MqttBroker(kind="mosquitto", persistence=True) as broker:
        config = gateway_config(tmp_path, broker.port, [meter_device("meter", waveform_meter.port)])
        rec = TelemetryRecorder(broker.host, broker.port, client_id="brain-1", persistent=True)
        rec.start()
        try:
            async with running(config) as gw:
                assert await rec.until(lambda s: len(s.data_messages) >= 5, timeout=10)
                await asyncio.to_thread(broker.stop)
                nb = gw.gateway.northbound
                assert nb is not None
                await until(lambda: not nb.link.connected.is_set(), "the broker gone")
                held = nb.outbox.stats().queued
                await until(lambda: nb.outbox.stats().queued >= held + 3,
                            "polling goes on into the outbox")
                births_before = len(rec.snapshot().births)
                await asyncio.to_thread(broker.start)
                assert await rec.until(lambda s: len(s.births) > births_before, timeout=15)
                assert await rec.until(lambda s: nb.outbox.stats().queued == 0, timeout=15)
                last_seq = nb.contract.sequence.peek - 1  # type: ignore[attr-defined]
                assert await rec.until(
                    lambda s: any(m["seq"] >= last_seq for m in s.data_messages), timeout=10
                )
                assert nb.link.disconnects >= 1
        finally:
            rec.stop()
    seqs = sorted({m["seq"] for m in rec.snapshot().data_messages})
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), "a data message was lost"
