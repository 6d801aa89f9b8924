"""The golden cases of cases/ (see cases/README.md): memory images read through the driver
over UDP and TCP, values written back, and config errors at their key."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from drivers.fins.config import FinsDeviceConfig
from drivers.fins.driver import FinsDriver
from gateway.config.yaml_model import validate_yaml_text
from gateway.errors import ConfigError
from gateway.types import DataType, Quality
from hil.devices.fins_plc import FinsPlcSimulator

CASES = Path(__file__).parent / "cases"
READ_CASES = sorted(p.name for p in CASES.iterdir() if (p / "memory.json").is_file())
ERROR_CASES = sorted(p.name for p in CASES.iterdir() if (p / "expected_error.txt").is_file())
MakeDriver = Callable[..., FinsDriver]


def load(name: str) -> tuple[dict[str, Any], dict[str, list[int]], dict[str, Any]]:
    folder = CASES / name
    device = yaml.safe_load((folder / "device.yaml").read_text())
    memory = {start: [int(w, 16) for w in words]
              for start, words in json.loads((folder / "memory.json").read_text()).items()}
    expected = {tag: value["text"] if isinstance(value, dict) else value
                for tag, value in json.loads((folder / "expected.json").read_text()).items()}
    assert {t["name"] for t in device["tags"]} == set(expected), name
    return device, memory, expected


def test_the_cases_are_there() -> None:
    assert len(READ_CASES) >= 8 and len(ERROR_CASES) >= 6


def same(got: Any, want: Any) -> bool:
    if isinstance(want, bool):
        return got == float(want)
    if isinstance(want, int) and abs(want) > 2**53:
        return type(got) is int and got == want
    if isinstance(want, float) and math.isnan(want):
        return math.isnan(got)
    return bool(got == want)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("name", READ_CASES)
async def test_a_memory_image_reads_as_expected(
    name: str, transport: str, plc: FinsPlcSimulator
) -> None:
    device, memory, expected = load(name)
    for start, words in memory.items():
        plc.set_words(start, words)
    config = FinsDeviceConfig.model_validate(
        {**device, "port": plc.port, "transport": transport, "timeout": "500ms"})
    driver = FinsDriver(config, list(range(len(config.tags))))
    plans = CASES / name / "expected_requests.json"
    if plans.is_file():
        assert [r.describe() for r in driver.requests] == json.loads(plans.read_text())
    await driver.connect()
    try:
        got: dict[str, Any] = {}
        for group in driver.poll_groups():
            batch = await driver.read(group)
            assert (batch.quality == Quality.GOOD).all(), (name, driver.errors)
            for tag_id, value in zip(batch.tag_ids.tolist(), batch.values.tolist(), strict=True):
                got[config.tags[tag_id].name] = value
    finally:
        await driver.close()
    wrong = {tag: (got[tag], want) for tag, want in expected.items() if not same(got[tag], want)}
    assert not wrong, f"{name}: (got, expected): {wrong}"


@pytest.mark.parametrize("name", READ_CASES)
async def test_the_expected_values_write_back_as_the_memory_image(
    name: str, plc: FinsPlcSimulator
) -> None:
    """Writing each value through the driver gives the case's words (strings: the text
    reads back, padding may differ)."""
    device, memory, expected = load(name)
    tags = []
    for tag in device["tags"]:
        writable = {**tag, "writable": True}
        if tag["type"] not in ("bool", "string"):
            writable["range"] = [-(2**63), 2**64 - 1]
        if tag["address"].upper().startswith("A") and int(tag["address"][1:].split(".")[0]) < 448:
            continue
        tags.append(writable)
    config = FinsDeviceConfig.model_validate({**device, "tags": tags, "port": plc.port})
    driver = FinsDriver(config, list(range(len(tags))))
    await driver.connect()
    try:
        for i, tag in enumerate(config.tags):
            await driver.write(i, expected[tag.name])
        reference = FinsPlcSimulator()
        for start, words in memory.items():
            reference.set_words(start, words)
        for tag in config.tags:
            where = tag.fins
            if tag.type is DataType.BOOL:
                assert plc.bit(str(where)) == reference.bit(str(where)), tag.name
            elif tag.type is not DataType.STRING:
                address = f"{where.area.name}{where.word}"
                assert plc.words(address, tag.words) == reference.words(address, tag.words), \
                    tag.name
        strings = [g for g in driver.poll_groups() if g.name.endswith("/strings")]
        for group in strings:
            batch = await driver.read(group)
            for tag_id, value in zip(batch.tag_ids.tolist(), batch.values.tolist(), strict=True):
                assert value == expected[config.tags[tag_id].name]
    finally:
        await driver.close()


@pytest.mark.parametrize("name", ERROR_CASES)
def test_a_bad_device_block_is_refused_at_its_key(name: str) -> None:
    folder = CASES / name
    path, message = (folder / "expected_error.txt").read_text().splitlines()[:2]
    with pytest.raises(ConfigError) as caught:
        validate_yaml_text(FinsDeviceConfig, (folder / "device.yaml").read_text(), "device.yaml")
    problems = caught.value.problems
    assert [(p.path_text, message in p.message) for p in problems] == [(path, True)], problems
    assert problems[0].line > 1
