"""The watcher's decoding (pure logic: payloads built here): Sparkplug aliases resolved
per edge node and device from the births, a rebirth asked for data before any birth,
the JSON contract with its events, filters, JSON-safe values and the console line."""

from __future__ import annotations

import json
import math

from brain_reader.watch import TagFilter, WatchDecoder, WatchedValue, line_of
from gateway.northbound.sparkplug import sparkplug_b_pb2 as pb

T = 1_795_000_000_000


def sparkplug(metrics: list[dict[str, object]], seq: int = 0) -> bytes:
    payload = pb.Payload(timestamp=T, seq=seq)
    for m in metrics:
        payload.metrics.add(**m)  # type: ignore[arg-type]
    return payload.SerializeToString()


def test_sparkplug_aliases_per_edge_node_and_device() -> None:
    asked: list[str] = []
    decoder = WatchDecoder("chenxing/v1", TagFilter(), lambda topic, _: asked.append(topic))
    early = decoder.handle("spBv1.0/plant/DDATA/gw-1/press", sparkplug([
        {"alias": 5, "double_value": 1.0}]))
    assert early is not None and early.values == [] and decoder.unknown_aliases == 1
    assert asked == ["spBv1.0/plant/NCMD/gw-1"]
    decoder.handle("spBv1.0/plant/NBIRTH/gw-1", sparkplug([
        {"name": "bdSeq", "alias": 1, "datatype": pb.Int64, "long_value": 0}]))
    birth = decoder.handle("spBv1.0/plant/DBIRTH/gw-1/press", sparkplug([
        {"name": "MeltTemp", "alias": 5, "datatype": pb.Double, "double_value": 231.5},
        {"name": "Count", "alias": 6, "datatype": pb.UInt64, "long_value": 2**64 - 1}]))
    assert birth is not None and birth.kind == "birth" and birth.total == 2
    assert [(v.path, v.value) for v in birth.values] == [("press.MeltTemp", 231.5),
                                                          ("press.Count", 2**64 - 1)]
    other = decoder.handle("spBv1.0/plant/DDATA/gw-2/press", sparkplug([
        {"alias": 5, "double_value": 9.0}]))  # another edge node: its own aliases
    assert other is not None and other.values == []
    data = decoder.handle("spBv1.0/plant/DDATA/gw-1/press", sparkplug([
        {"alias": 5, "double_value": 232.0}], seq=2))
    assert data is not None and data.kind == "data" and data.source == "plant/gw-1"
    [value] = data.values
    assert (value.device, value.tag, value.value, value.quality) == (
        "press", "MeltTemp", 232.0, "good")
    assert decoder.handle("spBv1.0/STATE/host", b"{}") is None


def test_filters_by_device_and_tag_name_or_path() -> None:
    selected = TagFilter(devices=("press-*",), tags=("*Temp*", "press-2.Count"))
    value = WatchedValue("data", "s", "press-1", "MeltTemp", 1.0, "good", T)
    assert selected.passes(value)
    assert not selected.passes(WatchedValue("data", "s", "press-1", "Count", 1, "good", T))
    assert selected.passes(WatchedValue("data", "s", "press-2", "Count", 1, "good", T))
    assert not selected.passes(WatchedValue("data", "s", "meter", "MeltTemp", 1, "good", T))


def test_json_contract_data_and_events() -> None:
    decoder = WatchDecoder("chenxing/v1", TagFilter(tags=("meter.v*",)))
    body = {"v": 1, "type": "data", "gateway": "gw", "site": "s", "line": "l", "seq": 1,
            "samples": {"tag": ["meter.voltage", "meter.current"], "value": [230.1, None],
                        "ts": [T, T], "q": ["good", "bad"]}}
    message = decoder.handle("chenxing/v1/s/l/gw/data", json.dumps(body).encode())
    assert message is not None and message.total == 2
    [value] = message.values
    assert (value.source, value.path, value.value) == ("s/l/gw", "meter.voltage", 230.1)
    event = decoder.handle("chenxing/v1/s/l/gw/event", b'{"event":"alarm","alarm":"hot"}')
    assert event is not None and event.kind == "event" and event.event == {
        "event": "alarm", "alarm": "hot"}
    assert decoder.handle("chenxing/v1/s/l/gw/cmd", b"{}") is None
    assert decoder.handle("elsewhere/x", b"{}") is None


def test_json_lines_and_console_lines() -> None:
    value = WatchedValue("data", "plant/gw-1", "press", "MeltTemp", math.nan, "uncertain", T)
    record = value.as_dict()
    assert record["value"] == "nan" and record["time"].endswith(".000Z")
    json.dumps(record, allow_nan=False)
    line = line_of(value, with_source=True)
    assert "plant/gw-1" in line and "press.MeltTemp" in line and "[uncertain]" in line
    good = WatchedValue("birth", "s", "m", "on", True, "good", T)
    assert line_of(good, with_source=False).split()[-2:] == ["true", "(birth)"]
