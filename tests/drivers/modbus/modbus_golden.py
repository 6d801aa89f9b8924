"""Loading the golden cases in ``cases/`` (see cases/README.md)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from drivers.modbus.config import ModbusTcpDeviceConfig

CASES_DIR = Path(__file__).parent / "cases"
CASE_NAMES = sorted(p.name for p in CASES_DIR.iterdir() if (p / "device.yaml").is_file())

_SPECIAL = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


@dataclass(frozen=True)
class Expected:
    decoded: float | int | str  # ints stay ints: 64-bit integers decode exactly
    exact: int | float | bool | str  # what to encode


@dataclass(frozen=True)
class GoldenCase:
    name: str
    device: ModbusTcpDeviceConfig
    tables: dict[str, list[int]]
    expected: dict[str, Expected]

    def device_at(self, host: str, port: int, **changes: object) -> ModbusTcpDeviceConfig:
        return self.device.model_copy(update={"host": host, "port": port, **changes})


def load_case(name: str) -> GoldenCase:
    folder = CASES_DIR / name
    device = ModbusTcpDeviceConfig.model_validate(
        yaml.safe_load((folder / "device.yaml").read_text())
    )
    raw_tables = json.loads((folder / "registers.json").read_text())
    tables = {
        table: [int(v, 16) if isinstance(v, str) else int(v) for v in values]
        for table, values in raw_tables.items()
    }
    expected = {
        tag: _expected(value)
        for tag, value in json.loads((folder / "expected.json").read_text()).items()
    }
    missing = {t.name for t in device.tags} ^ set(expected)
    assert not missing, f"case {name}: tags and expected values differ: {sorted(missing)}"
    return GoldenCase(name, device, tables, expected)


def _expected(value: object) -> Expected:
    if isinstance(value, dict) and "text" in value:
        return Expected(value["text"], value["text"])
    if isinstance(value, str):
        return Expected(_SPECIAL[value], _SPECIAL[value])
    assert isinstance(value, int | float | bool)
    return Expected(value if isinstance(value, int) and not isinstance(value, bool)
                    else float(value), value)


def same_value(decoded: float | int | str, expected: float | int | str) -> bool:
    """Equal, NaN equal to NaN, the sign of zero respected; an int expected beyond 2**53
    must decode as that exact int."""
    if isinstance(decoded, str) or isinstance(expected, str):
        return decoded == expected
    if isinstance(expected, int) and abs(expected) > 2**53:
        return type(decoded) is int and decoded == expected
    if math.isnan(expected):
        return math.isnan(decoded)
    return decoded == expected and math.copysign(1, decoded) == math.copysign(1, expected)
