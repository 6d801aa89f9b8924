"""64-bit integers stay exact through config, pipeline, line protocol, ingest and the
Sparkplug decoder (pure logic; end to end: tests/integration/test_exact_values.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from line_protocol_parser import parse_line

from brain_reader.counters import IngestCounters
from brain_reader.json_messages import JsonIngest
from brain_reader.points import PointEncoder
from gateway.config.loader import load_config_text
from gateway.errors import ConfigError
from gateway.influxdb.line_protocol import FieldKind, field_value
from gateway.northbound.contract_json import JsonContract
from gateway.northbound.sparkplug.decode import resolve_datatype
from gateway.pipeline import Pipeline
from gateway.tags import TagCatalog
from gateway.types import DataType, Quality, SampleBatch
from tests.gateway.helpers import make_config

S = 1_000_000_000
ALL_ONES = 2**64 - 1


def tag(name: str, address: int, type_: str = "uint64", **kw: object) -> dict:
    return {"name": name, "address": address, "type": type_, **kw}


def objects(*values: object) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


# -- config --------------------------------------------------------------------------------


def test_a_fractional_scale_on_a_64_bit_tag_is_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError) as info:
        make_config([tag("energy", 0, scale=0.001)])
    text = str(info.value)
    assert "tags[0]" in text and "scale 0.001" in text and "exactly" in text


def test_whole_number_scaling_keeps_a_64_bit_tag_an_exact_integer() -> None:
    cfg = make_config([tag("count", 0, "int64", scale=10, offset=-5)])
    assert cfg.devices[0].tags[0].published_type is DataType.INT64
    p = Pipeline(TagCatalog(cfg.devices))
    out = p.process(SampleBatch.of([0], objects(2**53 + 1), S))
    assert out.values.tolist() == [(2**53 + 1) * 10 - 5]
    assert type(out.values[0]) is int


def test_an_explicit_mqtt_3_1_1_with_commands_is_refused_at_its_line() -> None:
    text = json.dumps({
        "gateway": {"id": "gw", "site": "s", "line": "l"},
        "devices": [{"name": "d", "protocol": "modbus_tcp", "host": "127.0.0.1",
                     "tags": [tag("a", 0)]}],
        "northbound": {"mqtt": {"protocol": "3.1.1"}},
        "commands": {"enabled": True},
    }, indent=1)  # fmt: skip
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "gw.yaml")
    (problem,) = info.value.problems
    assert problem.path == ("northbound", "mqtt", "protocol")
    assert problem.line == text.splitlines().index('   "protocol": "3.1.1"') + 1
    assert "MQTT 5" in problem.message and "retained" in problem.message


def test_the_mqtt_version_defaults_to_5_with_commands_and_to_3_1_1_without() -> None:
    with_commands = make_config([tag("a", 0)])
    assert with_commands.northbound.mqtt.protocol == "3.1.1"
    body = with_commands.model_dump(mode="json")
    body["commands"] = {"enabled": True}
    body["northbound"]["mqtt"]["protocol"] = None
    assert load_config_text(json.dumps(body)).northbound.mqtt.protocol == "5"


# -- pipeline ------------------------------------------------------------------------------


def test_the_all_ones_marker_and_extremes_pass_the_pipeline_exactly() -> None:
    p = Pipeline(TagCatalog(make_config([tag("u", 0), tag("i", 4, "int64"),
                                         tag("f", 8, "float32")]).devices))  # fmt: skip
    out = p.process(SampleBatch.of([0, 1, 2], objects(ALL_ONES, -(2**63), 1.5), S))
    got = dict(zip(out.tag_ids.tolist(), out.values.tolist(), strict=True))
    assert got == {0: ALL_ONES, 1: -(2**63), 2: 1.5}
    assert type(got[0]) is int and type(got[1]) is int
    assert p.latest(0) == ALL_ONES and p.latest(1) == -(2**63)


def test_a_scaled_value_outside_the_type_is_bad_never_wrapped() -> None:
    p = Pipeline(TagCatalog(make_config([tag("u", 0, offset=1)]).devices))
    out = p.process(SampleBatch.of([0, 0], objects(ALL_ONES - 1, ALL_ONES), [S, 2 * S]))
    assert out.values[0] == ALL_ONES and out.quality.tolist() == [Quality.GOOD, Quality.BAD]
    assert np.isnan(out.values[1]) and p.counters.samples_invalid == 1


def test_a_fraction_from_a_float_driver_is_bad_for_a_64_bit_tag() -> None:
    p = Pipeline(TagCatalog(make_config([tag("u", 0)]).devices))
    out = p.process(SampleBatch.of([0, 0], [5.0, 5.5], [S, 2 * S]))
    assert out.values[0] == 5 and type(out.values[0]) is int
    assert out.quality.tolist() == [Quality.GOOD, Quality.BAD]


def test_deadband_and_heartbeat_on_64_bit_tags_compare_exactly() -> None:
    p = Pipeline(TagCatalog(make_config([tag("u", 0, deadband=1, heartbeat="3s")]).devices))
    base = 2**60
    sent = []
    for t, v in enumerate([base, base + 1, base + 2, base + 2, base + 2, base + 2]):
        sent += p.process(SampleBatch.of([0], objects(v), t * S)).values.tolist()
    # float64 cannot tell 2**60 from 2**60 + 2: an exact comparison can
    assert sent == [base, base + 2, base + 2]


# -- the JSON contract -----------------------------------------------------------------------


def test_json_data_carries_64_bit_integers_as_exact_json_integers() -> None:
    cfg = make_config([tag("u", 0), tag("i", 4, "int64"), tag("s", 8, "int16")])
    contract = JsonContract(cfg, TagCatalog(cfg.devices), "test")
    batch = SampleBatch(np.array([0, 1, 2], np.int32), objects(ALL_ONES, np.nan, 3.0),
                        np.full(3, S, np.int64),
                        np.array([0, Quality.BAD, 0], np.uint8))  # fmt: skip
    body = json.loads(contract.data(batch, 1, 1, S).payload)
    assert body["samples"]["value"] == [ALL_ONES, None, 3]


# -- line protocol and ingest ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind", "field"),
    [
        (ALL_ONES, FieldKind.UINT, f"uint={ALL_ONES}u"),
        (-(2**63), FieldKind.INT, f"int={-(2**63)}i"),
        (2**53 + 1, FieldKind.INT, f"int={2**53 + 1}i"),
        (7.0, FieldKind.UINT, "uint=7u"),
        (7.5, FieldKind.INT, None),  # no whole number: no value field, the quality says why
        (2**63 - 1, FieldKind.INT, f"int={2**63 - 1}i"),
        (ALL_ONES, FieldKind.INT, f'text="{ALL_ONES}"'),  # unsigned_integers: false
        (2**60, FieldKind.FLOAT, f"int={2**60}i"),  # type unknown: never a rounded float
        (1.5, FieldKind.FLOAT, "value=1.5"),
        (float("nan"), FieldKind.UINT, None),
    ],
)
def test_line_protocol_fields_are_exact(value: object, kind: FieldKind, field: str | None) -> None:
    assert field_value(value, kind) == field
    if field is not None:  # an independent parser reads back exactly what was meant
        ((key, parsed),) = parse_line(f"m,tag=a {field} 1".encode())["fields"].items()
        expected = {"text": str(value), "value": value}.get(key, int(value))  # type: ignore[call-overload]
        assert parsed == expected and type(parsed) is type(expected)


def test_ingest_writes_json_64_bit_values_exactly_by_the_birth_types() -> None:
    ingest = JsonIngest(PointEncoder("{device}", "ms"), IngestCounters(), False)
    head = {"v": 1, "gateway": "gw", "site": "s", "line": "l"}
    ingest.handle("t/birth", json.dumps({**head, "type": "birth", "tags": [
        {"tag": "m.u", "name": "u", "type": "uint64"},
        {"tag": "m.i", "name": "i", "type": "int64"},
        {"tag": "n.u", "name": "u", "type": "float64"},
    ]}).encode())  # fmt: skip
    lines = ingest.handle("t/data", json.dumps({**head, "type": "data", "seq": 1, "samples": {
        "tag": ["m.u", "m.i", "n.u"], "value": [ALL_ONES, -(2**63), 2.5],
        "ts": [1, 1, 1], "q": ["good", "good", "good"]}}).encode())  # fmt: skip
    fields = [parse_line(line.encode())["fields"] for line in lines]
    assert fields[0]["uint"] == ALL_ONES and fields[1]["int"] == -(2**63)
    assert fields[2]["value"] == 2.5  # same name in another device: its own type


# -- Sparkplug signed integers ----------------------------------------------------------------


def test_sparkplug_signed_values_are_read_sign_extended_or_width_sized_never_truncated() -> None:
    assert resolve_datatype(0xFFFFFFFE, "Int16") == -2  # sign-extended (Tahu, the spec)
    assert resolve_datatype(0xFFFE, "Int16") == -2  # the type's width
    assert resolve_datatype(0x100, "Int8") == 256  # neither: as sent, not truncated to 0
    assert resolve_datatype(2**64 - 1, "Int64") == -1
    assert resolve_datatype(2**64 - 1, "UInt64") == ALL_ONES
