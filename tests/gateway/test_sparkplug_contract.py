"""Sparkplug B contract: datatypes, births, aliases, data by alias, seq patching, decoding."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from gateway.commands.result import CommandResult, WriteOutcome
from gateway.config.loader import load_config_text
from gateway.config.models import GatewayConfig
from gateway.errors import MalformedCommand, SparkplugDecodeError
from gateway.northbound.outbox import OutboxStats
from gateway.northbound.sparkplug import sparkplug_b_pb2 as pb
from gateway.northbound.sparkplug.commands import SparkplugCommandParser
from gateway.northbound.sparkplug.datatypes import quality_of
from gateway.northbound.sparkplug.decode import decode_payload, decode_state, parse_topic
from gateway.northbound.sparkplug.payloads import (
    LAST_COMMAND_RESULT,
    REBIRTH,
    CurrentValue,
    SparkplugPayloads,
)
from gateway.northbound.sparkplug.wire import as_historical, with_seq
from gateway.tags import TagCatalog
from gateway.types import Quality, SampleBatch

TAGS: list[dict[str, Any]] = [
    {"name": "power", "table": "input", "address": 0, "type": "float32", "unit": "kW",
     "description": "Active power"},
    {"name": "energy", "table": "input", "address": 2, "type": "float64", "unit": "kWh"},
    {"name": "count", "table": "input", "address": 6, "type": "uint32"},
    {"name": "offset", "table": "input", "address": 8, "type": "int16"},
    {"name": "big", "table": "input", "address": 10, "type": "int64"},
    {"name": "ubig", "table": "input", "address": 14, "type": "uint64"},
    {"name": "sig32", "table": "input", "address": 18, "type": "int32"},
    {"name": "u16", "table": "input", "address": 20, "type": "uint16"},
    {"name": "relay", "table": "coil", "address": 0, "type": "bool", "writable": True},
    {"name": "label", "table": "holding", "address": 30, "type": "string", "length": 8},
    {"name": "limit", "table": "holding", "address": 10, "type": "int16", "scale": 0.1,
     "writable": True, "range": [0, 100]},
    {"name": "secret", "table": "input", "address": 40, "type": "uint16",
     "classification": "restricted"},
]  # fmt: skip


def make_config(publish_restricted: bool = False, **sparkplug: Any) -> GatewayConfig:
    dev = {"name": "meter", "protocol": "modbus_tcp", "host": "127.0.0.1", "tags": TAGS}
    other = {"name": "meter2", "protocol": "modbus_tcp", "host": "127.0.0.1",
             "tags": [{"name": "power", "table": "input", "address": 0, "type": "float32"}]}
    body = {
        "gateway": {"id": "gw-1", "site": "plant", "line": "l1"},
        "devices": [dev, other],
        "northbound": {"format": "sparkplug", "sparkplug": sparkplug,
                       "publish_restricted": publish_restricted},
    }  # fmt: skip
    return load_config_text(json.dumps(body), "test.yaml")


def make_contract(**kw: Any) -> SparkplugPayloads:
    config = make_config(**kw)
    return SparkplugPayloads(config, TagCatalog(config.devices), "9.9.9")


def test_topics_default_from_identity_and_configurable() -> None:
    c = make_contract()
    assert c.node_topic("NBIRTH") == "spBv1.0/plant/NBIRTH/gw-1"
    assert c.device_topic("DDATA", "meter") == "spBv1.0/plant/DDATA/gw-1/meter"
    c = make_contract(group_id="grp", edge_node_id="edge7")
    assert c.node_topic("NDEATH") == "spBv1.0/grp/NDEATH/edge7"


def test_parse_topic() -> None:
    t = parse_topic("spBv1.0/g/DDATA/e/d")
    assert t is not None and (t.group_id, t.message_type, t.edge_node_id, t.device_id) == (
        "g", "DDATA", "e", "d")
    s = parse_topic("spBv1.0/STATE/host-1")
    assert s is not None and s.is_state and s.host_id == "host-1"
    for bad in ("spBv1.0/g/NDATA/e/d", "spBv1.0/g/DDATA/e", "spBv1.0/g/FOO/e",
                "chenxing/v1/a/b/c/data", "spBv1.0//NBIRTH/e"):
        assert parse_topic(bad) is None, bad


def test_ndeath_has_only_bdseq_and_no_seq() -> None:
    c = make_contract()
    m = c.ndeath(17, 1_700_000_000_000_000_000)
    assert (m.qos, m.retain) == (1, False)
    body = decode_payload(m.payload)
    assert body["seq"] is None
    assert [(x["name"], x["datatype"], x["value"]) for x in body["metrics"]] == [
        ("bdSeq", "Int64", 17)]


def test_nbirth_has_bdseq_rebirth_and_node_info() -> None:
    c = make_contract()
    stats = OutboxStats(queued=3, bytes=120, dropped=2, dropped_samples=9)
    m = c.nbirth(5, 1_700_000_000_000_000_000, 1_699_000_000_000_000_000,
                 {"meter": "up"}, stats, None, None)  # fmt: skip
    assert (m.topic, m.qos, m.retain) == ("spBv1.0/plant/NBIRTH/gw-1", 0, False)
    metrics = {x["name"]: x for x in decode_payload(with_seq(m.payload, 0))["metrics"]}
    assert metrics["bdSeq"]["value"] == 5
    assert metrics[REBIRTH]["datatype"] == "Boolean" and metrics[REBIRTH]["value"] is False
    assert metrics["Node Info/Gateway Version"]["value"] == "9.9.9"
    assert metrics["Node Info/Spool Messages"]["value"] == 3
    assert metrics["Node Info/Spool Dropped Samples"]["value"] == 9
    assert metrics["Node Info/Session Start"]["datatype"] == "DateTime"
    assert metrics[LAST_COMMAND_RESULT]["is_null"]
    aliases = [x["alias"] for x in metrics.values() if x["alias"] is not None]
    assert len(aliases) == len(set(aliases))
    assert not set(aliases) & {t.id + 1 for t in c.catalog.tags}


def test_dbirth_lists_every_publishable_tag_with_type_properties_and_value() -> None:
    c = make_contract()
    values = {c.catalog.id_of("meter.power"): CurrentValue(1.5, Quality.GOOD, 1_000_000_000_000),
              c.catalog.id_of("meter.offset"): CurrentValue(-3.0, Quality.UNCERTAIN, 0),
              c.catalog.id_of("meter.label"): CurrentValue("abc", Quality.GOOD, 0)}  # fmt: skip

    def current(tag_id: int) -> CurrentValue:
        return values.get(tag_id, CurrentValue(None, None, 0))

    m = c.dbirth("meter", 1_700_000_000_000_000_000, current)
    assert m.topic == "spBv1.0/plant/DBIRTH/gw-1/meter"
    metrics = {x["name"]: x for x in decode_payload(m.payload)["metrics"]}
    assert "secret" not in metrics  # restricted
    assert {n: x["datatype"] for n, x in metrics.items()} == {
        "power": "Float", "energy": "Double", "count": "UInt32", "offset": "Int16",
        "big": "Int64", "ubig": "UInt64", "sig32": "Int32", "u16": "UInt16",
        "relay": "Boolean", "label": "String", "limit": "Double",
    }  # fmt: skip
    power = metrics["power"]
    assert power["value"] == 1.5 and power["timestamp"] == 1_000_000
    assert power["alias"] == c.catalog.id_of("meter.power") + 1
    assert power["properties"] == {
        "engUnit": "kW", "description": "Active power", "sourceDevice": "meter",
        "classification": "internal", "sourceType": "float32", "writable": False, "Quality": 192,
    }  # fmt: skip
    # Sparkplug 3.0 defines 0, 192 and 500 only: uncertain is 0 with qualityDetail
    assert metrics["offset"]["value"] == -3 and metrics["offset"]["properties"]["Quality"] == 0
    assert metrics["offset"]["properties"]["qualityDetail"] == "uncertain"
    assert quality_of(metrics["offset"]["properties"]) is Quality.UNCERTAIN
    assert {x["properties"]["Quality"] for x in metrics.values()} <= {0, 192, 500}
    assert metrics["label"]["value"] == "abc"
    assert metrics["energy"]["is_null"] and metrics["energy"]["properties"]["Quality"] == 0
    assert metrics["limit"]["properties"]["engLow"] == 0.0
    assert metrics["limit"]["properties"]["engHigh"] == 100.0
    everything = make_contract(publish_restricted=True).dbirth("meter", 0, current)
    assert "secret" in {x["name"] for x in decode_payload(everything.payload)["metrics"]}


def test_data_is_by_alias_per_device_with_signed_values_and_quality() -> None:
    c = make_contract()
    cat = c.catalog
    ids = [cat.id_of(p) for p in ("meter.offset", "meter.big", "meter2.power", "meter.relay",
                                  "meter.sig32", "meter.ubig", "meter.energy")]  # fmt: skip
    values = np.array([-2.0, -(2.0**40), 3.25, 1.0, -70000.0, 2.0**63, np.nan])
    q = np.array([0, 0, 0, 0, 0, 0, int(Quality.BAD)], np.uint8)
    batch = SampleBatch.of(ids, values, 5_000_000, q)
    messages = c.data(batch, 7_000_000, max_samples=1000)
    assert sorted(m.topic for m in messages) == [
        "spBv1.0/plant/DDATA/gw-1/meter", "spBv1.0/plant/DDATA/gw-1/meter2"]
    assert all(m.qos == 0 and m.kind == "data" for m in messages)
    meter = next(m for m in messages if m.topic.endswith("/meter"))
    assert meter.samples == 6
    body = decode_payload(meter.payload)
    assert body["seq"] is None and body["timestamp"] == 7
    by_alias = {x["alias"]: x for x in body["metrics"]}
    assert all(x["name"] is None and x["datatype"] is None for x in body["metrics"])
    birth_types = {t.id + 1: pb.DataType.Name(int(c.datatypes[t.id])) for t in cat.tags}
    from gateway.northbound.sparkplug.decode import resolve_datatype

    def value(path: str) -> Any:
        alias = cat.id_of(path) + 1
        return resolve_datatype(by_alias[alias]["value"], birth_types[alias])

    assert value("meter.offset") == -2
    assert value("meter.big") == -(2**40)
    assert value("meter.sig32") == -70000
    assert value("meter.ubig") == 2**63
    assert value("meter.relay") is True
    energy = by_alias[cat.id_of("meter.energy") + 1]
    assert energy["is_null"] and energy["properties"] == {"Quality": 0}
    assert by_alias[cat.id_of("meter.offset") + 1]["timestamp"] == 5
    assert len(c.data(batch, 0, max_samples=2)) == 3 + 1  # 6 samples of meter in 2s, 1 of meter2


def test_seq_is_appended_and_wraps_to_two_byte_varints() -> None:
    c = make_contract()
    batch = SampleBatch.of([0], [1.0], 0)
    payload = c.data(batch, 0, 10)[0].payload
    for seq in (0, 1, 127, 128, 200, 255):
        assert decode_payload(with_seq(payload, seq))["seq"] == seq
    # a second append overrides the first (protobuf keeps the last scalar)
    assert decode_payload(with_seq(with_seq(payload, 3), 250))["seq"] == 250
    with pytest.raises(ValueError):
        with_seq(payload, 256)


def test_historical_marks_every_metric_and_keeps_values() -> None:
    c = make_contract()
    batch = SampleBatch.of([0, 1], [1.0, 2.0], 0)
    payload = c.data(batch, 0, 10)[0].payload
    body = decode_payload(with_seq(as_historical(payload), 9))
    assert body["seq"] == 9
    assert [(x["value"], x["is_historical"]) for x in body["metrics"]] == [
        (1.0, True), (2.0, True)]


def test_decode_rejects_garbage_and_state_is_json() -> None:
    with pytest.raises(SparkplugDecodeError):
        decode_payload(b"\xff\xff\xff")
    assert decode_state(b'{"online": true, "timestamp": 5}') == {"online": True, "timestamp": 5}
    for bad in (b"ONLINE", b'{"online": "yes"}', b"\xff", b'{"online": ' + b"[" * 30_000):
        with pytest.raises(SparkplugDecodeError):
            decode_state(bad)


def _dcmd(metrics: list[tuple[str | None, int | None, int, Any]], ts: int = 42) -> bytes:
    p = pb.Payload(timestamp=ts)
    for name, alias, datatype, value in metrics:
        m = p.metrics.add(datatype=datatype)
        if name is not None:
            m.name = name
        if alias is not None:
            m.alias = alias
        if datatype == pb.Boolean:
            m.boolean_value = value
        elif datatype == pb.Int16:
            m.int_value = value & 0xFFFFFFFF
        elif datatype == pb.Double:
            m.double_value = value
    return p.SerializeToString()


def test_dcmd_parses_to_writes_by_name_and_alias() -> None:
    c = make_contract()
    parse = SparkplugCommandParser(c, max_writes=8)
    limit_alias = c.catalog.id_of("meter.limit") + 1
    payload = _dcmd([("relay", None, pb.Boolean, True), (None, limit_alias, pb.Double, 12.5)])
    command = parse("spBv1.0/plant/DCMD/gw-1/meter", payload)
    assert [(w.tag, w.value) for w in command.writes] == [("meter.relay", True),
                                                          ("meter.limit", 12.5)]
    assert command.id.startswith("DCMD/meter@42#")
    # the same bytes again have the same id (a redelivery is not written twice)
    assert parse("spBv1.0/plant/DCMD/gw-1/meter", payload).id == command.id
    neg = parse("spBv1.0/plant/DCMD/gw-1/meter", _dcmd([("offset", None, pb.Int16, -4)]))
    assert neg.writes[0].value == -4
    # an alias of another device's tag is not this device's
    other = parse("spBv1.0/plant/DCMD/gw-1/meter2", _dcmd([(None, limit_alias, pb.Double, 1.0)]))
    assert other.writes[0].tag == f"meter2.alias {limit_alias}"
    with pytest.raises(MalformedCommand) as err:
        parse("spBv1.0/plant/DCMD/gw-1/meter", b"\xff\xff")
    assert err.value.command_id is not None
    with pytest.raises(MalformedCommand):  # only a rebirth: nothing to write
        parse("spBv1.0/plant/NCMD/gw-1", _dcmd([(REBIRTH, None, pb.Boolean, True)]))


def test_command_result_is_a_node_metric() -> None:
    c = make_contract()
    result = CommandResult("x", "rejected", "a write was rejected; nothing written",
                           [WriteOutcome("meter.power", 1.0, "rejected", "meter.power is not writable")])  # fmt: skip  # noqa: E501
    m = c.cmd_result(result, 1_000_000_000)
    assert m.topic == "spBv1.0/plant/NDATA/gw-1"
    (metric,) = decode_payload(m.payload)["metrics"]
    assert metric["alias"] == c.node_aliases[LAST_COMMAND_RESULT]
    body = json.loads(metric["value"])
    assert body["status"] == "rejected"
    assert body["results"][0]["reason"] == "meter.power is not writable"
