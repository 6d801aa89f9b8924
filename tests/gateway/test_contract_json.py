"""JSON contract v1: topics, births with the tag catalog, data batches, deaths, sequences."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from gateway.northbound import contract_json
from gateway.northbound.contract_json import JsonContract, decode_data
from gateway.northbound.sequence import SequenceStore
from gateway.tags import TagCatalog
from gateway.types import Quality, SampleBatch
from tests.gateway.helpers import make_config

TAGS = [
    {
        "name": "power",
        "table": "input",
        "address": 0,
        "type": "float32",
        "unit": "kW",
        "description": "Active power",
        "classification": "public",
    },
    {"name": "count", "table": "input", "address": 2, "type": "uint32"},
    {"name": "relay", "table": "coil", "address": 0, "type": "bool", "writable": True},
    {
        "name": "limit",
        "table": "holding",
        "address": 10,
        "type": "int16",
        "scale": 0.1,
        "writable": True,
        "range": [0, 100],
    },
]


def contract() -> JsonContract:
    cfg = make_config(TAGS)
    return JsonContract(cfg, TagCatalog(cfg.devices), "9.9.9")


def test_topics_follow_site_line_gateway() -> None:
    c = contract()
    assert c.topic("data") == "chenxing/v1/s/l/gw/data"
    assert c.birth(1, 0, 0, {}).topic == "chenxing/v1/s/l/gw/birth"


class _InSession:
    session = 42

    def in_session(self) -> bool:
        return True


def test_a_device_change_sends_only_that_device() -> None:
    """Up or down within a session: the device's retained message, no new birth (goal 5
    of issue 21: 2,000 devices coming up re-sent a 34 MB catalog 2,000 times)."""
    c = contract()
    c.attach(_InSession())  # type: ignore[arg-type]  # the session number is all it asks
    change = c.device_state_changed("dev", "down", in_session=True)
    assert not change.rebirth and change.flush_first
    [msg] = change.messages
    body = json.loads(msg.payload)
    assert msg.topic == "chenxing/v1/s/l/gw/device/dev" and msg.retain and msg.qos == 1
    assert body["type"] == "device" and body["session"] == 42
    assert body["device"] == {"name": "dev", "state": "down"}
    up = c.device_state_changed("dev", "up", in_session=True)
    assert not up.flush_first and json.loads(up.messages[0].payload)["device"]["state"] == "up"
    # out of a session, or starting and stopping: the next birth says it
    assert c.device_state_changed("dev", "up", in_session=False).messages == []
    assert c.device_state_changed("dev", "stopped", in_session=True).messages == []


def test_birth_carries_the_catalog_and_is_retained() -> None:
    msg = contract().birth(
        session=42, next_seq=7, ts_ns=1_700_000_000_123_000_000, devices={"dev": "up"}
    )
    body = json.loads(msg.payload)
    assert msg.retain and msg.qos == 1
    assert body["type"] == "birth" and body["v"] == 1 and body["seq"] == 7 and body["session"] == 42
    assert body["ts"] == 1_700_000_000_123
    assert body["devices"] == [{"name": "dev", "state": "up"}]
    power = body["tags"][0]
    assert power == {
        "tag": "dev.power",
        "device": "dev",
        "name": "power",
        "unit": "kW",
        "type": "float32",
        "source_type": "float32",
        "description": "Active power",
        "classification": "public",
        "writable": False,
    }
    limit = body["tags"][3]
    assert limit["type"] == "float64" and limit["source_type"] == "int16"  # scaled
    assert limit["range"] == [0, 100] and limit["writable"] is True


def test_data_types_nan_and_quality_encode_exactly() -> None:
    batch = SampleBatch.of(
        [0, 1, 2, 3, 0],
        [1.5, 4_000_000_000, 1, 12.5, np.nan],
        [1_000_000_001, 2_000_000_000, 3_000_000_000, 4_000_000_000, 5_000_000_000],
        [Quality.GOOD, Quality.GOOD, Quality.GOOD, Quality.UNCERTAIN, Quality.BAD],
    )
    msg = contract().data(batch, seq=99, session=3, ts_ns=6_000_000_000)
    assert msg.samples == 5 and msg.oldest_ns == 1_000_000_001 and not msg.retain
    raw = json.loads(msg.payload)
    assert raw["seq"] == 99 and raw["ts"] == 6000
    assert raw["samples"]["value"] == [1.5, 4_000_000_000, True, 12.5, None]
    assert isinstance(raw["samples"]["value"][1], int)
    samples = decode_data(msg.payload)
    assert [s["tag"] for s in samples] == [
        "dev.power",
        "dev.count",
        "dev.relay",
        "dev.limit",
        "dev.power",
    ]
    assert [s["quality"] for s in samples] == ["good", "good", "good", "uncertain", "bad"]
    assert [s["ts"] for s in samples] == [1000, 2000, 3000, 4000, 5000]


def test_sequence_never_repeats_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "seq.json"
    first = SequenceStore(path, block=5)
    used = [first.next() for _ in range(12)]
    assert used == list(range(12))
    second = SequenceStore(path, block=5)  # a restart, even after SIGKILL
    assert second.peek > used[-1]
    path.write_text("garbage")
    assert SequenceStore(path).peek == 0  # unreadable: a new epoch, logged


def test_a_batch_with_strings_keeps_bools_and_integers_typed() -> None:
    tags = [*TAGS, {"name": "serial", "table": "holding", "address": 20, "type": "string",
                    "length": 4}]
    cfg = make_config(tags)
    c = JsonContract(cfg, TagCatalog(cfg.devices), "t")
    values = np.array([1.5, 7.0, 1.0, "SN-42", np.nan], dtype=object)
    batch = SampleBatch(np.array([0, 1, 2, 4, 3], np.int32), values,
                        np.full(5, 1_000_000_000, np.int64),
                        np.array([0, 0, 0, 0, 2], np.uint8))
    raw = json.loads(c.data(batch, seq=1, session=1, ts_ns=0).payload)
    assert raw["samples"]["value"] == [1.5, 7, True, "SN-42", None]
    assert isinstance(raw["samples"]["value"][1], int)


def test_a_birth_prepared_ahead_is_the_same_bytes_and_used_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contract_json, "_TAGS_PER_CHUNK", 2)  # several steps of the loop
    cfg = make_config(TAGS)
    c = JsonContract(cfg, TagCatalog(cfg.devices), "9.9.9")
    made_now = c.birth(1, 5, 1_000_000, {"dev": "up"}).payload
    asyncio.run(c.prepare_births())
    prepared = c._prepared
    assert prepared is not None
    assert c.birth(1, 5, 1_000_000, {"dev": "up"}).payload == made_now
    assert c._prepared is None  # 34 MB at 200,000 tags: not kept
    asyncio.run(c.prepare_births())
    changed = make_config([*TAGS, {"name": "extra", "table": "input", "address": 40,
                                   "type": "int16"}])
    c.revise(changed, TagCatalog(changed.devices, c.catalog))  # a live change meanwhile
    after = json.loads(c.birth(1, 5, 1_000_000, {"dev": "up"}).payload)
    assert [t["tag"] for t in after["tags"]][-1] == "dev.extra"  # not the prepared one
