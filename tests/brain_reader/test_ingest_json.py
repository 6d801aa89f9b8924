"""``chenxing-ingest`` on JSON contract v1: real Mosquitto, real victoria-metrics."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import pytest

from brain_reader.config import IngestInfluxConfig
from hil.broker import MqttBroker
from hil.recorder import TelemetryRecorder
from hil.victoria_metrics import VictoriaMetrics
from tests.brain_reader.helpers import (
    BASE_MS,
    Publisher,
    ingest_config,
    json_data,
    running_reader,
)
from tests.integration.gateway_harness import gateway_config, meter_device, running
from tests.waiting import until

pytestmark = pytest.mark.broker


def stored_force(vm: VictoriaMetrics) -> dict[int, float]:
    series = vm.points('{__name__="press_value"}')
    return next(iter(series.values()), {})


async def test_gaps_duplicates_and_late_messages_are_counted_and_data_written(
    mosquitto: MqttBroker, victoria_metrics: VictoriaMetrics
) -> None:
    config = ingest_config(mosquitto, victoria_metrics)
    pub = Publisher(mosquitto)
    try:
        async with running_reader(config) as reader:
            for seq in (0, 1, 2, 4, 4, 5, 8):  # 3, 6 and 7 skipped; 4 repeated
                pub.publish(*json_data(seq))
            await until(lambda: reader.counters.data_messages == 7, timeout=10)
            c = reader.counters
            assert (c.gaps, c.duplicates, c.late) == (3, 1, 0)
            pub.publish(*json_data(3))  # late (a replayed backlog message), not a duplicate
            await until(lambda: reader.counters.late == 1, timeout=10)
            assert reader.counters.gaps == 2 and reader.counters.duplicates == 1
            pub.publish("chenxing/v1/plant/l1/gw-x/data", b"{not json")
            await until(lambda: reader.counters.undecodable == 1, timeout=10)
            counters = await reader.stop()
    finally:
        pub.close()
    assert counters.received == 9 and counters.points == 8 and counters.written == 8
    seqs = {0, 1, 2, 3, 4, 5, 8}
    expected = {BASE_MS + s: float(s) for s in seqs}
    assert victoria_metrics.wait_for(lambda: stored_force(victoria_metrics) == expected)
    (labels,) = victoria_metrics.points('{__name__="press_quality"}')
    assert set(labels) >= {"device=press", "gateway=gw-x", "line=l1", "site=plant", "tag=force"}


async def test_two_readers_in_one_group_write_a_gateways_stream_once(
    tmp_path: Path, mosquitto: MqttBroker, victoria_metrics: VictoriaMetrics, waveform_meter
) -> None:
    config_a = ingest_config(mosquitto, victoria_metrics, client_id="reader-a")
    config_b = ingest_config(mosquitto, victoria_metrics, client_id="reader-b")
    gw_config = gateway_config(tmp_path, mosquitto.port, [meter_device("meter",
                               waveform_meter.port)], http={"enabled": False})  # fmt: skip
    with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec:
        async with running_reader(config_a) as a, running_reader(config_b) as b:
            async with running(gw_config) as gw:
                await until(lambda: len(rec.snapshot().data_messages) >= 30, timeout=30)
                assert (await gw.stop()).drained
                nb = gw.gateway.northbound
                assert nb is not None
            await until(lambda: len(rec.snapshot().samples) >= nb.counters.samples_published,
                        "the last messages at the recorder")
            sent = rec.snapshot()
            total = len(sent.data_messages)
            await until(
                lambda: a.counters.data_messages + b.counters.data_messages >= total, timeout=10)
            ca, cb = await a.stop(), await b.stop()
    # one gateway, one writer: its owner decodes every message, the other holds them
    assert sorted([ca.data_messages, cb.data_messages]) == [0, total]
    assert ca.gaps == cb.gaps == ca.duplicates == cb.duplicates == 0
    assert ca.births == cb.births >= 1  # births go to every reader
    assert ca.written + cb.written == len(sent.samples)
    published = {(s.tag, s.ts_ms) for s in sent.samples}

    def stored() -> set[tuple[str, int]]:
        rows = victoria_metrics.export('{__name__="meter_quality"}')
        return {(f"{r['metric']['device']}.{r['metric']['tag']}", t)
                for r in rows for t in r["timestamps"]}  # fmt: skip

    assert victoria_metrics.wait_for(lambda: stored() == published)
    assert stored() == published


async def test_store_unreachable_points_wait_in_memory_up_to_the_limit_then_oldest_drop(
    mosquitto: MqttBroker,
) -> None:
    from hil.netutil import free_port

    config = ingest_config(mosquitto, None)
    influx = {"url": f"http://127.0.0.1:{free_port()}", "bucket": "b", "flush_interval": "100ms",
              "retry_min": 0.1, "retry_max": 0.2, "max_pending_points": 5}  # fmt: skip
    config = config.model_copy(update={"influxdb": IngestInfluxConfig.model_validate(influx)})
    pub = Publisher(mosquitto)
    try:
        async with running_reader(config, drain_timeout=1.0) as reader:
            for seq in range(3):
                pub.publish(*json_data(seq, samples=4))
            await until(lambda: reader.counters.data_messages == 3, timeout=10)
            await until(lambda: reader.counters.write_errors >= 2, timeout=10)
            counters = await asyncio.wait_for(reader.stop(), 30)
    finally:
        pub.close()
    assert counters.points == 12 and counters.written == 0
    assert counters.dropped == 12  # 7 over the limit, then the 5 still unsent at exit



_SAMPLES = {"tag": ["d.t"], "value": [1], "ts": [1], "q": ["good"]}


@pytest.mark.parametrize(
    ("extra", "undecodable"),
    [
        ({"type": "birth", "tags": 5}, 1),
        ({"type": "birth", "tags": [{"name": ["not", "hashable"]}]}, 0),  # tag ignored
        ({"type": "data", "samples": _SAMPLES}, 1),  # no seq
        ({"type": "data", "seq": "x", "samples": _SAMPLES}, 1),
        ({"type": "data", "seq": 1, "samples": {**_SAMPLES, "ts": [float("inf")]}}, 1),
        ({"type": "data", "seq": float("inf"), "samples": _SAMPLES}, 1),
    ],
)
def test_malformed_json_messages_are_counted_never_raise(
    extra: dict[str, object], undecodable: int
) -> None:
    import json

    from brain_reader.counters import IngestCounters
    from brain_reader.json_messages import JsonIngest
    from brain_reader.points import PointEncoder

    counters = IngestCounters()
    ingest = JsonIngest(PointEncoder("m", "ms"), counters, sequence_check=True)
    body = {"v": 1, "site": "s", "line": "l", "gateway": "g", **extra}
    assert ingest.handle("t", json.dumps(body).encode()) == []
    assert counters.undecodable == undecodable


async def test_junk_and_gaps_from_a_publisher_are_counted_and_logged_once_per_kind(
    mosquitto: MqttBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """Whoever can publish on the contract's topics drives these per message: the log
    gets the first of each kind (error type, gateway), the counters every message."""
    caplog.set_level(logging.INFO, "brain_reader")
    config = ingest_config(mosquitto, None)
    pub = Publisher(mosquitto)
    try:
        async with running_reader(config) as reader:
            for i in range(20):  # junk that fails two ways in turn
                pub.publish(f"chenxing/v1/plant/l1/gw-{i}/data", b"{not json")
                pub.publish(f"chenxing/v1/plant/l1/gw-{i}/data", b'{"v": 1}')
            for seq in range(0, 40, 2):  # every other message of gw-x missing: 19 gaps
                pub.publish(*json_data(seq))
            assert await until(lambda: reader.counters.data_messages == 20, timeout=10)
            counters = await reader.stop()
    finally:
        pub.close()
    assert counters.undecodable == 40 and counters.gaps == 19
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    # before: one WARNING per message (59); now the 3 firsts and their summaries at exit
    assert len(warnings) == 3 + 3, warnings
    assert warnings[0].startswith("undecodable message: on chenxing/v1/plant/l1/gw-0/data: ")
    assert warnings[1] == "undecodable message: on chenxing/v1/plant/l1/gw-0/data: 'type'"
    assert warnings[2] == "sequence gap: gateway plant/l1/gw-x: seq 2 after 0: 1 missing so far"
    summaries = sorted(warnings[3:])
    assert re.fullmatch(r"sequence gap 18 more times in the last \d+ s: gateway plant/l1/gw-x: "
                        r"seq 38 after 36: 1 missing so far", summaries[0])
    assert re.fullmatch(r"undecodable message 19 more times in the last \d+ s: on "
                        r"chenxing/v1/plant/l1/gw-19/data: 'type'", summaries[1])
    assert re.fullmatch(r"undecodable message 19 more times in the last \d+ s: on "
                        r"chenxing/v1/plant/l1/gw-19/data: Expecting .*", summaries[2])


def test_deeply_nested_json_message_is_counted_never_raises() -> None:
    from brain_reader.counters import IngestCounters
    from brain_reader.json_messages import JsonIngest
    from brain_reader.points import PointEncoder

    counters = IngestCounters()
    ingest = JsonIngest(PointEncoder("m", "ms"), counters, sequence_check=True)
    payload = (b'{"v": 1, "site": "s", "line": "l", "gateway": "g", "type": "data", "seq": 1, '
               b'"samples": ' + b"[" * 30_000 + b"]" * 30_000 + b"}")
    assert ingest.handle("t", payload) == []
    assert counters.undecodable == 1
