"""Read an edited config again in part: only the device, or the tag, the edit touched.

Validating a config of 10,000 tags reads every line of it (seconds on an edge box). A live
change usually edits one device: when every line that differs from the config running lies
inside one device's block (from its ``- name:`` line to the line before the next device or
the next top-level key), only that block is read (parsed with the same reader, at the same
line numbers; only the one tag's block when the lines are all inside one item of its
``tags``) and the device validated again; the rest of the data, the line map (shifted past
the block) and the validated config are those of the config running, and the checks across
devices run on the whole. Anything else (an edit outside the devices, across two devices, a
new device, aliases in the file, a block that does not read as exactly one device, any
problem at all) gives None, and the caller reads the whole text: problems are then reported
exactly as ``validate`` reports them.
"""

from __future__ import annotations

import itertools
import re

from pydantic import ValidationError

from drivers.registration import DriverRegistry
from drivers.registry import REGISTRY
from gateway.config.loader import ConfigDocument, semantic_checks
from gateway.config.yaml_model import parse_yaml
from gateway.config.yaml_reader import KeyPath, LineMap

__all__ = ["ODD_BREAKS", "item_spans", "read_edit"]

#: what a YAML alias looks like (``*name`` after a space, a line start or a flow indicator);
#: a ``*`` in a plain scalar may match too, and the text is then read whole, which is safe
_ALIAS = re.compile(r"(?:^|[\s\[{,])\*[^\s,\[\]{}]", re.MULTILINE)
#: characters str.splitlines breaks lines at and YAML does not: lines would not match
ODD_BREAKS = re.compile("[\x0b\x0c\x1c\x1d\x1e]")


def read_edit(previous: ConfigDocument, text: str,
              drivers: DriverRegistry = REGISTRY) -> ConfigDocument | None:
    """``text`` validated by reading again only the device (or the one tag of a device) it
    changed from ``previous``; None when that does not apply (read the whole text instead)."""
    old = previous.text.splitlines(keepends=True)
    new = text.splitlines(keepends=True)
    if text == previous.text or _ALIAS.search(previous.text) or ODD_BREAKS.search(text):
        return None  # an alias copies a value: an edit of its anchor changes it elsewhere
    head = 0
    limit = min(len(old), len(new))
    while head < limit and old[head] == new[head]:
        head += 1
    tail = 0
    while tail < limit - head and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    changed = (head + 1, len(old) - tail)  # 1-based old lines; an insertion has last < first
    device = _item_holding(previous, ("devices",), changed, len(old) + 1)
    if device is None:
        return None
    index, device_first, device_end = device
    tag = _item_holding(previous, ("devices", index, "tags"), changed, device_end)
    if tag is not None:  # one tag, else (a tag added after it...) the whole device
        edited = _read_item(previous, new, ("devices", index, "tags", tag[0]), *tag[1:], drivers)
        if edited is not None:
            return edited
    return _read_item(previous, new, ("devices", index), device_first, device_end, drivers)


def _read_item(previous: ConfigDocument, new: list[str], path: KeyPath, first: int, end: int,
               drivers: DriverRegistry) -> ConfigDocument | None:
    """The edited text with the item at ``path`` (a device, or a tag of one: old lines
    ``[first, end)``) read again and its device validated again; None when the new lines
    there are not one item, or anything is wrong."""
    old = previous.text.splitlines(keepends=True)
    delta = len(new) - len(old)
    lines = new[first - 1: end - 1 + delta]
    if not _one_item_at(lines, old[first - 1]):
        return None
    snippet = parse_yaml("\n" * (first - 1) + "".join(lines), previous.file)
    if snippet.problems or snippet.lines.aliases or not isinstance(snippet.data, list) or \
            len(snippet.data) != 1 or not isinstance(snippet.data[0], dict):
        return None
    index = int(path[1])
    previous_data = previous.read_data()
    data = dict(previous_data)
    data["devices"] = list(previous_data["devices"])
    if len(path) == 2:
        raw = snippet.data[0]
    else:
        raw = dict(data["devices"][index])
        raw["tags"] = list(raw["tags"])
        raw["tags"][int(path[3])] = snippet.data[0]
    data["devices"][index] = raw
    protocol = raw.get("protocol")
    if not isinstance(protocol, str) or drivers.get(protocol) is None:
        return None  # read whole: its problem is reported as validate reports it
    try:  # by its own driver's config (the whole union is built on first use)
        validated = drivers.narrowed([protocol]).device_adapter.validate_python(raw)
    except ValidationError:
        return None  # read whole: its problems are reported as validate reports them
    line_map = _merged_lines(previous.lines, snippet.lines, path, _at(previous_data, path),
                             end, delta)
    if semantic_checks(drivers)(data, previous.file, line_map):
        return None
    devices = list(previous.config.devices)
    devices[index] = validated.with_base_dir(previous.base_dir)
    config = previous.config.model_copy(update={"devices": devices})
    return ConfigDocument("".join(new), previous.file, previous.base_dir, data, line_map,
                          config)


