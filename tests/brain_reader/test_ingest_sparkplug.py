"""``chenxing-ingest`` on Sparkplug B: aliases from births, a rebirth request for
data seen before any birth, seq gaps and duplicates; real Mosquitto and victoria-metrics."""

from __future__ import annotations

import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.northbound.sparkplug import sparkplug_b_pb2 as pb
from gateway.northbound.sparkplug.decode import decode_payload
from hil.broker import MqttBroker
from hil.victoria_metrics import VictoriaMetrics
from tests.brain_reader.helpers import BASE_MS, Publisher, ingest_config, running_reader
from tests.integration.gateway_harness import gateway_config, meter_device, running
from tests.waiting import until

pytestmark = pytest.mark.broker

GROUP, EDGE, DEVICE = "plant", "edge-1", "press"


def payload(seq: int | None, ts: int, metrics: list[dict[str, object]]) -> bytes:
    p = pb.Payload(timestamp=ts)
    if seq is not None:
        p.seq = seq
    for m in metrics:
        quality = m.pop("quality", None)
        metric = p.metrics.add(**m)  # type: ignore[arg-type]
        if quality is not None:
            metric.properties.keys.append("Quality")
            metric.properties.values.add(type=pb.Int32, int_value=quality)
    return p.SerializeToString()


def topic(kind: str, device: str | None = DEVICE) -> str:
    return f"spBv1.0/{GROUP}/{kind}/{EDGE}" + (f"/{device}" if device else "")


