"""serial_line config keys (errors with file, line and key path) and frame parsing."""

from __future__ import annotations

import math
import re
import struct
import textwrap
from pathlib import Path

import numpy as np
import pytest

from drivers.serial_line.config import SerialLineDeviceConfig, unescape_bytes
from drivers.serial_line.framing import StartEndFramer, TerminatorFramer, make_framer
from drivers.serial_line.parsing import FrameParser
from gateway.config.loader import load_config_text
from gateway.errors import ConfigError, InstrumentFrameRejected
from gateway.types import Quality

HEAD = """\
gateway: {id: gw-1, site: plant, line: line-1}
devices:
  - name: scale
    protocol: serial_line
    port: /dev/ttyUSB0
"""

SCALE = """\
framing: {terminator: '\\r\\n'}
parser:
  regex: '(?P<stable>ST|US),(?P<mode>GS|NT),(?P<weight>[+-]\\d+\\.\\d+) *(?P<unit>\\w+)'
tags:
  - {name: weight, type: float64, field: weight, unit: kg}
  - {name: stable, type: bool, field: stable, map: {ST: true, US: false}}
  - {name: net, type: bool, field: mode, map: {NT: true, GS: false}}
  - {name: unit, type: string, field: unit}
"""


def load(body: str) -> SerialLineDeviceConfig:
    cfg = load_config_text(HEAD + textwrap.indent(textwrap.dedent(body), "    "), "cfg.yaml")
    device = cfg.devices[0]
    assert isinstance(device, SerialLineDeviceConfig)
    return device


def problems(body: str) -> list[tuple[int, str, str]]:
    with pytest.raises(ConfigError) as info:
        load_config_text(HEAD + textwrap.indent(textwrap.dedent(body), "    "), "cfg.yaml")
    return [(p.line, p.path_text, p.message) for p in info.value.problems]


def test_scale_config_defaults_and_escapes() -> None:
    device = load(SCALE)
    assert (device.baudrate, device.bytesize, device.parity, device.stopbits) == (9600, 8, "N", 1)
    assert device.mode == "stream" and device.stale_after == 5.0
    assert device.framing.terminator_bytes == b"\r\n"
    assert isinstance(make_framer(device.framing), TerminatorFramer)
    assert unescape_bytes(r"\x02SI\r\n") == b"\x02SI\r\n"
    assert unescape_bytes("\r\n") == b"\r\n"  # already real bytes (double-quoted YAML)


def test_regex_parsing_with_maps_and_types() -> None:
    parser = FrameParser(load(SCALE))
    frame = parser.parse(b"ST,NT,-0012.345 kg")
    assert frame.values.tolist() == [-12.345, 1.0, 1.0, "kg"]
    assert frame.quality.tolist() == [Quality.GOOD] * 4
    with pytest.raises(InstrumentFrameRejected) as info:
        parser.parse(b"XX,GS,+0012.345 kg")
    assert info.value.reason == "no_match"
    with pytest.raises(InstrumentFrameRejected) as info:
        parser.parse(b"ST,GS,+0012.3\xe9\xff kg")
    assert info.value.reason == "decode"


def test_a_field_that_does_not_convert_is_bad_alone() -> None:
    device = load("""\
        framing: {terminator: '\\n'}
        parser: {regex: '(?P<n>\\S+) (?P<flag>\\S+) (?P<code>\\S+)'}
        tags:
          - {name: count, type: uint16, field: n}
          - {name: flag, type: bool, field: flag}
          - {name: code, type: string, field: code}
    """)
    parser = FrameParser(device)
    good = parser.parse(b"42 on A-17")
    assert good.values.tolist() == [42.0, 1.0, "A-17"] and good.bad_fields == 0
    bad = parser.parse(b"70000 maybe A-18")  # out of uint16 range; not a bool word
    assert bad.quality.tolist() == [Quality.BAD, Quality.BAD, Quality.GOOD]
    assert math.isnan(bad.values[0]) and bad.values[2] == "A-18"


def test_struct_parsing_for_a_binary_analyzer() -> None:
    device = load("""\
        framing: {start: '\\x02', end: '\\x03', max_frame: 32}
        parser: {struct: '<HfB'}
        tags:
          - {name: sample_id, type: uint16, field: 0}
          - {name: ph, type: float32, field: 1}
          - {name: ok, type: bool, field: 2}
    """)
    assert isinstance(make_framer(device.framing), StartEndFramer)
    parser = FrameParser(device)
    frame = parser.parse(struct.pack("<HfB", 513, 7.25, 1))
    assert frame.values.dtype == np.float64
    assert frame.values.tolist() == [513.0, 7.25, 1.0]
    with pytest.raises(InstrumentFrameRejected) as info:
        parser.parse(b"\x01\x02\x03")
    assert info.value.reason == "size"


