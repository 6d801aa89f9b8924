"""Config errors in plain words: YAML syntax errors with line, column, caret and hint;
"did you mean" for misspelt keys and values; no validator jargon in any message.

The sweep at the end breaks the shipped files one key or value at a time (mutants) and
reads every message the loader gives back.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_models.manifest import parse_manifest
from gateway.config.loader import load_config_text
from gateway.config.plain_errors import plain_errors
from gateway.config.yaml_reader import read_yaml
from gateway.errors import ConfigError, ConfigProblem
from hil.scenario.model import load_scenario

REPO = Path(__file__).resolve().parents[2]

#: words of the validator library, not of a person writing a config
JARGON = re.compile(
    r"Input should|input_value|input_type|\[type=|union|discriminat|Input tag|expected tags"
    r"|Field required|Extra inputs|instance of|pydantic|validation error|Value error"
    r"|Assertion failed|dictionary|model_type|model_attributes|literal_error|function-"
    r"|tagged-|For further information"
    r"|\b[A-Z][A-Za-z]+Config\b|valid (string|integer|number|boolean|list|dict)")


def problems_of(text: str, file: str = "cfg.yaml") -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, file)
    return list(info.value.problems)


# --- YAML syntax: where, a caret, what to do ---------------------------------------------

SYNTAX = [
    # (broken file, line, column, words in the message, words in the hint)
    ("gateway:\n  id: gw-1\n  site: hall: 3\n", 3, 13, "a ': ' inside a value",
     "site: 'hall: 3'"),
    ("gateway:\n  id:gw-1\n  site: plant\n", 2, 6, "no space after its ':'", "'id: gw-1'"),
    ("gateway:\n  id gw-1\n  site: plant\n", 2, 10, "has no ':' after its key",
     "key: value"),
    ("gateway:\n  id: gw-1\n    site: plant\n", 3, 9, "indented deeper than the key on line 2",
     "indent it like line 2 (column 3)"),
    ("gateway:\n  id: gw-1\n- site: plant\n", 3, 1, "a list item ('- ') where a key",
     "indent the list's items"),
    ("gateway:\n  id: 'gw' 1\n", 2, 12, "text after the closing quote",
     "id: \"'gw' 1\""),
    ("gateway:\n    id: gw-1\n  site: plant\n", 3, 3, "matches no key above it",
     "start in the same column"),
    ("devices:\n  - name: a\n  -name: b\n", 3, 3, "needs a space after '-'", "'- name: b'"),
    ("devices:\n  - name: a\n  protocol: x\n", 3, 3, "a key in the column of the list",
     "goes in column 5"),
    ("gateway:\n  id: 'gw-1\n  site: plant\n", 2, 7, "the quote ' opened here is never closed",
     "close the value with '"),
    ("gateway:\n\tid: gw-1\n", 2, 1, "a tab character", "replace the tab with spaces"),
    ("gateway:\n  id: @gw\n", 2, 7, "'@' cannot start a value", "quotes: '@gw'"),
    ("tags: [a, b\nother: 1\n", 2, 6, "the '[' list opened on line 1 is not closed",
     "[a, b]"),
    ("tags: {a: 1, b: 2\nother: 1\n", 2, 6, "the '{' mapping opened on line 1",
     "{a: 1, b: 2}"),
    ('path: "C:\\data"\n', 1, 10, "'\\d' is not an escape", "single quotes"),
    ("a: *\n", 1, 4, "'*' starts an alias", "quotes"),
    ("a: | x\n  text\n", 1, 6, "after '|' or '>'", "next line"),
    ("a: 1\n---\nb: 2\n", 2, 1, "a second YAML document", "one document"),
    ("a: [1, , 2]\n", 1, 8, "a value is missing here", "empty list entry"),
    ("a: b\x07c\n", 1, 5, "character #x0007 is not allowed", "printable text"),
]


@pytest.mark.parametrize(("text", "line", "column", "words", "hint"), SYNTAX,
                         ids=[s[3] for s in SYNTAX])
def test_yaml_syntax_error_in_plain_words(text: str, line: int, column: int, words: str,
                                          hint: str) -> None:
    [problem] = read_yaml(text, "g.yaml").problems
    assert (problem.line, problem.column, problem.path) == (line, column, ())
    assert words in problem.message and hint in problem.hint
    shown = str(problem).splitlines()
    assert shown[0].startswith(f"g.yaml:{line}:{column}: YAML ")
    source, caret = shown[1], shown[2]
    assert source.startswith(f"    {line} | ") and caret.endswith("^")
    assert caret.index("^") == source.index("|") + 2 + column - 1  # under the spot
    assert shown[3] == f"    hint: {problem.hint}"
    assert not JARGON.search(problem.message + problem.hint)


def test_a_long_line_is_cut_around_the_spot() -> None:
    text = "a: " + "x" * 300 + ": y\n"
    [problem] = read_yaml(text, "g.yaml").problems
    source, caret = str(problem).splitlines()[1:3]
    assert len(source) < 120 and source[caret.index("^")] == ":"


def test_every_syntax_error_has_a_caret_and_a_hint() -> None:
    """Whatever is cut out of a valid file, a syntax error points somewhere and helps."""
    text = (REPO / "config/example.yaml").read_text()
    seen = 0
    for i in range(0, len(text) - 1, 97):  # a character removed, or doubled, here and there
        for broken in (text[:i] + text[i + 1:], text[:i] + text[i] + text[i:]):
            result = read_yaml(broken, "x.yaml")
            for p in result.problems:
                if p.message.startswith("YAML"):
                    seen += 1
                    assert p.line > 0 and p.column > 0 and p.hint, str(p)
                    assert "^" in str(p) and not JARGON.search(p.message + p.hint), str(p)
    assert seen > 10


# --- did you mean -------------------------------------------------------------------------

GOOD = """\
gateway: {id: gw-1, site: plant, line: line-1}
devices:
  - name: meter
    protocol: modbus_tcp
    host: 127.0.0.1
    poll_interval: 1s
    tags:
      - {name: voltage, table: input, address: 0, type: float32, unit: V}
