"""MC device configs through the real loader: what loads, and every config error case
(config_errors/*: the device block, the key the error names and its words)."""

from __future__ import annotations

import textwrap

import pytest
from mc_golden import ERROR_CASES, load_error_case

from drivers.mc.config import McDeviceConfig
from drivers.mc.devices import parse_address
from gateway.config.loader import load_config_text
from gateway.errors import ConfigError

HEAD = "gateway: {id: gw-1, site: plant, line: line-1}\ndevices:\n"


def gateway_yaml(device_block: str) -> str:
    return HEAD + textwrap.indent(device_block, "    ").replace("    ", "  - ", 1)


def test_a_device_with_every_key_loads() -> None:
    cfg = load_config_text(gateway_yaml(textwrap.dedent("""\
        name: press
        protocol: mc
        host: 192.168.3.39
        port: 5002
        transport: udp
        frame: 4e
        plc_series: iq-f
        network: 1
        station: 2
        module_io: 0x03E0
        multidrop: 0
        timeout: 500ms
        monitoring_timer: 2s
        retries: 1
        random_reads: false
        max_batch_words: 480
        max_random_points: 64
        max_gap: 4
        tags:
          - {name: melt, type: float32, address: D100, unit: degC}
          - {name: start, type: bool, address: X17}
          - {name: recipe, type: string, address: R0, length: 8, byte_order: high_first}
          - {name: total, type: int64, address: D300, word_order: high_first}
          - {name: lamp, type: bool, address: D10.F}
        """)), "cfg.yaml")
    (device,) = cfg.devices
    assert isinstance(device, McDeviceConfig)
    assert device.route.pack() == bytes((1, 2, 0xE0, 0x03, 0))
    assert device.timer_units == 8 and device.random_points == 64
    assert device.address == "192.168.3.39:5002/udp"
    assert device.tags[1].location("iq-f").number == 15


def test_defaults() -> None:
    device = McDeviceConfig.model_validate({
        "name": "p", "protocol": "mc", "host": "h", "port": 1, "plc_series": "iq-r",
        "tags": [{"name": "t", "type": "int16", "address": "D0"}]})
    assert (device.transport, device.frame, device.network, device.station, device.module_io,
            device.multidrop) == ("tcp", "3e", 0, 0xFF, 0x03FF, 0)
    assert device.random_points == 96  # iQ-R's random read limit
    assert device.timer_units == 4  # the 1 s timeout in 250 ms units


@pytest.mark.parametrize("name", ERROR_CASES)
def test_config_error_case(name: str) -> None:
    block, path, message = load_error_case(name)
    with pytest.raises(ConfigError) as info:
        load_config_text(gateway_yaml(block), "cfg.yaml")
    found = [(p.path_text, p.message) for p in info.value.problems]
    assert any(p == path and message in m for p, m in found), found
    assert all(p.line > 0 for p in info.value.problems)


@pytest.mark.parametrize(("text", "series", "number"), [
    ("X17", "iq-f", 0o17), ("X17", "q", 0x17), ("Y20", "iq-f", 16), ("Y20", "iq-r", 32),
    ("W1A", "q", 26), ("B1F", "iq-f", 31), ("ZR100", "q", 100), ("d100", "q", 100),
    ("SM400", "q", 400), ("SD203", "q", 203), ("TN5", "q", 5),
])
def test_numbers_in_each_devices_base(text: str, series: str, number: int) -> None:
    assert parse_address(text, series).number == number  # type: ignore[arg-type]


def test_address_text_round_trips_in_the_series_base() -> None:
    for text, series in (("X17", "iq-f"), ("X1F", "q"), ("D100.A", "q"), ("W1A0", "iq-r")):
        assert parse_address(text, series).text(series) == text  # type: ignore[arg-type]
