"""JSON from outside: nesting measured before decoding, too deep refused as bad JSON."""

from __future__ import annotations

import json

import pytest

from gateway import json_input
from gateway.json_input import MAX_DEPTH, TooDeep


def test_nesting_up_to_the_limit_decodes_as_json_loads_does() -> None:
    text = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert json_input.loads(text) == json.loads(text)
    doc = {"a": [{"b": "[[[[{{{{" * 100}], "c": '\\"[' * 50}  # brackets in strings do not count
    assert json_input.loads(json.dumps(doc).encode()) == doc
    assert json_input.depth(json.dumps(doc)) == 3


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 1_000, 30_000, 1_000_000])
def test_deeper_is_refused_as_bad_json_with_the_shallow_part_readable(levels: int) -> None:
    payload = b'{"id": "x", "deep": ' + b"[" * levels + b"]" * levels + b', "n": 1}'
    with pytest.raises(ValueError, match=f"nested more than {MAX_DEPTH} levels deep") as info:
        json_input.loads(payload)
    assert isinstance(info.value, TooDeep)
    shallow = info.value.shallow
    assert shallow["id"] == "x" and shallow["n"] == 1
    cut = shallow["deep"]
    for _ in range(MAX_DEPTH - 2):
        [cut] = cut
    assert cut == [None]


@pytest.mark.parametrize("payload", [b"[" * 100_000, b'{"id": "x", "a": ' + b"{" * 5_000])
def test_unclosed_deep_json_is_refused_too(payload: bytes) -> None:
    with pytest.raises(TooDeep) as info:
        json_input.loads(payload)
    assert info.value.shallow is None  # still not JSON once cut


@pytest.mark.parametrize("payload", [b"\xff\xfe{", b"{nope", b'"unterminated [[[[' + b"[" * 5_000,
                                     b"]]]]" + b"[" * 5_000])
def test_other_bad_input_raises_what_json_loads_raises(payload: bytes) -> None:
    with pytest.raises(ValueError):
        json_input.loads(payload)
