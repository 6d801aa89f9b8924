"""Restricted tags stay in the gateway unless northbound.publish_restricted says otherwise."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from gateway.config.loader import load_config_text
from gateway.northbound.contract_json import JsonContract
from gateway.tags import TagCatalog
from gateway.types import SampleBatch

TAGS = [
    {"name": "power", "table": "input", "address": 0, "type": "float32",
     "classification": "public"},
    {"name": "recipe", "table": "holding", "address": 2, "type": "uint16",
     "classification": "restricted"},
    {"name": "count", "table": "input", "address": 3, "type": "uint16"},
]


def contract(**northbound: Any) -> JsonContract:
    body = {
        "gateway": {"id": "gw", "site": "s", "line": "l"},
        "devices": [{"name": "dev", "protocol": "modbus_tcp", "host": "127.0.0.1", "tags": TAGS}],
        "northbound": northbound,
    }
    cfg = load_config_text(json.dumps(body), "t.yaml")
    return JsonContract(cfg, TagCatalog(cfg.devices), "1")


def test_restricted_tags_are_dropped_from_birth_and_data_by_default() -> None:
    c = contract()
    birth = json.loads(c.birth(1, 0, 0, {}).payload)
    assert [t["tag"] for t in birth["tags"]] == ["dev.power", "dev.count"]
    batch = SampleBatch.of([0, 1, 2, 1, 0], [1.0, 2.0, 3.0, 4.0, 5.0], 10)
    visible = c.publishable(batch)
    assert visible.tag_ids.tolist() == [0, 2, 0]
    assert visible.values.tolist() == [1.0, 3.0, 5.0]
    body = json.loads(c.data(visible, 1, 1, 0).payload)
    assert "dev.recipe" not in body["samples"]["tag"]
    only_restricted = c.publishable(SampleBatch.of([1], [2.0], 10))
    assert len(only_restricted) == 0


def test_publish_restricted_true_publishes_everything() -> None:
    c = contract(publish_restricted=True)
    birth = json.loads(c.birth(1, 0, 0, {}).payload)
    assert len(birth["tags"]) == 3
    batch = SampleBatch.of(np.array([0, 1, 2]), [1.0, 2.0, 3.0], 10)
    assert c.publishable(batch) is batch
