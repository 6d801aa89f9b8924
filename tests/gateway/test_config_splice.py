"""Edits of a config's text keep every line they do not touch: comments, order, quoting,
flow-style items, blank lines; a tag list imported (merge or replace) likewise."""

from __future__ import annotations

import pytest
import yaml

from gateway.config.splice import ConfigText
from gateway.config.yaml_model import parse_yaml
from gateway.errors import ConfigEditRefused

TEXT = """\
# the plant's config: keep this comment
gateway:
  id: gw-1   # trailing comment
devices:
  # the meter of press 3
  - name: meter
    protocol: modbus_tcp
    host: 127.0.0.1
    tags:
      - name: voltage   # L1
        address: 0
        type: float32
      # current follows
      - name: current
        address: 2
        type: float32
    poll_interval: 1s
  - name: plc
    protocol: opcua
    endpoint: "opc.tcp://127.0.0.1:4840"
    tags:
      - {name: melt, node: "ns=2;s=Melt", type: float64}
      - {name: parts, node: "ns=2;s=Parts", type: uint32}

northbound:   # the brain
  format: json
"""


def config(text: str = TEXT) -> ConfigText:
    parsed = parse_yaml(text, "gateway.yaml")
    assert not parsed.problems
    return ConfigText(text, parsed.data, parsed.lines)


def changed_lines(old: str, new: str) -> tuple[list[str], list[str]]:
    a, b = old.splitlines(), new.splitlines()
    return [x for x in a if x not in b], [x for x in b if x not in a]


def test_replacing_a_tag_changes_its_lines_only() -> None:
    new = config().replace_tag("meter", "current", {"name": "current", "address": 4,
                                                    "type": "float32", "scale": 0.1})
    gone, added = changed_lines(TEXT, new)
    assert gone == ["        address: 2"]
    assert added == ["        address: 4", "        scale: 0.1"]
    assert "      # current follows\n" in new  # the comment above it stays
    assert yaml.safe_load(new)["devices"][0]["tags"][1]["scale"] == 0.1


def test_a_flow_style_neighbour_gets_a_flow_style_tag() -> None:
    new = config().add_tags("plc", [{"name": "state", "node": "ns=2;s=State",
                                      "type": "string"}])
    assert "      - {name: state, node: ns=2;s=State, type: string}\n" in new
    assert new.index("name: state") < new.index("northbound:")
    assert new.endswith(TEXT[TEXT.index("\nnorthbound:"):])  # the blank line stays
    assert [t["name"] for t in yaml.safe_load(new)["devices"][1]["tags"]] == \
        ["melt", "parts", "state"]


def test_a_device_is_added_after_the_last_and_removed_whole() -> None:
    new = config().add_device({"name": "scale", "protocol": "serial_line", "port": "/dev/x",
                               "tags": [{"name": "weight", "type": "float64"}]})
    data = yaml.safe_load(new)
    assert [d["name"] for d in data["devices"]] == ["meter", "plc", "scale"]
    assert new.startswith(TEXT[:TEXT.index("\nnorthbound")])
    removed = config().remove_device("meter")
    assert [d["name"] for d in yaml.safe_load(removed)["devices"]] == ["plc"]
    assert "# the plant's config" in removed and "  # the meter of press 3\n" in removed


def test_a_device_replaced_keeps_the_others_and_every_comment_outside_it() -> None:
    device = yaml.safe_load(TEXT)["devices"][1]
    device["endpoint"] = "opc.tcp://127.0.0.1:4841"
    new = config().replace_device("plc", device)
    assert new[:new.index("  - name: plc")] == TEXT[:TEXT.index("  - name: plc")]
    assert yaml.safe_load(new)["devices"][1] == device
    assert "northbound:   # the brain" in new


def test_a_device_whose_tags_stay_keeps_their_lines_and_comments() -> None:
    device = yaml.safe_load(TEXT)["devices"][0]
    device["host"] = "10.0.0.7"
    device["poll_interval"] = "500ms"
    new = config().replace_device("meter", device)
    assert yaml.safe_load(new)["devices"][0] == device
    assert "      - name: voltage   # L1\n" in new and "      # current follows\n" in new
    gone, added = changed_lines(TEXT, new)
    assert gone == ["    host: 127.0.0.1", "    poll_interval: 1s"]
    assert added == ["    host: 10.0.0.7", "    poll_interval: 500ms"]
    device["tags"][0]["address"] = 10  # a tag changed too: the device is written whole
    new = config().replace_device("meter", device)
    assert "# L1" not in new and yaml.safe_load(new)["devices"][0] == device


def test_a_tag_list_merged_replaces_by_name_and_adds_the_new() -> None:
    tags = [{"name": "current", "address": 6, "type": "float32"},
            {"name": "power", "address": 8, "type": "float32"}]
    new = config().merge_tags("meter", tags)
    got = yaml.safe_load(new)["devices"][0]["tags"]
    assert [(t["name"], t["address"]) for t in got] == [("voltage", 0), ("current", 6),
                                                        ("power", 8)]
    assert "      - name: voltage   # L1\n" in new
    replaced = config().merge_tags("meter", tags, replace=True)
    got = yaml.safe_load(replaced)["devices"][0]["tags"]
    assert [t["name"] for t in got] == ["current", "power"]
    assert yaml.safe_load(replaced)["devices"][0]["poll_interval"] == "1s"


def test_refusals_name_what_is_wrong() -> None:
    with pytest.raises(ConfigEditRefused, match="no device named 'press'") as caught:
        config().remove_device("press")
    assert caught.value.reason == "not_found"
    with pytest.raises(ConfigEditRefused, match="has no tag named 'freq'"):
        config().replace_tag("meter", "freq", {"name": "freq"})
    with pytest.raises(ConfigEditRefused, match="exists already") as caught:
        config().add_device({"name": "plc"})
    assert caught.value.reason == "exists"
    with pytest.raises(ConfigEditRefused, match="voltage already"):
        config().add_tags("meter", [{"name": "voltage"}])
    flow = TEXT.replace("    tags:\n      - {name: melt", "    tags: [{name: melt")
    flow = flow.replace('type: float64}\n      - {name: parts', 'type: float64}, {name: parts')
    flow = flow.replace('type: uint32}\n', 'type: uint32}]\n')
    with pytest.raises(ConfigEditRefused, match=r"devices\[1\]\.tags is not a block list"):
        config(flow).add_tags("plc", [{"name": "x"}])