"""


@pytest.mark.parametrize(("old", "new", "path", "message"), [
    ("poll_interval: 1s", "poll_intervall: 1s", "devices[0].poll_intervall",
     "unknown key 'poll_intervall'; did you mean 'poll_interval'?"),
    ("type: float32", "type: flaot32", "devices[0].tags[0].type",
     "unknown type 'flaot32'; did you mean 'float32'?"),
    ("table: input", "table: inptu", "devices[0].tags[0].table",
     "unknown table 'inptu'; did you mean 'input'? (one of holding, input, coil, discrete)"),
    ("protocol: modbus_tcp", "protocol: modbus-tcp", "devices[0].protocol",
     "unknown protocol 'modbus-tcp'; did you mean 'modbus_tcp'?"),
    ("site: plant", "site: plant, sight: x", "gateway.sight",
     "unknown key 'sight'; did you mean 'site'?"),
    ("host: 127.0.0.1", "host: 127.0.0.1\n    colour: red", "devices[0].colour",
     "unknown key 'colour' (keys here: "),
    ("address: 0", "address: '0x'", "devices[0].tags[0].address", "expected a whole number"),
    ("unit: V", "unit: 5", "devices[0].tags[0].unit",
     "expected text (got 5); put it in quotes to make it text"),
])
def test_misspellings_get_the_closest_name(old: str, new: str, path: str,
                                           message: str) -> None:
    [problem] = problems_of(GOOD.replace(old, new))
    assert problem.path_text == path and problem.message.startswith(message), str(problem)
    assert not JARGON.search(problem.message)


def test_a_union_of_shapes_is_one_sentence() -> None:
    """A value no member of a union takes is one problem, not one per member."""
    found = problems_of(GOOD.replace("unit: V", "unit: V, scale: [1]"))
    assert [(p.path_text, p.message) for p in found] == [
        ("devices[0].tags[0].scale", "expected a number (got a list)")]


def test_plain_errors_keeps_the_path_of_the_file() -> None:
    """The union member names pydantic inserts never reach the path."""
    from pydantic import BaseModel, ValidationError

    from gateway.config.models import GatewayConfig

    data = yaml.safe_load(GOOD.replace("address: 0", "address: -3"))
    with pytest.raises(ValidationError) as info:
        GatewayConfig.model_validate(data)
    [(path, message)] = plain_errors(GatewayConfig, data, info.value.errors())
    assert path == ("devices", 0, "tags", 0, "address")
    assert message.startswith("must be greater than or equal to 0")
    assert issubclass(GatewayConfig, BaseModel)


# --- the sweep: every key and value of the shipped files, broken one at a time --------------


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _leaves(value, (*path, i))
    else:
        yield path, node


def _mappings(node: Any,
              path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], dict[Any, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _mappings(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _mappings(value, (*path, i))


def _set(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    changed = copy.deepcopy(data)
    node = changed
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return changed


def _wrong_values(value: Any, index: int) -> list[Any]:
    """A misspelling of a text, and one wrong shape chosen by ``index``."""
    shapes: list[Any] = ["x", -1, 3.5, [1], {"a": 1}, None, True, "1e999"]
    out = [shapes[index % len(shapes)]]
    if isinstance(value, str) and value:
        out.append(value + value[-1])
    return out


def _mutants(data: Any) -> Iterator[tuple[tuple[Any, ...], str, Any, bool]]:
    """(where, what was broken, the broken data, whether a name was misspelt)."""
    for i, (path, value) in enumerate(_leaves(data)):
        if not path:
            continue
        for wrong in _wrong_values(value, i):
            misspelt = isinstance(value, str) and wrong == value + value[-1]
            yield path, f"{path}={wrong!r}", _set(data, path, wrong), misspelt
    for path, mapping in _mappings(data):
        for key in [k for k in mapping if isinstance(k, str)][:3]:
            renamed = key + key[-1]
            broken = {(renamed if k == key else k): v for k, v in mapping.items()}
            data2 = _set(data, path, broken) if path else broken
            yield path, f"{(*path, key)} renamed {renamed!r}", data2, True


#: a message that offers choices for a name it does not know
_CHOICES = re.compile(r"unknown .*\((one of|keys here:|the device has:)|types are")


def _sweep(load: Callable[[str], None], data: Any,
           prune: Callable[[tuple[Any, ...], Any], Any] = lambda _, d: d,
           ) -> tuple[int, list[str]]:
    """Load each mutant (as JSON, which is YAML, quick to write); the messages that speak
    jargon, or that offer choices for a misspelt name without the closest one."""
    bad: list[str] = []
    count = 0
    for path, what, mutant, misspelt in _mutants(data):
        try:
            load(json.dumps(prune(path, mutant), indent=1))
        except ConfigError as exc:
            count += 1
            for p in exc.problems:
                if JARGON.search(p.message) or not p.message.strip():
                    bad.append(f"{what}: {p}")
            offered = [p for p in exc.problems if _CHOICES.search(p.message)]
            if misspelt and offered and not any("did you mean" in p.message for p in offered):
                bad.append(f"{what}: no 'did you mean': {offered[0]}")
    return count, bad


def _one_device(path: tuple[Any, ...], data: Any) -> Any:
    """The config with only the device the mutant changed (or the first): the checks of
    one device do not need the others, and the sweep runs in seconds."""
    index = path[1] if path[:1] == ("devices",) and len(path) > 1 else 0
    if not isinstance(data.get("devices"), list) or not isinstance(index, int):
        return data
    return {**data, "devices": data["devices"][index:index + 1]}


def _read(path: Path) -> Any:
    """A file's data as the gateway reads it (``on`` is a key, not true)."""
    return read_yaml(path.read_text(), str(path)).data


@pytest.mark.slow
def test_no_jargon_in_any_message_of_the_example_config() -> None:
    def load(text: str) -> None:
        load_config_text(text, "example.yaml")

    count, bad = _sweep(load, _read(REPO / "config/example.yaml"), _one_device)
    assert count > 300 and not bad, "\n".join(bad[:40])


@pytest.mark.slow
def test_no_jargon_in_any_message_of_a_manifest_or_a_scenario(tmp_path: Path) -> None:
    def load_manifest(text: str) -> None:
        parse_manifest(text, "quality.yaml")

    count, bad = _sweep(load_manifest, _read(REPO / "edge_models/reference/quality.yaml"))
    assert count > 20 and not bad, "\n".join(bad[:40])

    def load(text: str) -> None:
        path = tmp_path / "s.yaml"
        path.write_text(text)
        load_scenario(path)

    count, bad = _sweep(load, _read(REPO / "hil/scenarios/plc_restart.yaml"))
    assert count > 20 and not bad, "\n".join(bad[:40])
