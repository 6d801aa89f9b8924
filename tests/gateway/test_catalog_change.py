"""A live config change: tags keep their ids, new tags take new ones, removed ids are retired
(never given to another tag), and the pipeline's per-tag state follows."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from gateway.config.loader import load_config_text
from gateway.config.models import GatewayConfig
from gateway.pipeline import Pipeline
from gateway.tags import TagCatalog
from gateway.types import Quality, SampleBatch

S = 1_000_000_000


def _config(devices: dict[str, list[dict[str, Any]]]) -> GatewayConfig:
    body = {
        "gateway": {"id": "gw", "site": "s", "line": "l"},
        "devices": [{"name": name, "protocol": "modbus_tcp", "host": "127.0.0.1", "tags": tags}
                    for name, tags in devices.items()],
    }
    return load_config_text(json.dumps(body), "test.yaml")


def _tag(name: str, address: int, **kw: Any) -> dict[str, Any]:
    return {"name": name, "address": address, "type": "int16", **kw}


def _catalog(devices: dict[str, list[dict[str, Any]]],
             previous: TagCatalog | None = None) -> TagCatalog:
    return TagCatalog(_config(devices).devices, previous)


def test_tags_keep_their_ids_and_removed_ids_are_not_reused() -> None:
    first = _catalog({"a": [_tag("x", 0), _tag("y", 1)], "b": [_tag("z", 0)]})
    assert [t.id for t in first.tags] == [0, 1, 2]
    second = _catalog({"b": [_tag("z", 0), _tag("w", 1)], "a": [_tag("y", 1, scale=2)]}, first)
    assert second.id_of("a.y") == 1 and second.id_of("b.z") == 2 and second.id_of("b.w") == 3
    assert second.get("a.x") is None and len(second) == 4 and len(second.tags) == 3
    assert second.live.tolist() == [False, True, True, True]
    assert second.devices() == ["b", "a"]
    assert second.ids_of_device("a") == [1]
    assert second.scale[1] == 2  # per-id arrays cover every id, retired ones too
    change = second.changed_since(first)
    assert change.added == (3,) and change.redefined == (1,) and change.retired == (0,)
    third = _catalog({"a": [_tag("x", 0), _tag("y", 1, scale=2)], "b": [_tag("z", 0)]}, second)
    assert third.id_of("a.x") == 0, "a tag removed and added again gets its old id back"
    change = third.changed_since(second)
    assert change.added == (0,) and change.redefined == () and change.retired == (3,)


def test_a_removed_device_keeps_its_device_index_for_samples_in_flight() -> None:
    first = _catalog({"a": [_tag("x", 0)], "b": [_tag("y", 0)]})
    second = _catalog({"b": [_tag("y", 0)]}, first)
    assert second.devices() == ["b"]
    assert second.device_of.tolist() == [second.device_index["a"], second.device_index["b"]]


def test_the_pipeline_keeps_the_state_of_unchanged_tags_and_resets_the_changed() -> None:
    first = _catalog({"a": [_tag("x", 0, deadband=5), _tag("y", 1, deadband=5)]})
    p = Pipeline(first)
    assert len(p.process(SampleBatch.of([0, 1], [100, 100], 1 * S))) == 2
    second = _catalog({"a": [_tag("x", 0, deadband=5), _tag("y", 1, deadband=5, scale=2),
                             _tag("new", 2)]}, first)
    p.revise(second, second.changed_since(first))
    out = p.process(SampleBatch.of([0, 1, 2], [101, 101, 7], 2 * S))
    # x: inside its deadband as before (no extra sample); y: redefined, starts afresh
    assert out.tag_ids.tolist() == [1, 2] and out.values.tolist() == [202, 7]
    assert p.latest(0) == 101 and p.latest(2) == 7
    assert p.current(np.array([2])).quality.tolist() == [Quality.GOOD]


def test_a_catalog_built_on_a_previous_one_has_the_arrays_of_one_built_afresh() -> None:
    first = _catalog({"a": [_tag("x", 0, scale=3), _tag("w", 5, type="int64")],
                      "b": [_tag("y", 1, deadband=2), _tag("z", 2, type="bool", bit=3)]})
    devices = {"b": [_tag("y", 1, deadband=2), _tag("z", 2, type="float32", offset=1)],
               "c": [_tag("s", 0, type="string", length=4), _tag("u", 9, type="uint64")],
               "a": [_tag("x", 0, scale=3), _tag("w", 5, type="int64", scale=2)]}
    grown = TagCatalog(_config(devices).devices, first)
    fresh = _catalog(devices)
    assert grown.devices() == fresh.devices() == ["b", "c", "a"]
    for tag in fresh.tags:
        i, j = grown.id_of(tag.path), tag.id
        for name in ("scale", "offset", "deadband", "heartbeat_ns", "is_bool", "is_string",
                     "is_integer", "is_wide", "paths"):
            assert getattr(grown, name)[i] == getattr(fresh, name)[j], (tag.path, name)
        assert grown.device_of[i] == grown.device_index[tag.device]
        assert (i in grown.wide) == (j in fresh.wide)
        if j in fresh.wide:
            assert grown.wide[i] == fresh.wide[j]
