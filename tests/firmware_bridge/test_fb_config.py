"""The mcu_node device keys: defaults and errors with file, line and key path."""

from __future__ import annotations

import textwrap

import pytest

from firmware_bridge.config import McuNodeDeviceConfig
from gateway.config.loader import load_config_text
from gateway.errors import ConfigError
from gateway.types import DataType

HEAD = """\
gateway: {id: gw-1, site: plant, line: line-1}
devices:
  - name: node
    protocol: mcu_node
    port: /dev/ttyACM0
    node_id: 3
"""


def load(body: str) -> McuNodeDeviceConfig:
    cfg = load_config_text(HEAD + textwrap.indent(textwrap.dedent(body), "    "), "cfg.yaml")
    device = cfg.devices[0]
    assert isinstance(device, McuNodeDeviceConfig)
    return device


def problems(body: str) -> list[tuple[int, str, str]]:
    with pytest.raises(ConfigError) as info:
        load_config_text(HEAD + textwrap.indent(textwrap.dedent(body), "    "), "cfg.yaml")
    return [(p.line, p.path_text, p.message) for p in info.value.problems]


def test_defaults() -> None:
    device = load("""\
        tags:
          - {name: temp, sensor: temperature, unit: degC}
          - {name: hum, channel: 2}
    """)
    assert device.baudrate == 115200 and device.stale_after == 5.0
    assert device.hello_timeout == 2.0 and device.sample_interval is None
    assert device.tags[0].type is DataType.FLOAT32 and device.tags[1].channel == 2


def test_tag_needs_exactly_one_of_sensor_or_channel() -> None:
    found = problems("""\
        tags:
          - {name: temp, unit: degC}
          - {name: hum, channel: 2, sensor: humidity}
    """)
    assert [(line, path) for line, path, _ in found] == [
        (8, "devices[0].tags[0]"), (9, "devices[0].tags[1]")]
    assert all("exactly one of 'sensor' or 'channel'" in msg for *_, msg in found)


def test_sensor_mapped_twice_and_heartbeat_not_below_stale() -> None:
    found = problems("""\
        stale_after: 1s
        heartbeat_interval: 2s
        tags:
          - {name: a, sensor: temperature}
          - {name: b, sensor: temperature}
    """)
    messages = " ".join(msg for *_, msg in found)
    assert "mapped twice" in messages
    found = problems("""\
        stale_after: 1s
        heartbeat_interval: 2s
        tags:
          - {name: a, sensor: temperature}
    """)
    assert "heartbeat_interval must be shorter than stale_after" in found[0][2]


def test_node_id_range_and_writable_refused() -> None:
    found = problems("""\
        tags:
          - {name: a, channel: 300}
          - {name: b, channel: 1, writable: true, range: [0, 1]}
    """)
    by_path = {path: (line, msg) for line, path, msg in found}
    assert "devices[0].tags[0].channel" in by_path
    # the mcu_node registration declares no writes: refused at the tag's own key
    assert by_path["devices[0].tags[1].writable"] == (
        9, "mcu_node devices cannot be written: writable must be false")
