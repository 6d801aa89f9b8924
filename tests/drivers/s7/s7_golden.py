"""Loading the golden cases in ``cases/`` (see cases/README.md)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from drivers.s7.config import S7DeviceConfig

CASES_DIR = Path(__file__).parent / "cases"
VALUE_CASES = sorted(p.name for p in CASES_DIR.iterdir() if (p / "memory.json").is_file())
PLAN_CASES = sorted(p.name for p in CASES_DIR.iterdir() if (p / "plan.json").is_file())
_SPECIAL = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


@dataclass(frozen=True)
class Expected:
    value: float | int | str | bool | None  # None: BAD
    bad: str | None = None  # part of the reason when BAD


@dataclass(frozen=True)
class ValueCase:
    name: str
    device: S7DeviceConfig
    memory: dict[str, bytes]
    expected: dict[str, Expected]

    def device_at(self, host: str, port: int, **changes: object) -> S7DeviceConfig:
        return self.device.model_copy(update={"host": host, "port": port, **changes})


def device_of(folder: Path) -> S7DeviceConfig:
    return S7DeviceConfig.model_validate(yaml.safe_load((folder / "device.yaml").read_text()))


def load_value_case(name: str) -> ValueCase:
    folder = CASES_DIR / name
    device = device_of(folder)
    memory = {k: bytes.fromhex(v) for k, v in json.loads((folder / "memory.json").read_text())
              .items()}
    expected = {tag: _expected(value) for tag, value in
                json.loads((folder / "expected.json").read_text()).items()}
    assert {t.name for t in device.tags} == set(expected), f"case {name}: tags differ"
    return ValueCase(name, device, memory, expected)


def load_plan_case(name: str) -> tuple[S7DeviceConfig, list[dict[str, Any]]]:
    folder = CASES_DIR / name
    return device_of(folder), json.loads((folder / "plan.json").read_text())


def _expected(value: object) -> Expected:
    if isinstance(value, dict) and "text" in value:
        return Expected(value["text"])
    if isinstance(value, dict) and "bad" in value:
        return Expected(None, value["bad"])
    if isinstance(value, str):
        return Expected(_SPECIAL[value])
    assert isinstance(value, int | float | bool)
    return Expected(value)


def same_value(decoded: object, expected: object) -> bool:
    """Equal as published: NaN equals NaN, the sign of zero counts, bools as 0/1, and a
    64-bit integer must be the exact Python int."""
    if isinstance(expected, str) or isinstance(decoded, str):
        return decoded == expected
    if isinstance(expected, bool):
        return decoded == float(expected)
    if isinstance(expected, int) and abs(expected) > 2**53:
        return type(decoded) is int and decoded == expected
    assert isinstance(decoded, int | float) and isinstance(expected, int | float)
    if math.isnan(expected):
        return math.isnan(decoded)
    return decoded == expected and math.copysign(1, decoded) == math.copysign(1, expected)
