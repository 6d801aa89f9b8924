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
    decoded: float | str
    exact: int | float | bool | str  # what to encode; equals decoded unless float64 cannot hold it


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
    if isinstance(value, dict):
        return Expected(float(value["decoded"]), value["exact"])
    if isinstance(value, str):
        return Expected(_SPECIAL[value], _SPECIAL[value])
    assert isinstance(value, int | float | bool)
    return Expected(float(value), value)


def same_value(decoded: float | str, expected: float | str) -> bool:
    """Equal, NaN equal to NaN, and the sign of zero respected."""
    if isinstance(decoded, str) or isinstance(expected, str):
        return decoded == expected
    if math.isnan(expected):
        return math.isnan(decoded)
    return decoded == expected and math.copysign(1, decoded) == math.copysign(1, expected)