class CommandListener:
    """Subscribes to the edge node's NCMD topic, as the edge node would."""

    def __init__(self, broker: MqttBroker) -> None:
        self.payloads: list[bytes] = []
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="edge-1-commands")
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = lambda c, u, msg: self.payloads.append(bytes(msg.payload))
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(topic("NCMD", None), 1)
        self.client.loop_start()
        assert self._ready.wait(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def test_aliases_resolve_after_births_and_unknown_ones_ask_for_a_rebirth(
    mosquitto: MqttBroker, victoria_metrics: VictoriaMetrics
) -> None:
    config = ingest_config(mosquitto, victoria_metrics, formats=["sparkplug"])
    pub, commands = Publisher(mosquitto), CommandListener(mosquitto)
    t = BASE_MS
    try:
        async with running_reader(config) as reader:
            # the reader started after the births: data by alias alone cannot be resolved
            pub.publish(topic("DDATA"), payload(7, t, [{"alias": 1, "double_value": 9.9}]))
            await until(lambda: len(commands.payloads) == 1, timeout=10)
            assert reader.counters.unknown_aliases == 1
            rebirth = decode_payload(commands.payloads[0])["metrics"]
            assert [(m["name"], m["value"]) for m in rebirth] == [("Node Control/Rebirth", True)]

            pub.publish(topic("NBIRTH", None), payload(0, t + 1, [
                {"name": "bdSeq", "alias": 100, "datatype": pb.Int64, "long_value": 3},
                {"name": "Node Control/Rebirth", "alias": 101, "datatype": pb.Boolean,
                 "boolean_value": False}]))  # fmt: skip
            pub.publish(topic("DBIRTH"), payload(1, t + 2, [
                {"name": "force", "alias": 1, "datatype": pb.Double, "double_value": 1.5,
                 "timestamp": t + 2},
                {"name": "count", "alias": 2, "datatype": pb.Int32, "int_value": 2**32 - 3,
                 "timestamp": t + 2}]))  # fmt: skip
            pub.publish(topic("DDATA"), payload(2, t + 3, [
                {"alias": 1, "double_value": 2.5, "timestamp": t + 3},
                {"alias": 2, "int_value": 2**32 - 7, "timestamp": t + 3, "quality": 0}]))
            pub.publish(topic("DDATA"), payload(4, t + 4, [  # seq 3 never arrives
                {"alias": 1, "double_value": 3.5, "timestamp": t + 4}]))
            pub.publish(topic("DDATA"), payload(4, t + 4, [  # sent twice
                {"alias": 1, "double_value": 3.5, "timestamp": t + 4}]))
            pub.publish(topic("DDATA"), payload(5, t + 5, [{"alias": 9, "int_value": 1}]))
            await until(lambda: reader.counters.data_messages == 5, timeout=10)
            counters = await reader.stop()
    finally:
        pub.close()
        commands.close()
    assert (counters.births, counters.gaps, counters.duplicates) == (2, 1, 1)
    assert counters.unknown_aliases == 2  # the one before the births, alias 9
    assert counters.rebirths_requested == 1  # the second within the hold-off: not asked again
    expected = {
        ("press_value", "tag=force"): {t + 2: 1.5, t + 3: 2.5, t + 4: 3.5},
        ("press_value", "tag=count"): {t + 2: -3.0, t + 3: -7.0},
        ("press_quality", "tag=count"): {t + 2: 0.0, t + 3: 2.0},  # 2 = bad
    }

    def stored() -> dict[tuple[str, str], dict[int, float]]:
        points = victoria_metrics.points('{__name__=~"press_.*"}')
        out = {}
        for key, values in points.items():
            name, *labels = key
            assert {"gateway=edge-1", "group=plant", "device=press"} <= set(labels)
            out[(name, next(x for x in labels if x.startswith("tag=")))] = values
        return {k: v for k, v in out.items() if k in expected}

    assert victoria_metrics.wait_for(lambda: stored() == expected)
    assert stored() == expected


async def test_a_sparkplug_gateway_through_ingest_matches_its_own_influxdb_sink(
    tmp_path: Path, mosquitto: MqttBroker, victoria_metrics: VictoriaMetrics, waveform_meter
) -> None:
    """End to end: the gateway publishes Sparkplug B (data QoS 1) and also writes its
    samples through its InfluxDB sink; the reader's points are the sink's points."""
    influx = {"url": victoria_metrics.url, "bucket": "edge", "flush_interval": "200ms"}
    gw_config = gateway_config(
        tmp_path, mosquitto.port, [meter_device("meter", waveform_meter.port)],
        http={"enabled": False}, format="sparkplug", sparkplug={"data_qos": 1}, influxdb=influx,
    )  # fmt: skip
    config = ingest_config(mosquitto, victoria_metrics, formats=["sparkplug"])
    async with running_reader(config) as reader:
        async with running(gw_config) as gw:
            await until(lambda: reader.counters.data_messages >= 20, timeout=30)
            assert (await gw.stop()).drained
            nb = gw.gateway.northbound
            assert nb is not None
        # births, data and the death: every message the broker acknowledged to the gateway
        await until(lambda: reader.counters.received >= nb.counters.messages_published,
                    "every message the gateway published at the reader",
                    seen=lambda: (reader.counters.received, nb.counters.messages_published))
        counters = await reader.stop()
    assert counters.unknown_aliases == 0 and counters.gaps == 0 and counters.duplicates == 0
    assert counters.births >= 2  # NBIRTH and the meter's DBIRTH

    def by_writer() -> tuple[dict[str, set[int]], dict[str, set[int]]]:
        sink: dict[str, set[int]] = {}
        ingest: dict[str, set[int]] = {}
        for row in victoria_metrics.export('{__name__="meter_quality"}'):
            m = row["metric"]
            side = ingest if "group" in m else sink
            side.setdefault(m["tag"], set()).update(row["timestamps"])
        return sink, ingest

    assert victoria_metrics.wait_for(lambda: (lambda s, i: s == i and len(s) == 6)(*by_writer()))
    sink, ingest = by_writer()
    assert len(sink) == 6 and sum(map(len, sink.values())) >= 20 * 6 / 2
    assert ingest == sink


def test_a_quality_property_that_is_not_an_integer_makes_the_point_bad() -> None:
    from brain_reader.counters import IngestCounters
    from brain_reader.points import PointEncoder
    from brain_reader.sparkplug_messages import SparkplugIngest, quality_code

    assert [quality_code({"Quality": q}) for q in ("bad", 1.5, True, None, 192)] == [2, 2, 2, 0, 0]
    payload = pb.Payload(timestamp=BASE_MS, seq=0)
    metric = payload.metrics.add(name="x", alias=1, datatype=pb.Int32, int_value=5)
    metric.properties.keys.append("Quality")
    metric.properties.values.add(type=pb.String, string_value="bad")
    ingest = SparkplugIngest(PointEncoder("m", "ms"), IngestCounters(), True, None)
    (line,) = ingest.handle("spBv1.0/g/NBIRTH/n", payload.SerializeToString())
    assert "quality=2i" in line, line
