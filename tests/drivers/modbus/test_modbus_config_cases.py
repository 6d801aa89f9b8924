"""Golden config errors of the Modbus transports (config_cases/, see its README): each bad
config is refused with the file, line, key and words kept in its expected_error.txt."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config.loader import load_config_text
from gateway.errors import ConfigError

CASES = Path(__file__).parent / "config_cases"
NAMES = sorted(p.name for p in CASES.iterdir() if (p / "gateway.yaml").is_file())


@pytest.mark.parametrize("name", NAMES)
def test_config_case(name: str) -> None:
    folder = CASES / name
    with pytest.raises(ConfigError) as info:
        load_config_text((folder / "gateway.yaml").read_text(), "gateway.yaml")
    got = [str(p) for p in info.value.problems]
    assert got == (folder / "expected_error.txt").read_text().splitlines()


def test_a_config_of_every_transport_loads() -> None:
    config = load_config_text((Path(__file__).parents[3] / "config" / "example.yaml")
                              .read_text(), "example.yaml")
    protocols = {d.protocol for d in config.devices}
    assert {"modbus_tcp", "modbus_rtu", "modbus_ascii", "modbus_udp", "modbus_rtu_over_tcp",
            "modbus_dtu"} <= protocols
