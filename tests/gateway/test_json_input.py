"""JSON from outside: nesting measured before decoding, too deep refused as bad JSON."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import json_input
from gateway.errors import JsonTooDeep
from gateway.json_input import MAX_DEPTH


def test_nesting_up_to_the_limit_decodes_as_json_loads_does() -> None:
    text = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert json_input.loads(text) == json.loads(text)
    # brackets in strings do not count, whatever the escapes around them
    doc = {"a": [{"b": "[[[[{{{{" * 100}], "c": '\\"[' * 50, "d": "ends in \\", "e": ["]]"]}
    assert json_input.loads(json.dumps(doc).encode()) == doc
    assert json_input.depth(json.dumps(doc).encode()) == 3
    assert json_input.depth(json.dumps({"a": [["x"] * 50]}).encode()) == 3  # no bracket in one


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 1_000, 30_000, 1_000_000])
def test_deeper_is_refused_as_bad_json_with_the_shallow_part_readable(levels: int) -> None:
    payload = b'{"id": "x", "deep": ' + b"[" * levels + b"]" * levels + b', "n": 1}'
    with pytest.raises(ValueError, match=f"nested more than {MAX_DEPTH} levels deep") as info:
        json_input.loads(payload)
    assert isinstance(info.value, JsonTooDeep)
    shallow = info.value.shallow
    assert shallow["id"] == "x" and shallow["n"] == 1
    cut = shallow["deep"]
    for _ in range(MAX_DEPTH - 2):
        [cut] = cut
    assert cut == [None]


@pytest.mark.parametrize("payload", [b"[" * 100_000, b'{"id": "x", "a": ' + b"{" * 5_000])
def test_unclosed_deep_json_is_refused_too(payload: bytes) -> None:
    with pytest.raises(JsonTooDeep) as info:
        json_input.loads(payload)
    assert info.value.shallow is None  # still not JSON once cut


@pytest.mark.parametrize("payload", [b"\xff\xfe{", b"{nope", b'"unterminated [[[[' + b"[" * 5_000,
                                     b"]]]]" + b"[" * 5_000])
def test_other_bad_input_raises_what_json_loads_raises(payload: bytes) -> None:
    with pytest.raises(ValueError):
        json_input.loads(payload)


def _levels(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_levels, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_levels, value), default=0)
    return 0


_TEXT = st.text(alphabet=st.sampled_from('[]{}"\\ab\u00e9\u4e2d\n'), max_size=8)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(value=_JSON, ascii_only=st.booleans())
def test_depth_counts_the_brackets_outside_strings(value: object, ascii_only: bool) -> None:
    payload = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert json_input.depth(payload) == _levels(value)
    assert json_input.loads(payload, max_depth=_levels(value)) == value
