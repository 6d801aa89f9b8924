"""Read the plain block YAML that config files are mostly written in, a line at a time.

A config of 100,000 tags is ~500,000 lines of ``key: value`` and ``- key: value``; taking
it through libyaml's events costs ~1.4 s for the events alone and as much again for the
Python that builds the data from them (:mod:`gateway.config.yaml_reader`): 2.6 s of CPU
in all. Read line by line with one regular expression (a line met before is not split
again: most repeat), the same file takes 0.5 s.

Only a strict subset is read here: block mappings and sequences (an indentless sequence
under a key too), flow mappings and sequences that end on their line (``- {name: t1,
type: int16, range: [0, 10]}``, as ``browse --yaml`` prints tags), bare keys, plain
scalars that cannot be mistaken for anything else, quoted scalars without escapes,
comments and blank lines. Anything else (anchors and aliases, tags, multi-line or block
scalars, escapes, tabs, other line breaks, a duplicate or merge key, a file past its
limits, anything libyaml would refuse) gives ``None``, and the caller reads the file
with :func:`gateway.config.yaml_reader.read_yaml`'s full reader, which also reports
every problem with its line. So this module never reports: what it returns is exactly
what the full reader would have built (tests/gateway/test_config_yaml_block.py compares
them on every YAML file of the repository and on mutants of the example config).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from gateway.errors import NotBlockYaml

#: a content line: indent, an optional sequence dash (with the spaces after it), then a
#: bare key and what follows its colon, or a value alone
_LINE = re.compile(r"( *)(?:(-)(?: +|$))?(?:([A-Za-z_][A-Za-z0-9_./-]*):(?: +|$))?(.*)")
#: a plain scalar that is text and nothing else in block context: it does not start with
#: an indicator (a '-' only before a non-space), and holds no ': ', ' #' nor a tab
_PLAIN = re.compile(r"(?:[^\s\-?:,\[\]{}#&*!|>'\"%@`]|-(?=\S))"
                    r"(?:[^:#\s]|:(?=\S)|(?<=\S)#| +(?=[^\s#]))*")
#: flow context: a plain scalar holds none of ',[]{}#?' nor quotes, a ':' only inside a word
_FLOW_PLAIN = re.compile(r"(?:[^\s\-?:,\[\]{}#&*!|>'\"%@`]|-(?=[^\s,\[\]{}]))"
                         r"(?:[^\s:,\[\]{}#?'\"]|:(?=\w)| +(?=[^\s:,\[\]{}#?'\"]))*")
_FLOW_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_./-]*): +")
#: after a flow item: a comma and the spaces after it, or the closing bracket
_FLOW_NEXT = re.compile(r" *(?:(,) *|([}\]]))")
_SPACES = re.compile(r" *")
_DOUBLE = re.compile(r'"([^"\\]*)"')
_SINGLE = re.compile(r"'([^']*)'")
#: what may follow a value on its line: spaces, then a comment
_TAIL = re.compile(r"(?: +#.*)? *")
#: characters the full reader refuses or treats as a line break (the tab too): read there
_OTHER = re.compile("[^\n\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
                    "|[\u2028\u2029\ufeff]")
#: the ASCII characters that are not among them
_ASCII_READ_HERE = bytes(range(0x20, 0x7F)) + b"\n"
_STR_TAG = "tag:yaml.org,2002:str"
_MAX_KEY = 1000  # libyaml's simple keys end at 1,024 characters
#: distinct lines whose split is kept while reading (~100 bytes each)
_LINES_KEPT = 20_000


class _Values:
    """Values written after a key or a dash: scalars by their text, constructed as the full
    reader constructs them, once, and shared by every place that writes them alike; flow
    collections on one line (``{name: t1, type: int16}``, ``[0, 100]``) built anew."""

    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = keys
        self.known: dict[str, Any] = {}
        self.resolver = yaml.resolver.Resolver()
        self.constructor = yaml.constructor.SafeConstructor()

    def __call__(self, rest: str, room: int) -> Any:
        """The value ``rest`` writes (its comment included); ``room``: the levels of
        nesting left under the depth limit."""
        known = self.known.get(rest, _UNKNOWN)
        if known is not _UNKNOWN:
            return known
        first = rest[0]
        if first == "{" or first == "[":
            value, end = self.flow(rest, 0, room)
            if not _TAIL.fullmatch(rest, end):
                raise NotBlockYaml
            return value  # a new collection at every place, as the full reader makes it
        if first == '"' or first == "'":
            match = (_DOUBLE if first == '"' else _SINGLE).match(rest)
            if match is None or not _TAIL.fullmatch(rest, match.end()):
                raise NotBlockYaml
            value = match.group(1)
        else:
            match = _PLAIN.match(rest)
            if match is None or not _TAIL.fullmatch(rest, match.end()):
                raise NotBlockYaml
            value = self.plain(match.group())
        self.known[rest] = value
        return value

    def flow(self, text: str, at: int, room: int) -> tuple[Any, int]:
        """The flow collection opening at ``text[at]``, and where it ends."""
        if room <= 0:
            raise NotBlockYaml
        is_map = text[at] == "{"
        value: Any = {} if is_map else []
        at = _SPACES.match(text, at + 1).end()  # type: ignore[union-attr]  # matches ''
        if text.startswith("}" if is_map else "]", at):
            return value, at + 1
        while True:
            if is_map:
                match = _FLOW_KEY.match(text, at)
                if match is None:
                    raise NotBlockYaml
                key = match.group(1)
                if key in value or key == "<<" or len(key) > _MAX_KEY:
                    raise NotBlockYaml
                key = self.keys.setdefault(key, key)
                at = match.end()
            item, at = self.flow_item(text, at, room)
            if is_map:
                value[key] = item
            else:
                value.append(item)
            match = _FLOW_NEXT.match(text, at)
            if match is None:
                raise NotBlockYaml
            at = match.end()
            if match.group(1) is None:
                if match.group(2) != ("}" if is_map else "]"):
                    raise NotBlockYaml
                return value, at

    def flow_item(self, text: str, at: int, room: int) -> tuple[Any, int]:
        if at >= len(text):
            raise NotBlockYaml
        first = text[at]
        if first == "{" or first == "[":
            return self.flow(text, at, room - 1)
        if first == '"' or first == "'":
            match = (_DOUBLE if first == '"' else _SINGLE).match(text, at)
            if match is None:
                raise NotBlockYaml
            return match.group(1), match.end()
        match = _FLOW_PLAIN.match(text, at)
        if match is None:
            raise NotBlockYaml
        word = match.group()
        known = self.known.get(word, _UNKNOWN)
        if known is _UNKNOWN:
            known = self.known[word] = self.plain(word)
        return known, match.end()

    def plain(self, text: str) -> Any:
        """A plain scalar, resolved and constructed as ``yaml.safe_load`` does."""
        tag = self.resolver.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]  # PyYAML's stub
        if tag == _STR_TAG:
            return text
        constructor = yaml.SafeLoader.yaml_constructors.get(tag)
        if constructor is None:
            raise NotBlockYaml
        try:
            value = constructor(self.constructor, yaml.ScalarNode(tag, text))
        except Exception as exc:  # a bad date or number: the full reader reports it
            raise NotBlockYaml from exc
        if not isinstance(value, _SHAREABLE):
            raise NotBlockYaml
        return value


def _read(text: str, max_depth: int) -> Any:
    """The data of ``text``; raises :class:`NotBlockYaml` where it leaves the subset.

    One loop over the lines, the open mappings and lists on a stack of
    ``(column, value, is_map)`` (the column of a mapping's keys, of a list's dashes). A
    value left empty on its line is *pending*: the block nested below it (deeper, or a
    list at the column of its key), else None."""
    keys: dict[str, str] = {}
    scalar = _Values(keys)
    stack: list[tuple[int, Any, bool]] = []
    root: Any = None
    # the pending value: its container, its key (None: the last list item), its column,
    # whether a key left it (a list may then start at the key's own column)
    p_container: Any = None
    p_key: str | None = None
    p_column = -1
    p_after_key = False
    line_match = _LINE.fullmatch
    #: lines already split, by their text: most of a large file's lines repeat (the same
    #: keys and values in every tag, the same tag names in every device)
    split: dict[str, tuple[int, bool, str | None, int, str]] = {}
    for line in text.split("\n"):
        parts = split.get(line)
        if parts is None:
            match = line_match(line)
            if match is None:
                raise NotBlockYaml
            indent, dash_text, key, rest = match.groups()
            if dash_text is None and key is None:
                if rest == "" or rest[0] == "#":
                    continue  # blank, or a comment
                raise NotBlockYaml  # a value alone on its line: a multi-line scalar, or an error
            parts = (len(indent), dash_text is not None, key,
                     match.start(3) if key is not None else -1, rest)
            if len(split) < _LINES_KEPT:
                split[line] = parts
        column, dash, key, key_column, rest = parts
        if p_container is not None:
            if column > p_column or (dash and p_after_key and column == p_column):
                value: Any = [] if dash else {}
                if p_key is None:
                    p_container[-1] = value
                else:
                    p_container[p_key] = value
                if len(stack) >= max_depth:
                    raise NotBlockYaml
                stack.append((column, value, not dash))
            p_container = None  # else it stays None, as it was placed
        elif root is None:  # the first line: the top level
            if dash:
                raise NotBlockYaml
            root = {}
            stack.append((column, root, True))
        while stack and (column < stack[-1][0] or (
                column == stack[-1][0] and not dash and not stack[-1][2])):
            stack.pop()
        if not stack:
            raise NotBlockYaml
        top_column, container, is_map = stack[-1]
        if top_column != column or is_map == dash:
            raise NotBlockYaml  # deeper than its block, a dash among keys or a key among dashes
        if dash:
            if key is None:
                if rest == "" or rest[0] == "#":
                    container.append(None)
                    p_container, p_key, p_column, p_after_key = container, None, column, False
                else:
                    container.append(scalar(rest, max_depth - len(stack)))
                continue
            mapping: dict[str, Any] = {}
            container.append(mapping)
            column = key_column
            if len(stack) >= max_depth:
                raise NotBlockYaml
            stack.append((column, mapping, True))
            container = mapping
        assert key is not None
        if key in container or key == "<<" or len(key) > _MAX_KEY:
            raise NotBlockYaml  # a duplicate or merge key: the full reader reports it
        key = keys.setdefault(key, key)
        if rest == "" or rest[0] == "#":
            container[key] = None  # its place in the order; None unless a block follows
            p_container, p_key, p_column, p_after_key = container, key, column, True
        else:
            container[key] = scalar(rest, max_depth - len(stack))
    if root is None:
        raise NotBlockYaml  # empty, or only comments: the full reader says so
    return root


_UNKNOWN: Any = object()
_SHAREABLE = (str, int, float, bool, type(None))


def _other_characters(text: str) -> bool:
    """Whether ``text`` holds a character that only the full reader reads."""
    if text.isascii():  # most files: deleting the printable bytes leaves nothing
        return bool(text.encode("ascii").translate(None, _ASCII_READ_HERE))
    return _OTHER.search(text) is not None


def read_block_yaml(text: str, max_depth: int, max_nodes: int) -> Any | None:
    """The data of ``text`` if it is plain block YAML within the limits (mapping and list
    levels, nodes), else None: the full reader must read it (and report its problems)."""
    text = text.replace("\r\n", "\n")
    # at most 3 nodes a line (a list item's mapping, a key, its value), and in flow
    # collections 3 a collection and 2 an item after a comma: past the limit the full
    # reader counts them and says where
    most = (3 * (text.count("\n") + 1) + 3 * (text.count("{") + text.count("["))
            + 2 * text.count(","))  # fmt: skip
    if most > max_nodes or _other_characters(text):
        return None
    try:
        return _read(text, max_depth)
    except NotBlockYaml:
        return None
