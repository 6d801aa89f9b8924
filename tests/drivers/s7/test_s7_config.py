"""S7 device blocks through the real config loader: the keys, the defaults, and the
refused blocks of cases/config_errors/cases.yaml with their file:line: key and words."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from drivers.s7.config import S7DeviceConfig, parse_tsap
from gateway.config.loader import load_config_text
from gateway.errors import ConfigError

ERRORS = yaml.safe_load(
    (Path(__file__).parent / "cases" / "config_errors" / "cases.yaml").read_text())
BASE: dict[str, Any] = {"name": "press", "protocol": "s7", "host": "10.20.3.41",
                        "tags": [{"name": "melt", "address": "DB1.DBD0:REAL"}]}


def _config(device: dict[str, Any]) -> str:
    return yaml.safe_dump({"gateway": {"id": "gw-1", "site": "plant", "line": "line-1"},
                           "devices": [device]}, sort_keys=False, allow_unicode=True)


def test_a_device_with_every_key_loads() -> None:
    text = textwrap.dedent("""\
        gateway: {id: gw-1, site: plant, line: line-1}
        devices:
          - name: press
            protocol: s7
            host: 10.20.3.41
            rack: 0
            slot: 2
            connection_type: basic
            pdu_size: 480
            timeout: 1500ms
            max_items: 18
            max_gap: 4
            poll_groups: [{name: fast, interval: 100ms}]
            tags:
              - {name: melt, address: "DB1.DBD0:REAL", unit: degC, poll_group: fast}
              - {name: parts, address: "DB1.DBD16:DINT"}
              - {name: state, address: "DB1.DB24:STRING[16]", encoding: gbk}
              - {name: setpoint, address: "DB2.DBD0:REAL", writable: true, range: [100, 350]}
    """)
    (device,) = load_config_text(text, "cfg.yaml").devices
    assert isinstance(device, S7DeviceConfig)
    assert device.tsaps == (0x0100, 0x0302)  # S7 basic, rack 0, slot 2
    assert [t.type.value for t in device.tags] == ["float32", "int32", "string", "float32"]
    assert device.describe_connection() == (
        "10.20.3.41:102 rack 0 slot 2 as BASIC (TSAP 01.00 -> 03.02)")


def test_the_default_connection_is_op_not_pg() -> None:
    """An S7-300 or S7-200 SMART often has one PG connection: the gateway must not take it
    unless told to."""
    device = S7DeviceConfig.model_validate(BASE)
    assert device.connection_type == "op"
    assert device.tsaps == (0x0100, 0x0201)


def test_explicit_tsaps_replace_rack_slot_and_type() -> None:
    device = S7DeviceConfig.model_validate({**BASE, "local_tsap": "10.00",
                                            "remote_tsap": "0x0301", "slot": 2})
    assert device.tsaps == (0x1000, 0x0301)
    assert [parse_tsap(v) for v in ("03.01", "0x0301", "0301", 769)] == [0x0301] * 4


@pytest.mark.parametrize("case", ERRORS, ids=[c["name"] for c in ERRORS])
def test_refused_device_blocks(case: dict[str, Any]) -> None:
    device = {**BASE, **case["device"]}
    with pytest.raises(ConfigError) as info:
        load_config_text(_config(device), "cfg.yaml")
    problems = info.value.problems
    assert any(case["error"] in p.message for p in problems), [p.message for p in problems]
    paths = [p.path_text for p in problems]
    assert any(path.endswith(case["key"]) for path in paths), paths
    assert all(p.line > 0 for p in problems)
