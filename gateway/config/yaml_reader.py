"""Read YAML text into plain data and a line map, within bounds.

The data is built straight from the parser's events, with no node tree in between:
libyaml's composer recurses in C (a list nested 30,000 deep crashed the process) and a
tree walk recurses in Python (a RecursionError about 990 deep). Here each level is
checked as it opens, and an alias adds the node count of its anchor before its value is
used. That value is the anchored object itself, as with ``yaml.safe_load``, never a
copy, and lines under an alias are looked up under its anchor: a "billion laughs" file
is refused after reading its few lines, in the memory those lines take. Every reader
of a user's YAML file (gateway config, model manifests, HIL scenarios and register
maps, the ingest config) comes through here. No state outlives a call.

A file in plain block YAML (most configs) is first read line by line
(:mod:`gateway.config.yaml_block`, ~3 times faster at 100,000 tags); any other file, and
every line map, comes from the events.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import types
from _collections_abc import dict_items, dict_keys, dict_values
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

import yaml

from gateway.config.yaml_block import read_block_yaml
from gateway.config.yaml_syntax import character_problem, syntax_problem
from gateway.errors import ConfigError, ConfigProblem, UnlocatedProblem

KeyPath = tuple[str | int, ...]

#: mapping and list levels; a gateway config uses 6 (a tag's ``range`` in a device's ``tags``)
MAX_DEPTH = 64
#: YAML nodes: keys, values, lists and mappings, an alias counted as every node it repeats
#: (a config of 200,000 tags with 7 keys each has 3.0 million)
MAX_NODES = 10_000_000
#: nodes that aliases may repeat, in all (a ``*meter_tags`` of 50 tags repeats 851)
MAX_ALIAS_NODES = 1_000_000

_STR_TAG = "tag:yaml.org,2002:str"
#: constructed scalars that may be shared between the places of a file that spell them alike
_IMMUTABLE = (str, int, float, bool, type(None), datetime.date)
#: libyaml's parser when PyYAML was built with it: same events and marks, much faster
_FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_CONSTRUCTORS = yaml.SafeLoader.yaml_constructors


@dataclass(frozen=True, slots=True)
class YamlLimits:
    """Bounds on a file's shape; the defaults are far beyond any real config."""

    depth: int = MAX_DEPTH
    nodes: int = MAX_NODES
    alias_nodes: int = MAX_ALIAS_NODES


class LineMap(dict[KeyPath, int]):
    """The 1-based line of each key path: of the key for a mapping's values, of the item in
    lists. A path under an alias has no entry: it is found under the alias's anchor.

    A file read without a problem gets an empty map that reads the file again, with
    lines, the first time :meth:`line_of` is asked (``fill``): a line is wanted only for
    a problem, and a map of every path of 100,000 tags takes ~100 MB and a third of the
    reading time."""

    __slots__ = ("_aliases", "_fill")

    def __init__(self, fill: Callable[[LineMap], None] | None = None) -> None:
        super().__init__()
        self._aliases: dict[KeyPath, KeyPath] = {}
        self._fill = fill

    def _ready(self) -> None:
        """Read the lines now if they were left for later (any look at the map does)."""
        if self._fill is not None:
            fill, self._fill = self._fill, None
            fill(self)

    @property
    def aliases(self) -> dict[KeyPath, KeyPath]:
        """Path of an alias's value -> path of its anchor's value."""
        self._ready()
        return self._aliases

    def __getitem__(self, key: KeyPath) -> int:
        self._ready()
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self._ready()
        return super().__contains__(key)

    def __iter__(self) -> Iterator[KeyPath]:
        self._ready()
        return super().__iter__()

    def __len__(self) -> int:
        self._ready()
        return super().__len__()

    def __eq__(self, other: object) -> bool:
        self._ready()
        if isinstance(other, LineMap):
            other._ready()
        return super().__eq__(other)

    __hash__ = None  # a dict: unhashable, as its base

    def get(self, key: KeyPath, default: Any = None, /) -> Any:
        self._ready()
        return super().get(key, default)

    def keys(self) -> dict_keys[KeyPath, int]:
        self._ready()
        return super().keys()

    def items(self) -> dict_items[KeyPath, int]:
        self._ready()
        return super().items()

    def values(self) -> dict_values[KeyPath, int]:
        self._ready()
        return super().values()

    def line_of(self, path: KeyPath) -> int:
        """The line of ``path``, or of its nearest ancestor with a line; 0 if none."""
        self._ready()
        while path not in self:
            for end in range(len(path) - 1, -1, -1):
                prefix = path[:end]
                anchor = self.aliases.get(prefix)
                if anchor is not None:  # an anchor precedes its aliases: this ends
                    path = anchor + path[end:]
                    break
                if prefix in self:
                    return self[prefix]
            else:
                return 0
        return self[path]


