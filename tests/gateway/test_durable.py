"""Replacing a state file whole (gateway/durable.py)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gateway.durable import replace_durably


def test_the_file_is_replaced_whole_with_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("old")
    replace_durably(path, b'{"next_seq": 5}', 0o600)
    assert path.read_bytes() == b'{"next_seq": 5}'
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary file left


def test_a_failed_replace_keeps_the_old_content_and_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "taken"
    path.mkdir()  # a folder where the file should be: the rename fails
    (path / "inside").write_text("kept")
    with pytest.raises(OSError):
        replace_durably(path, b"new")
    assert (path / "inside").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_a_missing_folder_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        replace_durably(tmp_path / "no" / "such", b"x")
