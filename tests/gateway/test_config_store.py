"""The versioned config store: versions with their records and diffs, pruning, the lock a
running gateway holds, the author note of the command line; the command line's reading side."""

from __future__ import annotations

import difflib
import json
import os
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway import exit_codes
from gateway.cli.main import main
from gateway.config.store import ConfigStore, text_sha256, unified_diff
from gateway.errors import ConfigStoreLocked, ConfigVersionUnknown


def test_versions_keep_text_record_and_diff_to_their_parent(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "config")
    assert store.current() is None and store.history() == []
    one = store.commit("a: 1\nb: 2\n", "file", "file", "first start", status="recorded")
    two = store.commit("a: 1\nb: 3\n", "alice", "api", "changed: b")
    assert (one.version, one.parent, two.version, two.parent) == (1, None, 2, 1)
    assert two.sha256 == text_sha256("a: 1\nb: 3\n") and two.status == "applying"
    assert store.diff(2) == "--- v1\n+++ v2\n@@ -1,2 +1,2 @@\n a: 1\n-b: 2\n+b: 3\n"
    assert store.diff(1).startswith("--- empty\n+++ v1\n")
    store.mark(2, "rolled_back", "device b not up")
    three = store.commit(store.text(1), "gateway", "rollback", "automatic rollback",
                         status="applied", restores=1)
    assert three.restores == 1 and store.current() == three
    # a fresh reader sees the same records
    again = ConfigStore(tmp_path / "config")
    assert [r.as_dict() for r in again.history()] == [r.as_dict() for r in store.history()]
    assert again.get(2).reason == "device b not up" and again.text(3) == "a: 1\nb: 2\n"
    assert again.diff_between(2, 3) == "--- v2\n+++ v3\n@@ -1,2 +1,2 @@\n a: 1\n-b: 3\n+b: 2\n"
    with pytest.raises(ConfigVersionUnknown, match=r"versions 1\.\.3 are kept"):
        again.text(9)


def test_old_versions_are_pruned(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "config", keep=3)
    for i in range(6):
        store.commit(f"v: {i}\n", "file", "file", "")
    assert store.numbers() == [4, 5, 6]
    assert sorted(p.name for p in (tmp_path / "config" / "versions").iterdir())[:3] == [
        "000004.diff", "000004.json", "000004.yaml"]
    assert store.diff(4) == "--- v3\n+++ v4\n@@ -1 +1 @@\n-v: 2\n+v: 3\n"


def _patch(old: str, diff: str) -> str:
    """``old`` with a unified diff applied (what ``patch`` would do)."""
    src = old.splitlines(keepends=True)
    out: list[str] = []
    at = 0
    lines = diff.splitlines(keepends=True)[2:]
    i = 0
    while i < len(lines):
        header = lines[i]
        assert header.startswith("@@ -"), header
        start = int(header.split()[1][1:].split(",")[0])
        count = header.split()[1].split(",")
        first = start - 1 if len(count) == 1 or count[1] != "0" else start
        out += src[at:first]
        at = first
        i += 1
        while i < len(lines) and not lines[i].startswith("@@"):
            kind, text = lines[i][0], lines[i][1:]
            nl_missing = i + 1 < len(lines) and lines[i + 1].startswith("\\")
            if nl_missing:
                text = text[:-1]
                i += 1
            if kind in " -":
                assert src[at] == text, (src[at], text)
                at += 1
            if kind in " +":
                out.append(text)
            i += 1
    return "".join(out + src[at:])


@pytest.mark.parametrize("seed", range(40))
def test_the_fast_diff_patches_the_old_text_into_the_new(seed: int) -> None:
    """Skipping the common head and tail keeps a valid diff (difflib may place a change
    elsewhere among equal lines; with distinct lines it is difflib's own)."""
    rng = random.Random(seed)
    distinct = seed % 2 == 0
    old = [f"line {i if distinct else rng.randrange(8)}\n" for i in range(rng.randrange(0, 60))]
    new = list(old)
    for k in range(rng.randrange(1, 4)):
        at = rng.randrange(len(new) + 1)
        op = rng.choice(["insert", "delete", "replace"])
        if op == "insert" or not new:
            new.insert(at, f"new {seed}-{k}\n")
        elif op == "delete":
            del new[min(at, len(new) - 1)]
        else:
            new[min(at, len(new) - 1)] = f"changed {k}\n"
    if rng.random() < 0.3 and new:
        new[-1] = new[-1].rstrip("\n")  # no newline at the end
    a, b = "".join(old), "".join(new)
    diff = unified_diff(a, b, "x", "y")
    assert _patch(a, diff) == b
    if distinct:
        expected = "".join(
            line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
            for line in difflib.unified_diff(a.splitlines(True), b.splitlines(True), "x", "y"))
        assert diff == expected