def _item_holding(previous: ConfigDocument, path: KeyPath, changed: tuple[int, int],
                  parent_end: int) -> tuple[int, int, int] | None:
    """(index, first line, end line) of the one item of the block list at ``path`` whose
    lines ``[first, end)`` hold every changed old line, or None."""
    spans = item_spans(previous.read_data(), previous.lines, path, parent_end)
    first_changed, last_changed = changed
    for index, (first, end) in enumerate(spans or ()):
        if first <= first_changed and last_changed < end:
            return index, first, end
    return None


def item_spans(data: object, lines: LineMap, path: KeyPath,
               parent_end: int) -> list[tuple[int, int]] | None:
    """The lines ``[first, end)`` of each item of the block list at ``path`` in ``data``
    (read with ``lines``), or None when it is not a block list with one item per line
    range (flow style, items sharing a line, an alias). An item ends where the next begins;
    the last one where the next key of the list's parent begins (or at ``parent_end``).
    Comments and blank lines before an item belong to the item above it."""
    items = _at(data, path)
    if not isinstance(items, list) or not items:
        return None
    starts = [lines.get((*path, i)) for i in range(len(items))]
    if any(s is None for s in starts):
        return None
    firsts = [int(s) for s in starts if s is not None]
    if any(b <= a for a, b in itertools.pairwise(firsts)):
        return None  # flow style, or items sharing a line
    parent = _at(data, path[:-1])  # the mapping holding the list
    keys = list(parent) if isinstance(parent, dict) else []
    after = [line for line in (lines.get((*path[:-1], key)) for key in keys)
             if line is not None and firsts[-1] < line < parent_end]
    ends = [*firsts[1:], min(after) if after else parent_end]
    return list(zip(firsts, ends, strict=True))


def _one_item_at(lines: list[str], old_first: str) -> bool:
    """The new block starts like the old one (same indentation, a ``-`` item), and holds no
    line that would end the document or start another item at that indentation."""
    if not lines:
        return False
    indent = len(old_first) - len(old_first.lstrip(" "))
    first = lines[0]
    if first[:indent + 1] != old_first[:indent + 1] or old_first[indent:indent + 1] != "-":
        return False
    for line in lines[1:]:
        stripped = line.lstrip(" ")
        if not stripped.strip() or stripped.startswith("#"):
            continue
        if line.startswith(("---", "...", "%")):
            return False
        if len(line) - len(stripped) <= indent:
            return False  # another item, or a key outside the device
    return True


def _merged_lines(old: LineMap, block: LineMap, prefix: KeyPath, old_item: object,
                  end: int, delta: int) -> LineMap:
    """The line map of the edited file: the block's lines for the item at ``prefix`` (whose
    old data is ``old_item``), the old ones elsewhere (moved by ``delta`` past the block's
    old end)."""
    merged = LineMap()
    len(old)  # its lines read now, if they were left for later
    # copied as a plain dict's pairs: LineMap's own lookups, once per path, took half the
    # time of reading one tag of a 10,000-tag file again
    dict.update(merged, dict.items(old))
    for path in _paths(old_item, prefix):
        merged.pop(path, None)
    if delta:
        for path, line in merged.items():  # values only: the dict keeps its size
            if line >= end:
                merged[path] = line + delta
    for path, line in block.items():
        if path:
            merged[(*prefix, *path[1:])] = line
    return merged


def _at(data: object, path: KeyPath) -> object:
    """What ``path`` leads to in ``data`` (None when it leads nowhere)."""
    for key in path:
        if isinstance(data, dict) and isinstance(key, str):
            data = data.get(key)
        elif isinstance(data, list) and isinstance(key, int) and 0 <= key < len(data):
            data = data[key]
        else:
            return None
    return data


def _paths(value: object, prefix: KeyPath) -> list[KeyPath]:
    """``prefix`` and the key path of everything inside ``value`` (dicts and lists)."""
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _paths(item, (*prefix, index))
    return out
