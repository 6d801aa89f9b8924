"""Loading the golden cases in ``cases/`` and ``config_errors/`` (see cases/README.md)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from drivers.mc.config import McDeviceConfig

HERE = Path(__file__).parent
CASES_DIR = HERE / "cases"
CASE_NAMES = sorted(p.name for p in CASES_DIR.iterdir() if (p / "device.yaml").is_file())
#: the cases that also keep the requests their tags must be planned into (requests.txt)
REQUEST_CASES = [n for n in CASE_NAMES if (CASES_DIR / n / "requests.txt").is_file()]
ERRORS_DIR = HERE / "config_errors"
ERROR_CASES = sorted(p.name for p in ERRORS_DIR.iterdir() if (p / "device.yaml").is_file())

_SPECIAL = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}

#: device memory: device name -> {wire number: word (0..65535) or bit (0/1)}
Memory = dict[str, dict[int, int]]


@dataclass(frozen=True)
class GoldenCase:
    name: str
    device: McDeviceConfig
    memory: Memory
    expected: dict[str, float | int | bool | str]
    requests: list[str] | None

    def device_at(self, port: int, **changes: object) -> McDeviceConfig:
        return self.device.model_copy(update={"host": "127.0.0.1", "port": port, **changes})


def load_case(name: str) -> GoldenCase:
    folder = CASES_DIR / name
    device = McDeviceConfig.model_validate(yaml.safe_load((folder / "device.yaml").read_text()))
    memory: Memory = {}
    for dev, runs in json.loads((folder / "memory.json").read_text()).items():
        cells = memory.setdefault(dev, {})
        for start, values in runs.items():
            for i, value in enumerate(values):
                cells[int(start) + i] = int(value, 16) if isinstance(value, str) else int(value)
    expected = {tag: _expected(value)
                for tag, value in json.loads((folder / "expected.json").read_text()).items()}
    missing = {t.name for t in device.tags} ^ set(expected)
    assert not missing, f"case {name}: tags and expected values differ: {sorted(missing)}"
    requests_file = folder / "requests.txt"
    requests = requests_file.read_text().splitlines() if requests_file.is_file() else None
    return GoldenCase(name, device, memory, expected, requests)


def _expected(value: object) -> float | int | bool | str:
    if isinstance(value, dict) and "text" in value:
        return str(value["text"])
    if isinstance(value, str):
        return _SPECIAL[value]
    assert isinstance(value, int | float | bool)
    return value


def same_value(decoded: object, expected: float | int | bool | str) -> bool:
    """Equal; bools as 0/1; NaN equal to NaN; an int beyond 2**53 must decode as that exact
    int."""
    if isinstance(expected, str) or isinstance(decoded, str):
        return decoded == expected
    if isinstance(expected, bool):
        return float(decoded) == float(expected)  # type: ignore[arg-type]
    if isinstance(expected, int) and abs(expected) > 2**53:
        return type(decoded) is int and decoded == expected
    if isinstance(expected, float) and math.isnan(expected):
        return math.isnan(float(decoded))  # type: ignore[arg-type]
    return decoded == expected


def load_error_case(name: str) -> tuple[str, str, str]:
    """(device block, expected key path, expected message fragment)."""
    folder = ERRORS_DIR / name
    path, message = (folder / "error.txt").read_text().splitlines()[:2]
    return (folder / "device.yaml").read_text(), path, message
