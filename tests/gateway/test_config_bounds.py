"""Hostile YAML: deep nesting, alias bombs and odd tags are refused with file, line and key,
in bounded memory and never with a traceback, by every reader of a user's YAML file."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import tracemalloc
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from brain_reader.config import load_ingest_config
from edge_models.manifest import load_manifest
from gateway.config.loader import load_config, load_config_text
from gateway.config.yaml_model import line_of, parse_yaml
from gateway.config.yaml_reader import MAX_ALIAS_NODES, MAX_DEPTH, MAX_NODES, YamlLimits
from gateway.errors import ConfigError
from hil.devices.modbus_map import load_map
from hil.scenario.model import load_scenario

REPO = Path(__file__).resolve().parents[2]

HEAD = textwrap.dedent("""\
    gateway:
      id: gw-1
      site: plant
      line: line-1
""")


def _device(tags: int, name: str = "meter") -> str:
    lines = [f"  - name: {name}\n    protocol: modbus_tcp\n    host: 127.0.0.1\n    tags:\n"]
    lines += [
        f"      - {{name: t{i}, table: holding, address: {2 * i}, type: float32, unit: kW,"
        f" scale: 0.1, offset: 0, deadband: 0.5, heartbeat: 60s, classification: public,"
        f" description: Tag number {i}, writable: true, range: [0, 1000]}}\n"
        for i in range(tags)
    ]
    return "".join(lines)


def _laughs(levels: int = 9) -> str:
    """The "billion laughs": each level a list of ten aliases of the one before."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def problems(text: str) -> list[tuple[int, str, str]]:
    with pytest.raises(ConfigError) as info:
        load_config_text(HEAD + text, "cfg.yaml")
    return [(p.line, p.path_text, p.message) for p in info.value.problems]


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 990, 30_000, 1_000_000])
def test_deep_flow_nesting_is_refused_at_its_line(depth: int) -> None:
    # libyaml's composer crashed the process (SIGSEGV) at 30,000 levels; the tree walk
    # raised RecursionError at 990; a million levels took minutes in the scanner
    found = problems("devices: []\nnested: " + "[" * depth + "]" * depth + "\n")
    # the top-level mapping is the first level, the outermost list the second
    path = "nested" + "[0]" * (MAX_DEPTH - 1)
    assert found == [(6, path, f"nested more than {MAX_DEPTH} levels deep")]


def test_deep_block_nesting_is_refused_and_the_limit_itself_is_fine() -> None:
    def nested(levels: int) -> str:  # mappings in block style, one level per line
        return "".join("  " * i + "k:\n" for i in range(levels - 1)) + "  " * levels + "k: 1\n"

    assert parse_yaml(nested(MAX_DEPTH), "n.yaml").problems == []
    [problem] = parse_yaml(nested(MAX_DEPTH + 1), "n.yaml").problems
    assert problem.line == MAX_DEPTH + 1 and problem.path == ("k",) * MAX_DEPTH
    assert str(problem) == f"n.yaml:{MAX_DEPTH + 1}: {'.'.join(['k'] * MAX_DEPTH)}: " \
                           f"nested more than {MAX_DEPTH} levels deep"


def test_billion_laughs_is_refused_before_it_is_built() -> None:
    text = HEAD + "devices: []\n" + _laughs()
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError) as info:
            load_config_text(text, "cfg.yaml")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # it used to build 4.8 million items (1.3 GB) from a 15 KB file; here 111,111-node
    # values are repeated by reference until the repeats pass the limit
    assert peak < 2_000_000
    [problem] = info.value.problems
    assert (problem.line, problem.path_text) == (11, "a5[7]")
    assert problem.message == (f"alias *a4 repeats 111,111 nodes: aliases may repeat at most "
                               f"{MAX_ALIAS_NODES:,} in a file")


def test_aliases_nested_deeper_than_the_limit_are_refused() -> None:
    inner, outer = "[" * 40 + "]" * 40, "[" * 26 + "*deep" + "]" * 26
    [(line, path, message)] = problems(f"devices: []\na: &deep {inner}\nb: {outer}\n")
    assert (line, message) == (7, f"alias *deep nests its value more than {MAX_DEPTH} levels deep")
    assert path == "b" + "[0]" * 26


