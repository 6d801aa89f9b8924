"""The line reader of plain block YAML (gateway/config/yaml_block.py) builds exactly what the
full reader builds, or declines: on every YAML file of the repository, on hand-picked
forms, on a generated 10,000-tag config and on thousands of mutants of the example config."""

from __future__ import annotations

import math
import random
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.footprint import config_text
from gateway.config.yaml_block import read_block_yaml
from gateway.config.yaml_reader import YamlLimits, _Reader
from gateway.errors import ConfigError, UnlocatedProblem

REPO = Path(__file__).resolve().parents[2]
LIMITS = YamlLimits()


def _full(text: str) -> tuple[bool, Any]:
    """What the full (event) reader makes of ``text``: (read without a problem, data)."""
    try:
        data = _Reader("f.yaml", LIMITS, None).read(text)
    except (UnlocatedProblem, ConfigError, yaml.YAMLError):
        return False, None
    return True, data


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1, 1.0 and True are not the same)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def _check(text: str) -> Any:
    """The line reader's data for ``text`` (None when it declined), checked against the
    full reader's."""
    fast = read_block_yaml(text, LIMITS.depth, LIMITS.nodes)
    if fast is not None:
        ok, full = _full(text)
        assert ok, f"the line reader read what the full reader refuses:\n{text}"
        assert _same(fast, full), f"different data:\n{text}\n{fast!r}\n{full!r}"
    return fast


def test_every_yaml_file_of_the_repository() -> None:
    listed = subprocess.run(["git", "ls-files", "*.yaml", "*.yml"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()
    read = 0
    for name in listed:
        text = (REPO / name).read_text(encoding="utf-8")
        read += _check(text) is not None
    assert len(listed) > 50 and read > len(listed) // 3  # most files are plain block YAML


def test_a_generated_config_of_10000_tags_is_read_by_lines(tmp_path: Path) -> None:
    assert _check(config_text(100, 100, tmp_path)) is not None


@pytest.mark.parametrize("text", [
    "a: 1\nb:\n  c: x\n  d:\n    - 1\n    - two\n",
    "tags:\n- name: a\n  type: float32\n- name: b\nnext: 1\n",  # indentless list
    "a:\n  - b:\n    - 1\n    c: 2\n",  # indentless list under an item's key
    "a:\nb: 1\nc:\n",  # empty values
    "a:\n  -\n  - x\n  -\n    k: v\n",
    "a: yes\nb: No\nc: on\nd: ~\ne: null\nf: 0x1F\ng: 0o17\nh: 017\ni: 1_000\nj: 1:30\n"
    "k: .inf\nl: -.Inf\nm: .nan\nn: 1e3\no: 1.5e-3\np: +12\nq: -5\nr: 0b101\ns: 3.\n",
    "a: 'quoted: # not a comment'\nb: \"double\"   # a comment\nc: ''\nd: \"\"\n",
    "# head\n\n   # indented comment\na: 1 # tail\nb: x#y\nc: http://h:80/p?q=1\n",
    "a: 名称 单位\nb: Motor 1 speed (rpm)\nc: ns=2;s=Line1.Motor[0]\n",
    "  a: 1\n  b: 2\n",  # an indented top level
    "a: -x\nb: --\nc: a,b\nd: a [b] {c}\ne: 100%\nf: a  b\n",
    "- {name: t1, type: int16, address: 0, range: [0, 100], map: {on: 1, x: [yes, '2']}}\n",
    "a: {b: DB1.DBX0.0, c: MW10:INT, d: 1:30, e: \"ns=2;s=x\", f: a b}  # c\n",
    "a: [ ]\nb: {}\nc: [[1], [2, [3]]]\nd: {x: -1, y: -.5, z: ~}\n",
    "Golden.Name: {type: String, value: \"注塑机-1号\"}\n",
    "-   a: 1\n    b: 2\n",  # a list at the top: declined
])
def test_forms_read_alike(text: str) -> None:
    _check(text)


@pytest.mark.parametrize("text", [
    "a: 1\na: 2\n",  # duplicate key
    "a: &x 1\nb: *x\n",
    "a: [1, 2,]\n", "a: {b: 1, }\n", "a: {b}\n", "a: {b: 1\n", "a: [1,\n  2]\n",
    "a: {b: 1, b: 2}\n", "a: {b: c: d}\n", "a: [b # c]\n", "a: {b: 1}x\n",
    "a: |\n  text\n", "a: >\n  text\n",
    "a: !!str 1\n", "a: 'it''s'\n", 'a: "tab\\t"\n', "a: hello\n  world\n",
    "a: 1\n  b: 2\n", "a:\n    b: 1\n  c: 2\n", "a: b: c\n", "a: x:\n", "a:\tb\n",
    "---\na: 1\n", "a: 1\n...\n", "<<: {a: 1}\n", "'a': 1\n", "a: 2026-13-45\n",
    "a: 2026-12-05\n", "a: =\n", "a: 1\r", "\ufeffa: 1\n", "a: \x85\n", "", "# only\n",
    "a: - b\n", "a: -\n", "a: ? b\n", "a: @x\n", "a: `x`\n", "- a\n",
])
def test_other_forms_are_left_to_the_full_reader(text: str) -> None:
    assert read_block_yaml(text, LIMITS.depth, LIMITS.nodes) is None


def test_limits_are_left_to_the_full_reader() -> None:
    deep = "".join(f"{'  ' * i}k{i}:\n" for i in range(10)) + "  " * 10 + "v: 1\n"
    assert read_block_yaml(deep, 11, LIMITS.nodes) is not None
    assert read_block_yaml(deep, 10, LIMITS.nodes) is None
    assert read_block_yaml("a: 1\nb: 2\n", LIMITS.depth, 8) is None
    flow = "a: {" + ", ".join(f"k{i}: [{i}, {i}]" for i in range(100)) + "}\n"
    assert read_block_yaml(flow, LIMITS.depth, 1000) is not None
    assert read_block_yaml(flow, LIMITS.depth, 400) is None  # 503 nodes on one line
    assert read_block_yaml("a: [[1]]\n", 3, LIMITS.nodes) == {"a": [[1]]}
    assert read_block_yaml("a: [[1]]\n", 2, LIMITS.nodes) is None


def test_crlf_line_ends_read_alike() -> None:
    assert _check("a: 1\r\nb:\r\n  - x\r\n") == {"a": 1, "b": ["x"]}


def test_mutants_of_the_example_config_read_alike() -> None:
    """Characters that change YAML's meaning, put anywhere: the line reader either reads
    the mutant as the full reader does, or declines."""
    text = textwrap.dedent((REPO / "config" / "example.yaml").read_text(encoding="utf-8"))
    lines = [line for line in text.split("\n") if line.strip()][:120]
    base = "\n".join(lines) + "\n"
    assert _check(base) is not None
    pieces = ["{", "}", "[", "]", ", ", "{a: 1}", "[1, x]",
              ":", ": ", " #", "#", "-", "- ", " ", "  ", "'", '"', "\n", "\n  ", "&a ", "*a",
              "!", "|", ">", "[", "{", ",", "?", "%", "@", "~", "yes", "0x", "1:2", "\t", "."]
    rng = random.Random(21)
    read = 0
    for _ in range(2000):
        mutant = base
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(mutant))
            cut = rng.choice((0, 0, 1))
            mutant = mutant[:at] + rng.choice(pieces) + mutant[at + cut:]
        read += _check(mutant) is not None
    assert read > 200  # many mutants stay in the subset and were compared
