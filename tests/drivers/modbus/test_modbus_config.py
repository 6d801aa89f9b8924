"""Config of poll groups, unit ids, bits, strings, clamp and RTU, through the real loader."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
from pydantic import ValidationError

from drivers.modbus.config import ModbusRtuDeviceConfig, ModbusTcpDeviceConfig
from gateway.config.loader import load_config_text
from gateway.errors import ConfigError

CONFIG = textwrap.dedent("""\
    gateway: {id: gw-1, site: plant, line: line-1}
    devices:
      - name: meter
        protocol: modbus_tcp
        host: 127.0.0.1
        poll_groups:
          - {name: fast, interval: 100ms}
          - {name: slow, interval: 1m}
        tags:
          - {name: voltage, table: input, address: 0, type: float32, poll_group: fast}
          - {name: energy, table: input, address: 10, type: uint32, poll_group: slow}
          - {name: serial, table: holding, address: 200, type: string, length: 8}
          - {name: alarm, table: holding, address: 7, type: bool, bit: 3, unit_id: 2}
      - name: line-meter
        protocol: modbus_rtu
        port: /dev/ttyUSB0
        baudrate: 19200
        parity: E
        tags:
          - {name: power, table: input, address: 4, type: float32, clamp: [0, 500]}
""")


def problems(text: str) -> list[tuple[int, str, str]]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "cfg.yaml")
    return [(p.line, p.path_text, p.message) for p in info.value.problems]


def test_a_config_with_every_new_key_loads() -> None:
    cfg = load_config_text(CONFIG, "cfg.yaml")
    tcp, rtu = cfg.devices
    assert isinstance(tcp, ModbusTcpDeviceConfig) and isinstance(rtu, ModbusRtuDeviceConfig)
    assert [tcp.interval_of(g) for g in ("default", "fast", "slow")] == [1.0, 0.1, 60.0]
    assert [tcp.unit_of(t) for t in tcp.tags] == [1, 1, 1, 2]
    assert tcp.tags[2].register_count == 8
    assert rtu.line_settings == (19200, 8, "E", 1)
    assert rtu.retries == 1 and tcp.retries == 0
    assert rtu.tags[0].clamp == (0.0, 500.0)


def test_unknown_poll_group_is_reported_at_the_tags_line() -> None:
    text = CONFIG.replace("poll_group: slow}", "poll_group: slowww}")
    [(line, path, message)] = problems(text)
    assert line == 11
    assert path == "devices[0].tags[1].poll_group"
    assert message == ("unknown poll group 'slowww'; did you mean 'slow'? "
                       "(the device has: default, fast, slow)")


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        ({"type": "bool", "address": 0}, "needs bit: 0..15"),
        ({"type": "uint16", "address": 0, "bit": 2}, "bit is only for tags of type bool"),
        ({"type": "bool", "table": "coil", "address": 0, "bit": 2}, "not on coil tags"),
        ({"type": "bool", "address": 0, "bit": 16}, "less than or equal to 15"),
        ({"type": "string", "address": 0}, "needs length"),
        ({"type": "int16", "address": 0, "length": 2}, "length is only for tags of type string"),
        ({"type": "string", "address": 0, "length": 2, "byte_order": "CDAB"}, "ABCD"),
        ({"type": "string", "address": 65530, "length": 8}, "runs past register 65535"),
        ({"type": "int16", "address": 0, "clamp": [5, 1]}, "clamp minimum 5.0 is above"),
        ({"type": "bool", "address": 0, "bit": 1, "clamp": [0, 1]}, "clamp is for numbers"),
        (
            {"type": "bool", "address": 0, "bit": 1, "writable": True},
            "cannot be written safely",
        ),
    ],
)
def test_bad_tags_are_refused(tag: dict[str, Any], message: str) -> None:
    device = {"name": "d", "protocol": "modbus_tcp", "host": "h", "tags": [{"name": "t", **tag}]}
    with pytest.raises(ValidationError, match=message):
        ModbusTcpDeviceConfig.model_validate(device)


def test_poll_group_names_are_unique_and_default_is_reserved() -> None:
    for groups in ([{"name": "a", "interval": 1}, {"name": "a", "interval": 2}],
                   [{"name": "default", "interval": 1}]):  # fmt: skip
        device = {
            "name": "d",
            "protocol": "modbus_tcp",
            "host": "h",
            "poll_groups": groups,
            "tags": [{"name": "t", "type": "int16", "address": 0}],
        }
        with pytest.raises(ValidationError, match="defined twice"):
            ModbusTcpDeviceConfig.model_validate(device)


def test_rtu_line_settings_are_checked() -> None:
    base = {"name": "d", "protocol": "modbus_rtu", "port": "/dev/ttyS0",
            "tags": [{"name": "t", "type": "int16", "address": 0}]}  # fmt: skip
    for key, value in (("parity", "X"), ("stopbits", 3), ("bytesize", 6), ("baudrate", 0)):
        with pytest.raises(ValidationError, match=key):
            ModbusRtuDeviceConfig.model_validate({**base, key: value})