@dataclass(frozen=True, slots=True)
class ParsedYaml:
    data: Any
    lines: LineMap
    problems: list[ConfigProblem]


def read_yaml(text: str, file: str, limits: YamlLimits | None = None) -> ParsedYaml:
    """Parse one YAML document into plain data (dicts, lists, scalars) plus a line map.
    Syntax errors, duplicate keys, merges and files past ``limits`` become problems with
    file, line and key path; past a limit or at a syntax error ``data`` is None."""
    limits = limits or YamlLimits()
    data = read_block_yaml(text, limits.depth, limits.nodes)
    if data is not None:  # plain block YAML, read line by line; lines read when asked
        return ParsedYaml(data, LineMap(functools.partial(_fill_lines, text, file, limits)),
                          [])
    reader = _Reader(file, limits, lines=None)
    try:
        try:
            data = reader.read(text)
        except UnlocatedProblem:  # a problem: read again, noting the line of every path
            reader = _Reader(file, limits, LineMap())
            data = reader.read(text)
        else:
            reader.lines = LineMap(functools.partial(_fill_lines, text, file, limits))
    except ConfigError as exc:  # past a limit or a broken alias (_Reader._refuse)
        return ParsedYaml(None, reader.lines, [*reader.problems, *exc.problems])
    except yaml.MarkedYAMLError as exc:  # in plain words, with column, caret and hint
        return ParsedYaml(None, reader.lines, [syntax_problem(file, text, exc)])
    except yaml.reader.ReaderError as exc:  # a control character: no mark, a position
        problem = character_problem(file, text, exc.position, exc.character, exc.reason)
        return ParsedYaml(None, reader.lines, [problem])
    except yaml.YAMLError as exc:
        return ParsedYaml(None, reader.lines, [ConfigProblem(file, 0, (), f"YAML error: {exc}")])
    if data is _NOTHING:
        return ParsedYaml(None, reader.lines, [ConfigProblem(file, 1, (), "the file is empty")])
    return ParsedYaml(data, reader.lines, reader.problems)


_NOTHING: Any = object()


def _fill_lines(text: str, file: str, limits: YamlLimits, lines: LineMap) -> None:
    """Read ``text`` again into ``lines`` (a :class:`LineMap` made without them)."""
    reader = _Reader(file, limits, lines)
    with contextlib.suppress(ConfigError, yaml.YAMLError):
        reader.read(text)


@dataclass(slots=True)
class _Anchor:
    value: Any
    #: a scalar's event: its value is constructed where it is used (as a key: its text)
    scalar: yaml.ScalarEvent | None
    #: where the anchored value is in the data; None when it is in a value not kept
    path: KeyPath | None
    nodes: int
    height: int


@dataclass(slots=True)
class _Open:
    """A mapping or list being read."""

    value: Any
    path: KeyPath
    is_map: bool
    depth: int
    nodes_at_start: int
    #: inside a value that is not kept (a non-string key, a duplicate key's value):
    #: no lines and no problems are recorded
    quiet: bool
    is_key: bool = False
    anchor: str | None = None
    deepest: int = 0
    #: mappings: the next node is a key; the key its value goes under; skip that value
    expect_key: bool = True
    key: str = ""
    skip: bool = False