def test_node_limit_counts_what_aliases_repeat() -> None:
    text = "a: &a [1, 2, 3, 4]\nb: [*a, *a]\nc: [*a]\n"
    assert parse_yaml(text, "f.yaml", YamlLimits(nodes=26)).problems == []  # 26 nodes
    [problem] = parse_yaml(text, "f.yaml", YamlLimits(nodes=25)).problems
    assert (problem.line, problem.path) == (3, ("c", 0))
    assert problem.message.startswith("more than 25 YAML nodes in the file")
    [problem] = parse_yaml(text, "f.yaml", YamlLimits(alias_nodes=14)).problems
    assert (problem.line, problem.path) == (3, ("c", 0))
    assert problem.message == "alias *a repeats 5 nodes: aliases may repeat at most 14 in a file"


def test_a_200000_tag_config_is_far_inside_the_limits() -> None:
    # 1,000 tags with every tag key written (29 nodes a tag) within 1/200 of the node limit:
    # 200,000 such tags fit (a real 200,000-tag config, 7 keys a tag, has 3.0 million nodes)
    text = HEAD + "devices:\n" + _device(1000)
    limits = YamlLimits(nodes=MAX_NODES // 200, alias_nodes=0)
    parsed = parse_yaml(text, "big.yaml", limits)
    assert parsed.problems == []
    assert len(parsed.data["devices"][0]["tags"]) == 1000
    config = load_config_text(text, "big.yaml")
    assert len(config.devices[0].tags) == 1000


def test_shared_tags_by_alias_still_load_and_errors_point_into_the_anchor() -> None:
    text = (HEAD + "devices:\n" + _device(3).replace("    tags:\n", "    tags: &tags\n")
            + "  - name: second\n    protocol: modbus_tcp\n    host: 127.0.0.1\n    tags: *tags\n")
    config = load_config_text(text, "cfg.yaml")
    assert [len(d.tags) for d in config.devices] == [3, 3]
    bad = text.replace("address: 2,", "address: -2,")
    with pytest.raises(ConfigError) as info:
        load_config_text(bad, "cfg.yaml")
    found = [(p.line, p.path_text) for p in info.value.problems]
    assert found == [(11, "devices[0].tags[1].address"), (11, "devices[1].tags[1].address")]


@pytest.mark.parametrize(("text", "message"), [
    ("when: 2024-02-30\n", "cannot read '2024-02-30' as !!timestamp: day is out of range"),
    ("count: !!int abc\n", "cannot read 'abc' as !!int: invalid literal"),
    ("ratio: !!float 1e\n", "cannot read '1e' as !!float: could not convert"),
    ("shape: !!map abc\n", "cannot read 'abc' as !!map: expected a mapping node"),
    ("thing: !custom 1\n", "unknown tag '!custom'"),
])
def test_a_scalar_that_cannot_be_read_names_its_line(text: str, message: str) -> None:
    [problem] = parse_yaml("a: 1\n" + text, "f.yaml").problems
    assert problem.line == 2 and problem.path == (text.split(":")[0],)
    assert problem.message.startswith(message)


@pytest.mark.parametrize(("text", "line", "message"), [
    ("a: &a [1, *a]\n", 1, "alias *a is inside its own anchor (a value cannot contain itself)"),
    ("a: 1\nb: *nope\n", 2, "alias *nope has no anchor &nope before it"),
    ("a: &x 1\nb: &x 2\n", 2, "anchor &x is defined twice"),
])
def test_broken_aliases_are_problems(text: str, line: int, message: str) -> None:
    [problem] = parse_yaml(text, "f.yaml").problems
    assert (problem.line, problem.message) == (line, message)


def test_a_load_retains_nothing() -> None:
    text = HEAD + "devices:\n" + _device(2000)
    load_config_text(text, "cfg.yaml")  # imports and caches first
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        load_config_text(text, "cfg.yaml")
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the old module-level scalar loader kept every scalar node of every load
    assert after - before < 50_000


def _yaml_objects() -> list[object]:
    """Live objects of PyYAML's parse: events, nodes, marks, loaders (gc-tracked, all)."""
    kinds = (yaml.Event, yaml.Node, yaml.Mark, yaml.BaseLoader, yaml.SafeLoader,
             getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return [o for o in gc.get_objects() if isinstance(o, kinds)]


def test_no_yaml_node_outlives_a_load() -> None:
    """Counted, not measured: one retained loader keeps a node per scalar of every file
    it read (issue 21: a module-level loader held 101,213 nodes at 20,000 tags)."""
    text = HEAD + "devices:\n" + _device(500)
    gc.collect()
    alive_before = len(_yaml_objects())
    config = load_config_text(text, "cfg.yaml")
    gc.collect()
    assert len(_yaml_objects()) == alive_before == 0
    # and what the load returned is all that stays: the file's tags, once
    first_tag = weakref.ref(config.devices[0].tags[0])
    del config
    gc.collect()
    assert first_tag() is None


def _ingest(path: Path) -> Any:
    return load_ingest_config(path, {})


READERS: dict[str, Callable[[Path], Any]] = {
    "config": load_config, "manifest": load_manifest, "scenario": load_scenario,
    "register map": load_map, "ingest config": _ingest,
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("bomb", ["laughs", "deep"])
def test_every_yaml_reader_refuses_bombs(tmp_path: Path, reader: str, bomb: str) -> None:
    path = tmp_path / "hostile.yaml"
    path.write_text(_laughs() if bomb == "laughs" else "a: " + "[" * 30_000 + "]" * 30_000)
    with pytest.raises(ConfigError) as info:
        READERS[reader](path)
    [problem] = info.value.problems
    expected = "aliases may repeat at most" if bomb == "laughs" else "levels deep"
    assert problem.file == str(path) and problem.line >= 1 and expected in problem.message


@pytest.mark.parametrize("command", ["validate", "run"])
def test_cli_prints_the_problem_and_exits_1(tmp_path: Path, command: str) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(HEAD + "devices: []\nnested: " + "[" * 30_000 + "]" * 30_000 + "\n")
    run = subprocess.run([sys.executable, "-m", "gateway.cli.main", command, "-c", str(path)],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert f"{path}:6: nested[0]" in run.stderr and "nested more than 64 levels deep" in run.stderr


class _RawKeyLoader(yaml.SafeLoader):
    """PyYAML's own reading, with keys kept as written (``on:`` is the key 'on', not True)
    as the gateway's reader keeps them."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        return {self.construct_scalar(k): self.construct_object(v, deep=deep)
                for k, v in node.value}


_RawKeyLoader.add_constructor("tag:yaml.org,2002:map", _RawKeyLoader.construct_mapping)
SHIPPED_YAML = sorted(p for pattern in ("config/*.yaml", "hil/**/*.yaml", "edge_models/**/*.yaml",
                                        "drivers/**/*.yaml")
                      for p in REPO.glob(pattern))


@pytest.mark.parametrize("path", SHIPPED_YAML, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_yaml_reads_as_pyyaml_reads_it(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    parsed = parse_yaml(text, str(path))
    assert parsed.problems == []
    assert parsed.data == yaml.load(text, _RawKeyLoader)  # a SafeLoader


def test_lines_of_a_valid_file_are_read_only_when_asked() -> None:
    """A valid file is read once without a line map (a problem-free load needs none); the
    first question about a line reads it again, and the answers are the same."""
    text = HEAD + "devices:\n" + _device(3)
    parsed = parse_yaml(text, "cfg.yaml")
    assert parsed.problems == [] and dict.__len__(parsed.lines) == 0  # not read yet
    assert line_of(parsed.lines, ("devices", 0, "tags", 2, "address")) == 12
    assert len(parsed.lines) > 0
    # a problem: read once more with lines from the start, the message has them
    [problem] = parse_yaml(text + "gateway: {}\n", "cfg.yaml").problems
    assert problem.message == "duplicate key (first on line 1)"


def test_repeated_plain_scalars_are_one_object() -> None:
    data = parse_yaml(HEAD + "devices:\n" + _device(3), "cfg.yaml").data
    tags = data["devices"][0]["tags"]
    assert tags[0]["table"] is tags[2]["table"] and tags[0]["unit"] is tags[1]["unit"]
