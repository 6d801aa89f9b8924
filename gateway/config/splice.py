"""Edit a config's YAML text in place: a device or a tag replaced, added or removed, the
rest of the text left as the engineer wrote it (comments, order, quoting, blank lines,
anchors).

Why a splice of lines and not a round-trip YAML library (ruamel.yaml): the loader already
knows the line of every item (its line map, :mod:`gateway.config.yaml_reader`), so an edit
replaces only the lines of the item it changes and every other byte of the file stays as
it was; the result is then read again in part (:mod:`gateway.config.edit`), which keeps an
edit of one tag in a 10,000-tag file well under a second, where a round-trip load and
dump of the whole file takes seconds, and one dependency less. The item written is
rendered by PyYAML at the indentation of its neighbours, in block style, or on one line
in flow style when its neighbour is written so. A replaced item is replaced whole
(comments inside it go with it; those around it stay). A list written in flow style
(``tags: [{...}]``) or through an alias is refused with :class:`ConfigEditRefused`
(``shape``): edit the file by hand there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from gateway.config.edit import ODD_BREAKS as _ODD_BREAKS
from gateway.config.edit import item_spans
from gateway.config.yaml_reader import KeyPath, LineMap
from gateway.errors import ConfigEditRefused

__all__ = ["ConfigText"]


@dataclass(frozen=True, slots=True)
class ConfigText:
    """A config's text with what its loader read: the plain data and the line map."""

    text: str
    data: Any
    lines: LineMap
    #: the config version this text is, when it is one
    version: int | None = None

    # --- finding ----------------------------------------------------------------------------
    def devices(self) -> list[dict[str, Any]]:
        devices = self.data.get("devices") if isinstance(self.data, dict) else None
        return [d for d in devices if isinstance(d, dict)] if isinstance(devices, list) else []

    def device_index(self, name: str) -> int:
        for index, device in enumerate(self.devices()):
            if device.get("name") == name:
                return index
        raise ConfigEditRefused("not_found", f"no device named {name!r}")

    def device(self, name: str) -> dict[str, Any]:
        return self.devices()[self.device_index(name)]

    def tags(self, device: str) -> list[dict[str, Any]]:
        tags = self.device(device).get("tags")
        return [t for t in tags if isinstance(t, dict)] if isinstance(tags, list) else []

    def tag_index(self, device: str, tag: str) -> int:
        for index, item in enumerate(self.tags(device)):
            if item.get("name") == tag:
                return index
        raise ConfigEditRefused("not_found", f"device {device!r} has no tag named {tag!r}")

    # --- editing (each answers the new text) -------------------------------------------------
    def replace_device(self, name: str, device: dict[str, Any]) -> str:
        """``device`` in place of the device ``name``; when its tags are those it has, their
        lines stay as written (comments too) and only the device's own keys are written."""
        index = self.device_index(name)
        if device.get("name") != name:
            self._free_device_name(device.get("name"))
        if "tags" in device and device["tags"] == self.devices()[index].get("tags"):
            kept = self._with_tags_kept(index, device)
            if kept is not None:
                return kept
        return self._replace(("devices",), index, device)

    def _with_tags_kept(self, index: int, device: dict[str, Any]) -> str | None:
        """The device written anew around its ``tags:`` block as it stands in the text;
        None when that block cannot be kept (not a block list, or its key indented
        otherwise than the keys written)."""
        lines = self._lines()
        key = self.lines.get(("devices", index, "tags"))
        try:
            spans = self._spans(("devices", index, "tags"), len(lines))
        except ConfigEditRefused:
            return None
        first, end = self._spans(("devices",), len(lines))[index]
        indent, flow = _style(lines[first - 1])
        if key is None or flow or not first < key < spans[0][0] + 1:
            return None
        block = lines[key - 1:_trimmed(lines, spans[-1][1], spans[-1][0]) - 1]
        if not block[0].startswith(" " * (indent + 2) + "tags:"):
            return None  # the device's keys are indented otherwise than PyYAML writes them
        marker = "chenxing-tags-kept-here"
        rendered = _render({**device, "tags": marker}, indent, False)
        line = " " * (indent + 2) + f"tags: {marker}\n"
        if line not in rendered:
            return None
        at = rendered.index(line)
        new = rendered[:at] + block + rendered[at + 1:]
        return "".join(lines[:first - 1] + new + lines[_trimmed(lines, end, first) - 1:])

    def add_device(self, device: dict[str, Any]) -> str:
        self._free_device_name(device.get("name"))
        return self._insert(("devices",), [device])

    def remove_device(self, name: str) -> str:
        return self._remove(("devices",), self.device_index(name))

    def replace_tag(self, device: str, tag: str, value: dict[str, Any]) -> str:
        index = self.tag_index(device, tag)
        if value.get("name") != tag:
            self._free_tag_names(device, [value])
        return self._replace(("devices", self.device_index(device), "tags"), index, value)

    def add_tags(self, device: str, tags: list[dict[str, Any]]) -> str:
        self._free_tag_names(device, tags)
        return self._insert(("devices", self.device_index(device), "tags"), tags)

    def remove_tag(self, device: str, tag: str) -> str:
        index = self.tag_index(device, tag)
        return self._remove(("devices", self.device_index(device), "tags"), index)

    def merge_tags(self, device: str, tags: list[dict[str, Any]],
                   replace: bool = False) -> str:
        """``tags`` into ``device`` (an imported tag list): a tag of a name it has replaces
        that one in place (its lines stay as written when it is equal), a new name goes
        after its last tag; with ``replace`` its tags the list does not name are removed."""
        if not tags:
            raise ConfigEditRefused("shape", "a device needs a tag: the list is empty")
        path: KeyPath = ("devices", self.device_index(device), "tags")
        lines = self._lines()
        spans = self._spans(path, len(lines))
        indent, flow = _style(lines[spans[0][0] - 1])
        existing = self.tags(device)
        index = {t.get("name"): i for i, t in enumerate(existing)}
        actions: dict[int, list[str]] = {}  # index -> its new lines ([]: removed)
        added: list[str] = []
        for tag in tags:
            at = index.get(tag.get("name"))
            if at is None:
                added += _render(tag, indent, flow)
            elif existing[at] != tag:
                actions[at] = _render(tag, indent, flow)
        if replace:
            named = {t.get("name") for t in tags}
            actions.update({i: [] for i, t in enumerate(existing) if t.get("name") not in named})
        ends = [_trimmed(lines, end, first) for first, end in spans]  # before any change
        if added:  # below every item: the lines above stay put
            end = ends[-1]
            if not lines[end - 2].endswith("\n"):
                lines[end - 2] += "\n"
            lines[end - 1:end - 1] = added
        for i in sorted(actions, reverse=True):  # bottom up, likewise
            lines[spans[i][0] - 1:ends[i] - 1] = actions[i]
        return "".join(lines)

    # --- the lines --------------------------------------------------------------------------
    def _free_device_name(self, name: object) -> None:
        if any(d.get("name") == name for d in self.devices()):
            raise ConfigEditRefused("exists", f"a device named {name!r} exists already")

    def _free_tag_names(self, device: str, tags: list[dict[str, Any]]) -> None:
        taken = {t.get("name") for t in self.tags(device)}
        clash = [str(t.get("name")) for t in tags if t.get("name") in taken]
        if clash:
            raise ConfigEditRefused("exists", f"device {device!r} has tag(s) named "
                                              f"{', '.join(clash[:20])} already")

    def _lines(self) -> list[str]:
        """The text's lines, numbered as the YAML reader numbers them."""
        if _ODD_BREAKS.search(self.text):
            raise ConfigEditRefused("shape", "the file holds characters that break lines for "
                                    "Python but not for YAML (\\v, \\f, \\x1c-\\x1e): "
                                    "edit the file itself")
        return self.text.splitlines(keepends=True)

    def _spans(self, path: KeyPath, count: int) -> list[tuple[int, int]]:
        """The item spans of the list at ``path`` in a text of ``count`` lines."""
        end = count + 1
        if len(path) > 1:  # a device's tags end where the device ends
            end = self._spans(path[:1], count)[int(path[1])][1]
        spans = item_spans(self.data, self.lines, path, end)
        if spans is None:
            where = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path)
            raise ConfigEditRefused("shape", f"{where.replace('.[', '[')} is not a block list "
                                    "of its own lines (flow style, empty, or an alias): "
                                    "edit the file itself there")
        return spans

    def _replace(self, path: KeyPath, index: int, value: dict[str, Any]) -> str:
        lines = self._lines()
        first, end = self._spans(path, len(lines))[index]
        end = _trimmed(lines, end, first)
        indent, flow = _style(lines[first - 1])
        return "".join(lines[:first - 1] + _render(value, indent, flow) + lines[end - 1:])

    def _insert(self, path: KeyPath, values: list[dict[str, Any]]) -> str:
        lines = self._lines()
        first, end = self._spans(path, len(lines))[-1]
        end = _trimmed(lines, end, first)
        if lines and not lines[end - 2].endswith("\n"):
            lines[end - 2] += "\n"
        indent, flow = _style(lines[first - 1])
        new = [line for value in values for line in _render(value, indent, flow)]
        return "".join(lines[:end - 1] + new + lines[end - 1:])

    def _remove(self, path: KeyPath, index: int) -> str:
        lines = self._lines()
        spans = self._spans(path, len(lines))
        if len(spans) == 1:
            raise ConfigEditRefused("shape", "the last item of a list cannot be removed (a "
                                             "device needs a tag; remove the device instead)"
                                    if len(path) > 1 else "the last device cannot be removed")
        first, end = spans[index]
        end = _trimmed(lines, end, first)
        return "".join(lines[:first - 1] + lines[end - 1:])


def _trimmed(lines: list[str], end: int, first: int) -> int:
    """``end`` moved up past the blank and comment lines before it (they stay)."""
    while end - 1 > first and (not lines[end - 2].strip()
                               or lines[end - 2].lstrip().startswith("#")):
        end -= 1
    return end


def _style(first_line: str) -> tuple[int, bool]:
    """(column of the item's ``-``, written in flow style on one line) of an item."""
    stripped = first_line.lstrip(" ")
    return len(first_line) - len(stripped), stripped[1:].lstrip().startswith("{")


def _render(value: dict[str, Any], indent: int, flow: bool) -> list[str]:
    """``value`` as one list item at column ``indent``."""
    pad = " " * indent
    if flow:
        body = yaml.safe_dump(value, default_flow_style=True, sort_keys=False,
                              allow_unicode=True, width=1 << 30).strip()
        return [f"{pad}- {body}\n"]
    text = yaml.safe_dump([value], default_flow_style=False, sort_keys=False,
                          allow_unicode=True, width=1 << 30)
    return [pad + line if line.strip() else line for line in text.splitlines(keepends=True)]
