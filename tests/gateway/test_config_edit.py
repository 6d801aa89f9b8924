"""Reading an edited config again in part gives what reading it whole gives (data, lines,
config), or declines (None) so that the whole text is read."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config.edit import read_edit
from gateway.config.loader import ConfigDocument, load_config_document
from gateway.errors import ConfigError

HEAD = """\
# a commented config, as a person keeps it
gateway:
  id: gw
  site: s
  line: l
devices:
"""
TAIL = """\
northbound:
  format: json   # the tests' contract
http:
  port: 0
"""


def _device(name: str, port: int, tags: int, indent: str = "") -> str:
    lines = [f"{indent}- name: {name}", f"{indent}  protocol: modbus_tcp",
             f"{indent}  host: 127.0.0.1", f"{indent}  port: {port}", f"{indent}  tags:"]
    for t in range(tags):
        lines += [f"{indent}  - name: t{t}", f"{indent}    address: {t}",
                  f"{indent}    type: uint16", f"{indent}    unit: V"]
    lines.append(f"{indent}# end of {name}")
    return "\n".join(lines) + "\n"


def _text(indent: str = "", tail: bool = True) -> str:
    body = HEAD + "".join(_device(f"d{i}", 5020 + i, 4, indent) for i in range(3))
    return body + (TAIL if tail else "")


def _full(text: str, tmp: Path) -> ConfigDocument:
    return load_config_document(text, "gw.yaml", tmp)


def _same(part: ConfigDocument, whole: ConfigDocument) -> None:
    assert part.config == whole.config
    assert part.data == whole.data
    assert dict(part.lines) == dict(whole.lines)


def _sub(pattern: str, repl: str) -> Callable[[str], str]:
    """A regex edit of the first match (``( *)`` captures an indentation)."""
    return lambda t: re.sub(pattern, repl, t, count=1)


EDITS = {
    "a value": _sub(r"port: 5021", "port: 6021"),
    "a tag's unit": _sub(r"(name: t2\n( *)address: 2\n *type: uint16\n *)unit: V",
                         r"\1unit: kV"),
    "a tag added": _sub(r"( *)# end of d1\n", r"\1  - name: extra\n\1    address: 9\n"
                                               r"\1    type: int16\n\1# end of d1\n"),
    "a tag removed": _sub(r"( *)- name: t3\n *address: 3\n *type: uint16\n *unit: V\n"
                          r"( *)# end of d2", r"\2# end of d2"),
    "a line comment": _sub(r"# end of d0", "# the first meter"),
    "a key added": _sub(r"( *)port: 5022", r"\1poll_interval: 2s\n\1port: 5022"),
    "a key added to a tag": _sub(r"(name: t1\n( *)address: 1\n)",
                                 r"\1\2scale: 2\n\2deadband: 0.5\n"),
    "a tag's key removed": _sub(r"(name: t2\n *address: 2\n *type: uint16\n) *unit: V\n",
                                r"\1"),
}


@pytest.mark.parametrize("edit", list(EDITS))
@pytest.mark.parametrize("indent", ["", "  "])
@pytest.mark.parametrize("tail", [True, False])
@pytest.mark.parametrize("kept", [True, False], ids=["data kept", "data read again"])
def test_an_edit_inside_one_device_is_read_in_part_as_whole(tmp_path: Path, edit: str,
                                                             indent: str, tail: bool,
                                                             kept: bool) -> None:
    before = _text(indent, tail)
    after = EDITS[edit](before)
    assert after != before
    previous = _full(before, tmp_path)
    if not kept:  # as a gateway starts: the data read again from the text when wanted
        previous = previous.without_data()
        assert previous.data is None
    part = read_edit(previous, after)
    assert previous.data == _full(before, tmp_path).data
    assert part is not None, edit
    _same(part, _full(after, tmp_path))


DECLINED = {
    "outside the devices": lambda t: t.replace("site: s", "site: t"),
    "two devices": lambda t: t.replace("port: 5020", "port: 7020").replace("port: 5022",
                                                                             "port: 7022"),
    "a device added": lambda t: t.replace("# end of d1\n", "# end of d1\n- name: d9\n"
                                          "  protocol: modbus_tcp\n  host: 127.0.0.1\n"
                                          "  tags: []\n"),
    "an invalid value": lambda t: t.replace("port: 5021", "port: -3"),
    "a duplicate tag": lambda t: t.replace("name: t1\n    address: 1", "name: t0\n    address: 1",
                                           1),
    "a device renamed onto another": lambda t: t.replace("- name: d1", "- name: d0"),
    "a key at the devices' level": lambda t: t.replace("# end of d1\n", "models: {}\n"),
    "an alias to outside": lambda t: t.replace("unit: V\n# end of d1", "unit: *nowhere\n"
                                                                         "# end of d1"),
}


@pytest.mark.parametrize("edit", list(DECLINED))
def test_other_edits_are_read_whole(tmp_path: Path, edit: str) -> None:
    before = _text()
    previous = _full(before, tmp_path)
    after = DECLINED[edit](before)
    assert after != before
    assert read_edit(previous, after) is None


def test_a_file_with_aliases_is_read_whole(tmp_path: Path) -> None:
    """An edit of an anchored value changes its aliases elsewhere too."""
    text = _text().replace("unit: V\n", "unit: &volt V\n", 1).replace(
        "unit: V\n# end of d2", "unit: *volt\n# end of d2")
    previous = _full(text, tmp_path)
    assert "unit: *volt" in text
    assert read_edit(previous, text.replace("port: 5021", "port: 5031")) is None


@pytest.mark.parametrize("seed", range(30))
def test_random_edits_of_one_device_agree_with_reading_whole(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    before = _text(rng.choice(["", "  "]), rng.random() < 0.5)
    lines = before.splitlines(keepends=True)
    device = rng.randrange(3)
    first = lines.index(next(x for x in lines if x.strip() == f"- name: d{device}"))
    last = lines.index(next(x for x in lines if x.strip() == f"# end of d{device}"))
    at = rng.randrange(first + 1, last + 1)
    if rng.random() < 0.5:  # change a value on a line
        line = lines[at]
        if "address:" in line:
            lines[at] = line.replace("address:", "address: 1") if rng.random() < 0.5 else line
        elif "unit:" in line:
            lines[at] = line.rstrip("\n") + "x\n"
        elif "port:" in line:
            lines[at] = line.replace("50", "60")
        else:
            lines[at] = line.rstrip("\n") + "  # note\n"
    else:  # insert a comment line
        indent = " " * rng.choice([2, 4])
        lines.insert(at, f"{indent}# inserted {seed}\n")
    after = "".join(lines)
    previous = _full(before, tmp_path)
    part = read_edit(previous, after)
    try:
        whole = _full(after, tmp_path)
    except ConfigError:
        assert part is None
        return
    if after != before:
        assert part is not None
        _same(part, whole)


def test_line_breaks_yaml_does_not_know_are_read_whole(tmp_path: Path) -> None:
    before = _text()
    previous = _full(before, tmp_path)
    assert read_edit(previous, before.replace("# end of d1", "# end\x0cof d1")) is None
