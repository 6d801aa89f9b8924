"""Tag entries as the discovery tools print them: valid names, unique by their context,
one flow mapping per line with the note as a comment."""

from __future__ import annotations

import yaml

from gateway.config.tag_yaml import TagEntry, render_tags, tag_name


def test_names_become_valid_tag_names() -> None:
    assert tag_name("Motor 1.Speed (rpm)") == "Motor_1_Speed_rpm"
    assert tag_name("_hidden") == "hidden" and tag_name("@@") == "tag"
    assert len(tag_name("x" * 300)) == 128


def test_a_shared_name_takes_the_context_that_tells_them_apart() -> None:
    entries = [TagEntry({"name": "Temperature", "node": "a"}, context=("Line", "Zone1")),
               TagEntry({"name": "Temperature", "node": "b"}, context=("Line", "Zone2")),
               TagEntry({"name": "Pressure", "node": "c"}, context=("Line", "Zone1")),
               TagEntry({"name": "Pressure", "node": "d"}),
               TagEntry({"name": "Pressure", "node": "e"})]
    text = render_tags(entries, "test")
    names = [item["name"] for item in yaml.safe_load(text)]
    assert names == ["Zone1_Temperature", "Zone2_Temperature", "Zone1_Pressure", "Pressure",
                     "Pressure_2"]


def test_each_entry_is_one_line_with_its_note() -> None:
    text = render_tags([TagEntry({"name": "a", "address": "DB1.DBD0:REAL"}, "read\n1.5")],
                       "from here")
    assert text.splitlines() == [
        "# from here",
        "# 1 tag: paste under a device's 'tags:' (indent to fit); rename as you like",
        "- {name: a, address: 'DB1.DBD0:REAL'}  # read 1.5"]