def test_a_nan_float_is_bad_for_a_bool_tag_too() -> None:
    device = load("""\
        framing: {length: 8}
        parser: {struct: '<ff'}
        tags:
          - {name: level, type: float32, field: 0}
          - {name: flag, type: bool, field: 1}
    """)
    frame = FrameParser(device).parse(struct.pack("<ff", math.nan, math.nan))
    assert frame.quality.tolist() == [Quality.BAD, Quality.BAD]
    assert frame.bad_fields == 2


def test_a_map_value_must_fit_an_integer_tag() -> None:
    found = problems("""\
        framing: {terminator: '\\n'}
        parser: {regex: '(?P<code>\\w+)'}
        tags:
          - {name: level, type: int16, field: code, map: {HI: 2, LO: -1}}
          - {name: state, type: uint16, field: code, map: {HI: 70000, LO: 0.5}}
    """)
    assert len(found) == 1 and "not a uint16" in found[0][2], found


def test_errors_name_file_line_and_key() -> None:
    found = problems("""\
        baudrate: 9601.5
        parity: X
        framing: {terminator: '\\r\\n', length: 8}
        parser:
          regex: '(?P<w>[0-9.]+'
        tags:
          - {name: weight, type: float64, field: w}
    """)
    by_path = {path: (line, msg) for line, path, msg in found}
    assert by_path["devices[0].baudrate"][0] == 6
    assert by_path["devices[0].parity"][0] == 7
    assert by_path["devices[0].framing"][0] == 8
    assert "takes no length" in by_path["devices[0].framing"][1]
    assert by_path["devices[0].parser.regex"][0] == 10
    assert "invalid regular expression" in by_path["devices[0].parser.regex"][1]


def test_unknown_fields_are_reported_at_the_tag() -> None:
    found = problems("""\
        framing: {terminator: '\\n'}
        parser: {regex: '(?P<weight>\\S+) (?P<unit>\\S+)'}
        tags:
          - {name: weight, type: float64, field: weigth}
          - {name: unit, type: string, field: unit, map: {kg: 1}}
    """)
    assert [(line, path) for line, path, _ in found] == [
        (9, "devices[0].tags[0].field"), (10, "devices[0].tags[1]")]
    assert "not a group of the regex (it has: unit, weight)" in found[0][2]
    assert "maps to text" in found[1][2]

    found = problems("""\
        framing: {length: 6}
        parser: {struct: '<Hf'}
        tags:
          - {name: a, type: float32, field: 2}
    """)
    assert [(line, path) for line, path, _ in found] == [(9, "devices[0].tags[0].field")]
    assert "has 2 fields" in found[0][2]


def test_mode_and_framing_consistency() -> None:
    found = problems("""\
        mode: poll
        framing: {length: 9, start: '\\x02'}
        parser: {struct: '<Hf'}
        stale_after: 500ms
        response_timeout: 1s
        tags:
          - {name: a, type: float32, field: 1}
    """)
    messages = " | ".join(msg for *_, msg in found)
    assert all(line == 3 and path == "devices[0]" for line, path, _ in found)
    assert "poll mode needs poll_command" in messages
    found = problems("""\
        framing: {length: 9, start: '\\x02'}
        parser: {struct: '<Hf'}
        tags:
          - {name: a, type: float32, field: 1}
    """)
    assert "takes 6 bytes but a frame carries 8" in found[0][2]
    found = problems("""\
        framing: {start: '\\x02'}
        parser: {regex: '(?P<a>.*)'}
        tags:
          - {name: a, type: string, field: a}
    """)
    assert found[0][:2] == (6, "devices[0].framing")
    assert "give terminator" in found[0][2]


def test_readme_examples_are_valid_devices() -> None:
    readme = (Path(__file__).resolve().parents[3] / "drivers/serial_line/README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    assert len(blocks) == 3
    devices = "".join(textwrap.indent(b, "  ") for b in blocks)
    cfg = load_config_text("gateway: {id: gw-1, site: plant, line: line-1}\ndevices:\n"
                           + devices, "README.md")
    assert [d.protocol for d in cfg.devices] == ["serial_line"] * 3
    analyzer = cfg.devices[2]
    assert isinstance(analyzer, SerialLineDeviceConfig)
    record = b"\xaa\x55" + struct.pack("<HfHBx", 7, 6.5, 1234, 0)
    (frame,) = make_framer(analyzer.framing).feed(b"\x00" + record)
    assert FrameParser(analyzer).parse(frame).values.tolist() == [7.0, 6.5, 1234.0, 1.0]
