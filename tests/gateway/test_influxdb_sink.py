"""The InfluxDB sink against a real victoria-metrics (InfluxDB v2 write API): every sample
published over MQTT is also in the store, through an outage of the store."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from gateway.config.loader import load_config_text
from gateway.errors import ConfigError
from gateway.influxdb.line_protocol import BatchEncoder, point, series_prefix
from gateway.metrics import render
from gateway.tags import TagCatalog
from gateway.types import Quality, SampleBatch
from hil.broker import MqttBroker
from hil.recorder import TelemetryRecorder
from hil.victoria_metrics import VictoriaMetrics
from tests.integration.gateway_harness import (
    RunningGateway,
    gateway_config,
    meter_device,
    running,
)
from tests.waiting import until

pytestmark = pytest.mark.broker


def test_line_protocol_escapes_and_types() -> None:
    prefix = series_prefix("meter 1", {"tag": "a,b=c", "site": "", "line": "l 1"})
    assert prefix == r"meter\ 1,line=l\ 1,tag=a\,b\=c"
    assert point(prefix, 2.5, 0, 7) == prefix + " value=2.5,quality=0i 7"
    assert point(prefix, True, 0, 7) == prefix + " value=1.0,quality=0i 7"
    assert point(prefix, float("nan"), 2, 7) == prefix + " quality=2i 7"
    assert point(prefix, 'say "hi"\n', 1, 7) == prefix + r' text="say \"hi\"\n",quality=1i 7'


def test_batch_encoder_per_device_measurement(tmp_path: Path) -> None:
    config = gateway_config(tmp_path, 1883, [meter_device("m-1", 502)])
    catalog = TagCatalog(config.devices)
    enc = BatchEncoder(catalog, "{site}_{device}", {"gateway": "g", "site": "p", "line": "l"},
                       "ms")  # fmt: skip
    batch = SampleBatch.of([0, 1], np.array([230.0, np.nan]), 5_000_000, [0, int(Quality.BAD)])
    lines = enc.encode(batch)
    assert lines[0] == (
        f"p_m-1,device=m-1,gateway=g,line=l,site=p,tag={catalog[0].name} value=230.0,quality=0i 5"
    )
    assert lines[1].endswith(" quality=2i 5")


def test_bad_influxdb_config_says_what_is_wrong(tmp_path: Path) -> None:
    base = (
        "gateway: {id: gw, site: s, line: l}\n"
        "devices: [{name: m, protocol: modbus_tcp, host: 127.0.0.1, tags: "
        "[{name: t, address: 0, type: uint16}]}]\n"
        "northbound:\n  influxdb:\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config_text(base + "    url: ftp://x\n    bucket: b\n    measurement: '{dev}'\n"
                         "    token: abc\n", "g.yaml", tmp_path)  # fmt: skip
    text = str(err.value)
    assert "invalid InfluxDB URL" in text and "{device}" in text and "inline secrets" in text


def influx(vm: VictoriaMetrics, **kw: object) -> dict[str, object]:
    return {"url": vm.url, "bucket": "plant", "org": "chenxing", "flush_interval": "200ms",
            "token": {"env": "CX_TEST_INFLUX_TOKEN"}, "retry_min": 0.2, "retry_max": 0.5,
            **kw}  # fmt: skip


def published(rec: TelemetryRecorder) -> dict[str, set[int]]:
    """Millisecond timestamps of every sample received over MQTT, per tag path."""
    out: dict[str, set[int]] = {}
    for s in rec.snapshot().samples:
        out.setdefault(s.tag, set()).add(s.ts_ms)
    return out


def stored(vm: VictoriaMetrics) -> dict[str, set[int]]:
    """Timestamps of the points of ``{device}_quality`` (one per sample), per tag path."""
    out: dict[str, set[int]] = {}
    for row in vm.export('{__name__="meter_quality"}'):
        m = row["metric"]
        assert m["gateway"] == "gw-test" and m["site"] == "plant" and m["line"] == "line-1"
        out.setdefault(f"{m['device']}.{m['tag']}", set()).update(row["timestamps"])
    return out


def assert_same(sent: dict[str, set[int]], vm: VictoriaMetrics) -> dict[str, set[int]]:
    """Every sample published over MQTT is in the store, and nothing else."""
    assert vm.wait_for(lambda: stored(vm) == sent)  # new series show up with some delay
    kept = stored(vm)
    assert sent.keys() == kept.keys()
    for tag in sent:
        only_mqtt, only_store = sorted(sent[tag] - kept[tag]), sorted(kept[tag] - sent[tag])
        assert not only_mqtt and not only_store, (tag, only_mqtt, only_store, len(sent[tag]))
    return sent


def all_received(rec: TelemetryRecorder, gw: RunningGateway) -> Callable[[], bool]:
    """Whether the recorder got every sample the broker acknowledged to the gateway."""
    northbound = gw.gateway.northbound
    assert northbound is not None
    return lambda: len(rec.snapshot().samples) >= northbound.counters.samples_published


async def test_sink_writes_every_published_sample(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter, victoria_metrics: VictoriaMetrics,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CX_TEST_INFLUX_TOKEN", "secret")
    config = gateway_config(tmp_path, mosquitto.port, [meter_device("meter", waveform_meter.port)],
                            http={"enabled": False}, influxdb=influx(victoria_metrics))
    with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec:
        async with running(config) as gw:
            sink = gw.gateway.influxdb
            assert sink is not None
            await until(lambda: sink.counters.points_written >= 100, timeout=20)
            metrics = render(gw.gateway).decode()
            written = sink.counters.points_written
            report = await gw.stop()
            assert report.drained
            await until(all_received(rec, gw), "the last MQTT messages at the recorder")
    assert sink.counters.write_errors == 0 and sink.counters.points_rejected == 0
    assert f"chenxing_influxdb_points_written_total {written}.0" in metrics
    assert "chenxing_influxdb_up 1.0" in metrics
    sent = assert_same(published(rec), victoria_metrics)
    assert sum(map(len, sent.values())) == sink.counters.points_written
    values = victoria_metrics.points('{__name__="meter_value",tag="voltage"}')
    (series,) = values.values()
    assert all(200 < v < 260 for v in series.values())  # volts, as published


async def test_sink_outage_spools_and_delivers_everything_after(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter, victoria_metrics: VictoriaMetrics,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CX_TEST_INFLUX_TOKEN", "secret")
    config = gateway_config(tmp_path, mosquitto.port, [meter_device("meter", waveform_meter.port)],
                            http={"enabled": False}, influxdb=influx(victoria_metrics))
    with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec:
        async with running(config) as gw:
            sink = gw.gateway.influxdb
            assert sink is not None
            await until(lambda: sink.counters.points_written >= 50, timeout=20)
            await asyncio.to_thread(victoria_metrics.stop)
            await until(lambda: sink.counters.write_errors >= 2, timeout=20)
            await until(lambda: sink.spool.stats().messages >= 3, timeout=20)
            assert (tmp_path / "state" / "influxdb-spool.db").exists()
            await asyncio.to_thread(victoria_metrics.start)
            await until(lambda: sink.spool.stats().messages == 0, "the spool replayed",
                        timeout=30, seen=sink.spool.stats)
            report = await gw.stop()
            assert report.drained
            await until(all_received(rec, gw), "the last MQTT messages at the recorder")
    assert sink.counters.points_rejected == 0
    assert_same(published(rec), victoria_metrics)


class MoodyInflux:
    """An InfluxDB v2 write endpoint on loopback (aiohttp) that answers every write with
    ``status``: 400 (the batch is refused), 503 (down for now) or 204 (written)."""

    def __init__(self) -> None:
        self.status = 400
        self.writes: list[int] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/v2/write", self._write)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _write(self, request: web.Request) -> web.Response:
        await request.read()
        self.writes.append(self.status)
        body = '{"code":"invalid","message":"field type conflict"}'
        return web.Response(status=self.status, text="" if self.status == 204 else body,
                            content_type="application/json")  # fmt: skip


async def test_a_server_refusing_every_batch_or_down_is_a_few_lines_not_one_per_batch(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("CX_TEST_INFLUX_TOKEN", "secret")
    server = MoodyInflux()
    await server.start()
    settings = {"url": server.url, "bucket": "plant", "org": "chenxing",
                "flush_interval": "100ms", "token": {"env": "CX_TEST_INFLUX_TOKEN"},
                "retry_min": 0.05, "retry_max": 0.1}  # fmt: skip
    config = gateway_config(tmp_path, mosquitto.port, [meter_device("meter", waveform_meter.port)],
                            http={"enabled": False}, influxdb=settings)
    try:
        async with running(config) as gw:
            sink = gw.gateway.influxdb
            assert sink is not None
            await until(lambda: sink.counters.batches_rejected >= 10, timeout=20)
            server.status = 503
            await until(lambda: sink.counters.write_errors >= 10, timeout=20)
            server.status = 204
            await until(lambda: sink.counters.batches_written >= 1, timeout=20)
            counters = sink.counters
    finally:
        await server.stop()
    assert server.writes.count(400) == counters.batches_rejected >= 10
    assert server.writes.count(503) == counters.write_errors >= 10
    lines = [(r.levelname, r.getMessage()) for r in caplog.records
             if r.name.startswith("gateway.influxdb") and r.levelno >= logging.INFO]
    # the first refusal, the first failed write, the recovery: no summary is due yet
    assert [level for level, _ in lines] == ["ERROR", "WARNING", "INFO"], lines
    assert lines[0][1].startswith("InfluxDB rejected a batch: ")
    assert "HTTP 400" in lines[0][1] and "field type conflict" in lines[0][1]
    assert lines[1][1].startswith(f"InfluxDB {server.url}: write failed: HTTP 503")
    assert re.fullmatch(
        rf"InfluxDB {server.url} accepts writes again \(after \d+ failures in \d+ s\)",
        lines[2][1])