class _Reader:
    """One call of :func:`read_yaml`: the data so far, its lines, counts and anchors."""

    def __init__(self, file: str, limits: YamlLimits, lines: LineMap | None) -> None:
        """``lines``: the map to note every path's line in; None reads without lines, and
        raises :class:`UnlocatedProblem` at the first problem."""
        self.file = file
        self.limits = limits
        self.lines = lines if lines is not None else LineMap()
        self._noting = lines is not None
        #: plain scalars already constructed, by their text: most repeat (types, tables,
        #: numbers, the same tag names on every device), and the repeats share one object
        self._plain: dict[str, Any] = {}
        self.problems: list[ConfigProblem] = []
        self.nodes = 0
        self.alias_nodes = 0
        self._stack: list[_Open] = []
        self._anchors: dict[str, _Anchor] = {}
        self._open_anchors: set[str] = set()
        self._root: Any = _NOTHING
        self._loader: yaml.SafeLoader | None = None

    def read(self, text: str) -> Any:
        self._loader = loader = _FAST_LOADER(text)
        try:
            documents: list[yaml.Mark] = []
            while True:
                event = loader.get_event()  # type: ignore[no-untyped-call]  # PyYAML's stub
                kind = type(event)
                if kind is yaml.ScalarEvent:
                    self._scalar(event)
                elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                    self._open(event, kind is yaml.MappingStartEvent)
                elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                    self._close()
                elif kind is yaml.AliasEvent:
                    self._alias(event)
                elif kind is yaml.DocumentStartEvent:
                    if documents:
                        raise yaml.composer.ComposerError(
                            "expected a single document in the stream", documents[0],
                            "but found another document", event.start_mark)
                    documents.append(event.start_mark)
                elif kind is yaml.StreamEndEvent or event is None:
                    return self._root
        finally:
            self._loader = None
            loader.dispose()

    # --- events ------------------------------------------------------------------------
    def _scalar(self, event: yaml.ScalarEvent) -> None:
        line = _line(event.start_mark)
        top = self._stack[-1] if self._stack else None
        if event.anchor is not None:
            self._define(event.anchor, line)
        if top is not None and top.is_map and top.expect_key:
            self._count(1, line, top.path)
            self._key(top, event.value, line)
            if event.anchor is not None:
                self._anchors[event.anchor] = _Anchor(None, event, None, 1, 0)
            return
        path, kept, quiet = self._slot(top, line)
        self._count(1, line, path)
        value = self._construct(event, path, line, quiet)
        self._attach(top, path, value, kept)
        if event.anchor is not None:
            self._anchors[event.anchor] = _Anchor(None, event, None, 1, 0)

    def _open(self, event: yaml.CollectionStartEvent, is_map: bool) -> None:
        line = _line(event.start_mark)
        top = self._stack[-1] if self._stack else None
        depth = len(self._stack) + 1
        value: Any = {} if is_map else []
        if top is not None and top.is_map and top.expect_key:
            if not top.quiet:
                self._problem(line, top.path, "keys must be plain strings (no merges)")
            path, kept, quiet, is_key = top.path, False, True, True
        else:
            path, kept, quiet = self._slot(top, line)
            is_key = False
        self._count(1, line, path)
        if depth > self.limits.depth:
            self._refuse(line, path, f"nested more than {self.limits.depth} levels deep")
        self._attach(top, path, value, kept)
        if event.anchor is not None:
            self._define(event.anchor, line)
            self._open_anchors.add(event.anchor)
        self._stack.append(_Open(value, path, is_map, depth, self.nodes - 1, quiet, is_key,
                                 event.anchor, deepest=depth, expect_key=is_map))

    def _close(self) -> None:
        done = self._stack.pop()
        if done.anchor is not None:
            self._open_anchors.discard(done.anchor)
            self._anchors[done.anchor] = _Anchor(
                done.value, None, None if done.quiet else done.path,
                self.nodes - done.nodes_at_start, done.deepest - done.depth + 1)
        if self._stack:
            top = self._stack[-1]
            top.deepest = max(top.deepest, done.deepest)
            if done.is_key:
                top.expect_key, top.skip = False, True

    def _alias(self, event: yaml.AliasEvent) -> None:
        line = _line(event.start_mark)
        name = event.anchor
        top = self._stack[-1] if self._stack else None
        anchor = self._anchors.get(name) if name is not None else None
        where = top.path if top is not None else ()
        if anchor is None:
            if name in self._open_anchors:
                self._refuse(line, where, f"alias *{name} is inside its own anchor "
                                          "(a value cannot contain itself)")
            self._refuse(line, where, f"alias *{name} has no anchor &{name} before it")
        if top is not None and top.is_map and top.expect_key:
            self._count(anchor.nodes, line, top.path, alias=name)
            if anchor.scalar is not None:
                self._key(top, anchor.scalar.value, line)
            else:
                if not top.quiet:
                    self._problem(line, top.path, "keys must be plain strings (no merges)")
                top.expect_key, top.skip = False, True
            return
        path, kept, quiet = self._slot(top, line)
        self._count(anchor.nodes, line, path, alias=name)
        depth = len(self._stack) + anchor.height
        if depth > self.limits.depth:
            self._refuse(line, path, f"alias *{name} nests its value more than "
                                     f"{self.limits.depth} levels deep")
        if top is not None:
            top.deepest = max(top.deepest, depth)
        if anchor.scalar is not None:
            value = self._construct(anchor.scalar, path, line, quiet)
        else:
            value = anchor.value
            if self._noting and not quiet and anchor.path is not None:
                self.lines.aliases[path] = anchor.path
        self._attach(top, path, value, kept)

    # --- placing values ----------------------------------------------------------------
    def _key(self, top: _Open, key: str, line: int) -> None:
        top.expect_key = False
        child = (*top.path, key)
        if key == "<<":
            top.skip = True
            if not top.quiet:
                self._problem(line, top.path, "keys must be plain strings (no merges)")
        elif key in top.value:
            top.skip = True
            if not top.quiet:
                first = self.lines.get(child, 0) if self._noting else 0
                self._problem(line, child, f"duplicate key (first on line {first})")
        else:
            top.key = key
            if self._noting and not top.quiet:
                self.lines[child] = line

    def _slot(self, top: _Open | None, line: int) -> tuple[KeyPath, bool, bool]:
        """Where the next value goes: its path, whether it is kept, whether it is quiet."""
        if top is None:
            if self._noting:
                self.lines[()] = line
            return (), True, False
        if top.is_map:
            kept = not top.skip
            path = (*top.path, top.key) if kept else top.path
            top.expect_key, top.skip = True, False
            return path, kept, top.quiet or not kept
        path = (*top.path, len(top.value))
        if self._noting and not top.quiet:
            self.lines[path] = line
        return path, True, top.quiet

    def _attach(self, top: _Open | None, path: KeyPath, value: Any, kept: bool) -> None:
        if not kept:
            return
        if top is None:
            self._root = value
        elif top.is_map:
            top.value[path[-1]] = value
        else:
            top.value.append(value)

    def _construct(self, event: yaml.ScalarEvent, path: KeyPath, line: int,
                   quiet: bool) -> Any:
        """A scalar's value, resolved and constructed as ``yaml.safe_load`` does."""
        tag = event.tag
        plain = tag is None and event.implicit[0]
        if plain:
            known = self._plain.get(event.value, _NOTHING)
            if known is not _NOTHING:
                return known
        if tag is None or tag == "!":
            assert self._loader is not None
            tag = self._loader.resolve(  # type: ignore[no-untyped-call]  # PyYAML's stub
                yaml.ScalarNode, event.value, event.implicit)
        if tag == _STR_TAG:
            if plain:
                self._plain[event.value] = event.value
            return event.value
        constructor = _CONSTRUCTORS.get(tag)
        if constructor is None or tag is None:
            if not quiet:
                self._problem(line, path, f"unknown tag {tag!r}")
            return None
        marks: Any = (event.start_mark, event.end_mark)  # libyaml's marks: PyYAML's at run time
        node = yaml.ScalarNode(tag, event.value, marks[0], marks[1], event.style)
        try:
            value = constructor(self._loader, node)
            if isinstance(value, types.GeneratorType):  # a mapping or list tag: it raises
                steps = value
                value = next(steps)
                for _ in steps:
                    pass
        except (yaml.YAMLError, ValueError, OverflowError) as exc:
            if not quiet:
                reason = exc.problem if isinstance(exc, yaml.MarkedYAMLError) else exc
                short = tag.replace("tag:yaml.org,2002:", "!!")
                self._problem(line, path, f"cannot read {event.value!r} as {short}: {reason}")
            return None
        if plain and isinstance(value, _IMMUTABLE):
            self._plain[event.value] = value
        return value

    # --- bounds and problems -----------------------------------------------------------
    def _define(self, name: str, line: int) -> None:
        if name in self._anchors or name in self._open_anchors:
            self._refuse(line, self._stack[-1].path if self._stack else (),
                         f"anchor &{name} is defined twice")

    def _count(self, nodes: int, line: int, path: KeyPath, alias: str | None = None) -> None:
        self.nodes += nodes
        if alias is not None:
            self.alias_nodes += nodes
            if self.alias_nodes > self.limits.alias_nodes:
                self._refuse(line, path, f"alias *{alias} repeats {nodes:,} nodes: aliases "
                                         f"may repeat at most {self.limits.alias_nodes:,} "
                                         "in a file")
        if self.nodes > self.limits.nodes:
            self._refuse(line, path, f"more than {self.limits.nodes:,} YAML nodes in the "
                                     "file (keys, values, lists, mappings; an alias counts "
                                     "as every node it repeats)")

    def _problem(self, line: int, path: KeyPath, message: str) -> None:
        if not self._noting:
            raise UnlocatedProblem
        self.problems.append(ConfigProblem(self.file, line, path, message))

    def _refuse(self, line: int, path: KeyPath, message: str) -> NoReturn:
        """The file is past a limit or has a broken alias: reading stops here."""
        raise ConfigError([ConfigProblem(self.file, line, path, message)])


def _line(mark: Any) -> int:
    """The 1-based line of a parser mark (0 when the parser gave none)."""
    return int(mark.line) + 1 if mark is not None else 0