@pytest.mark.parametrize("seed", range(40))
def test_a_first_versions_diff_is_difflibs_without_its_line_strings(seed: int) -> None:
    """The diff of a first version (every line added) is built without a string per line
    (issue 21: ~85 MiB of peak RSS at 100,000 tags): the same text as difflib's, whatever
    the line breaks (a \r or another break str.splitlines knows takes difflib's way)."""
    rng = random.Random(seed)
    new = "".join(rng.choice(["a", "b: 1", " ", "\n", "\n", "é", "\t", "\r", "\x0b"])
                  for _ in range(rng.randint(1, 60)))
    if seed < 3:
        new = ["a\nb\n", "a", "\n"][seed]
    expected = "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
        for line in difflib.unified_diff([], new.splitlines(True), "empty", "v1"))
    assert unified_diff("", new, "empty", "v1") == expected
    assert _patch("", expected) == new
@pytest.mark.parametrize(("a", "b"), [
    ("", "a: 1\nb: 2\n"), ("", "a: 1"), ("", "x\n"), ("", "a\n\nb\n"), ("a\nb", ""),
    ("a\n", ""), ("", ""), ("", "a\r\nb\r\n"), ("", "a\rb\x85c\u2028"), ("x\ry", ""),
])
def test_a_diff_from_or_to_nothing_is_difflibs(a: str, b: str) -> None:
    """The first version's diff is written without difflib (it indexed all 500,000 lines of
    a 100,000-tag file, ~0.7 s at every first start): the same text."""
    expected = "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
        for line in difflib.unified_diff(a.splitlines(True), b.splitlines(True), "x", "y"))
    assert unified_diff(a, b, "x", "y") == expected
    assert _patch(a, expected) == b


def test_a_running_gateway_holds_the_store(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "config")
    assert store.holder() is None
    store.hold()
    try:
        assert store.holder() == os.getpid()
        with pytest.raises(ConfigStoreLocked, match=f"pid {os.getpid()}"):
            ConfigStore(tmp_path / "config").hold()
    finally:
        store.release()
    assert store.holder() is None


def test_the_author_note_is_taken_once_for_its_text(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "config")
    store.leave_author("ops", "cli", "a: 1\n")
    assert store.take_author("a: 2\n") is None  # another text: not this note (and gone)
    store.leave_author("ops", "cli", "a: 1\n")
    assert store.take_author("a: 1\n") == ("ops", "cli")
    assert store.take_author("a: 1\n") is None


def test_history_show_diff_and_rollback_without_a_running_gateway(tmp_path: Path) -> None:
    config = tmp_path / "gw.yaml"
    config.write_text("gateway: {id: gw, site: s, line: l, state_dir: st}\n# v2\n")
    store = ConfigStore(tmp_path / "st" / "config")
    store.commit("gateway: {id: gw, site: s, line: l, state_dir: st}\n", "file", "file",
                 "first start", status="recorded")
    store.commit(config.read_text(), "alice", "api", "no device changed (text only)",
                 status="applied")
    cli = CliRunner()
    out = cli.invoke(main, ["config", "history", "-c", str(config)])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].startswith("v1 ") and "recorded    file [file]  first start" in lines[0]
    assert lines[1].startswith("v2 ") and "applied     alice [api]" in lines[1]
    out = cli.invoke(main, ["config", "history", "-c", str(config), "--json", "-n", "1"])
    assert json.loads(out.output)["author"] == "alice"
    out = cli.invoke(main, ["config", "show", "-c", str(config)])
    assert out.output == config.read_text()
    out = cli.invoke(main, ["config", "show", "-c", str(config), "1", "--record"])
    assert json.loads(out.output)["summary"] == "first start"
    out = cli.invoke(main, ["config", "diff", "-c", str(config)])
    assert out.output.endswith("+# v2\n")
    out = cli.invoke(main, ["config", "show", "-c", str(config), "7"])
    assert out.exit_code == exit_codes.USAGE
    assert "config version 7 is not in" in out.output

    out = cli.invoke(main, ["config", "rollback", "-c", str(config), "--author", "ops"])
    assert out.exit_code == 0, out.output
    assert "no gateway runs" in out.output
    assert config.read_text() == store.text(1)
    assert store.take_author(store.text(1)) == ("ops", "cli")  # recorded at the next start
