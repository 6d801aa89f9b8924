"""A driver's tag positions (tag id -> index in its config order) answer as the dict of
them would, with no map for consecutive ids (issue 21: no per-tag dict at start-up)."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.base import TagPositions


@pytest.mark.parametrize("ids", [(), (7,), (100, 101, 102, 103), (5, 9, 7), (3, 4, 6)])
def test_positions_answer_as_a_dict(ids: tuple[int, ...]) -> None:
    positions = TagPositions(ids)
    expected = {tag_id: i for i, tag_id in enumerate(ids)}
    assert dict(positions) == expected and len(positions) == len(expected)
    for probe in (*ids, -1, 0, 2, 8, 99, 104, "a", None, 101.5):
        assert (probe in positions) == (probe in expected), probe
        assert positions.get(probe) == expected.get(probe), probe
    for tag_id in ids:
        assert positions[tag_id] == expected[tag_id] == positions[np.int64(tag_id)]
    with pytest.raises(KeyError):
        positions[max(ids, default=0) + 1]


def test_consecutive_ids_keep_no_map() -> None:
    assert TagPositions(tuple(range(10, 1010)))._map is None
    assert TagPositions((1, 3))._map == {1: 0, 3: 1}
