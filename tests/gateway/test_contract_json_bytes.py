"""The JSON contract's data messages are the bytes ``json.dumps`` writes, whichever encoder
made them: orjson where it writes the same (most messages), the stdlib elsewhere
(gateway/northbound/contract_json.py, ``_orjson_same``)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson

from gateway.northbound import contract_json
from gateway.northbound.contract_json import JsonContract
from gateway.tags import TagCatalog
from gateway.types import SampleBatch
from tests.gateway.helpers import make_config


def _stdlib(payload: bytes) -> bytes:
    """The payload as the stdlib writes what it says (floats as ``repr``, non-ASCII
    escaped, integers exact)."""
    return json.dumps(json.loads(payload), separators=(",", ":"), allow_nan=False).encode()


def _contract(tags: list[dict[str, Any]], rename: dict[int, str] | None = None) -> JsonContract:
    """``rename``: tag id -> another path (names the config refuses, e.g. not ASCII)."""
    cfg = make_config(tags)
    catalog = TagCatalog(cfg.devices)
    for tag_id, path in (rename or {}).items():
        catalog.paths[tag_id] = path
    return JsonContract(cfg, catalog, "t")


FLOATS = [{"name": f"f{i}", "table": "input", "address": 4 * i, "type": "float64"}
          for i in range(64)]  # fmt: skip


def _batches(rng: np.random.Generator, values: np.ndarray, tags: int) -> list[SampleBatch]:
    out = []
    for start in range(0, len(values), 4096):
        part = values[start:start + 4096]
        n = len(part)
        out.append(SampleBatch(rng.integers(0, tags, n).astype(np.int32), part,
                               rng.integers(0, 2**62, n).astype(np.int64),
                               rng.integers(0, 3, n).astype(np.uint8)))  # fmt: skip
    return out


def _values(rng: np.random.Generator, n: int) -> np.ndarray:
    """Floats of every kind a device gives: any float64 or float32 bit pattern, decimals,
    integers near 2^53 and 2^63, powers of ten, tiny and huge magnitudes, zeros, NaN."""
    bits = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False).view(np.float64)
    f32 = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    edges = [0.0, -0.0, 1e-4, 1e-5, 9.99e-5, 1e-9, 1.1e-9, 9.9e-10, 1e16, 1e15, 1e21, 1e22,
             2.0**53, 2.0**53 + 2, 2.0**63, -(2.0**63), 5e-324, 1.7976931348623157e308, 0.1,
             np.nan]  # fmt: skip
    powers = [s * 10.0**e for e in range(-12, 23) for s in (1.0, -1.0, 1.5)]
    with np.errstate(invalid="ignore"):  # NaN bit patterns
        wide = f32.astype(np.float64)
    mixed = np.concatenate([bits, wide, np.round(rng.uniform(-1e6, 1e6, n), 3),
                            np.array(edges + powers)])  # fmt: skip
    return mixed[~np.isinf(mixed)]


def test_float_messages_are_the_stdlib_bytes() -> None:
    rng = np.random.default_rng(21)
    c = _contract(FLOATS)
    fast = slow = 0
    for batch in _batches(rng, _values(rng, 50_000), len(FLOATS)):
        payload = c.data(batch, seq=1, session=1, ts_ns=123_456_789_000).payload
        assert payload == _stdlib(payload)
        if contract_json._orjson_same(batch.values):
            fast += 1
        else:
            slow += 1
    assert fast and slow  # both encoders were used


def test_orjson_writes_floats_as_repr_outside_the_odd_range() -> None:
    """The premise of ``_orjson_same``, on a million values: orjson's float is ``repr``
    unless 1e-9 <= |x| < 1e-4, and its 64-bit integers are exact."""
    rng = np.random.default_rng(5)
    values = _values(rng, 300_000)
    values = values[~np.isnan(values)]
    magnitude = np.abs(values)
    same = values[(magnitude >= 1e-4) | (magnitude < 1e-9)].tolist()
    assert orjson.dumps(same) == json.dumps(same, separators=(",", ":")).encode()
    ints = [0, 1, -1, 2**53 + 1, 2**63 - 1, -(2**63), 2**64 - 1, *rng.integers(
        -(2**63), 2**63 - 1, 10_000, dtype=np.int64).tolist()]  # fmt: skip
    assert orjson.dumps(ints) == json.dumps(ints, separators=(",", ":")).encode()


def test_integer_and_bool_tags_and_non_ascii_paths_are_the_stdlib_bytes() -> None:
    tags = [{"name": "count", "table": "input", "address": 0, "type": "uint32"},
            {"name": "total", "table": "input", "address": 2, "type": "int64"},
            {"name": "relay", "table": "coil", "address": 0, "type": "bool"},
            {"name": "temp", "table": "input", "address": 6, "type": "float32"}]  # fmt: skip
    values = np.array([4_000_000_000.0, -(2.0**62), 1.0, 21.5, np.nan, 0.0])
    ids = np.array([0, 1, 2, 3, 3, 2], np.int32)
    batch = SampleBatch(ids, values, np.full(6, 1_000_000_000, np.int64),
                        np.array([0, 0, 0, 0, 2, 1], np.uint8))
    ascii_only = SampleBatch(ids[:3], values[:3], batch.ts_ns[:3], batch.quality[:3])
    for c in (_contract(tags), _contract(tags, {3: "dev.温度"})):
        for b in (batch, ascii_only):
            payload = c.data(b, seq=7, session=2, ts_ns=5_000_000_000).payload
            assert payload == _stdlib(payload)
    payload = _contract(tags, {3: "dev.温度"}).data(batch, seq=7, session=2, ts_ns=0).payload
    assert b"dev.\\u6e29\\u5ea6" in payload  # escaped, as the stdlib writes it
