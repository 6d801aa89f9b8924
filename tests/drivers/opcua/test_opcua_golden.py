"""OPC UA golden cases kept as data (cases/README.md): each case's nodes served by the HIL
OPC UA PLC on loopback and read through the driver by subscription and by poll; the
refused device blocks of cases/config_errors/cases.yaml with their key and words."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from drivers.opcua.asyncua_adapter import ua
from drivers.opcua.config import OpcUaDeviceConfig
from drivers.opcua.driver import OpcUaDriver
from gateway.config.loader import load_config_text
from gateway.errors import ConfigError
from gateway.types import Quality
from hil.devices.opcua_plc import OpcUaPlcSimulator
from tests.drivers.opcua.opcua_helpers import Collector
from tests.waiting import until

CASES = Path(__file__).parent / "cases"
VALUE_CASES = sorted(p.name for p in CASES.iterdir() if (p / "expected.json").is_file())
ERRORS = yaml.safe_load((CASES / "config_errors" / "cases.yaml").read_text())


def read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def config_text(device: dict[str, Any]) -> str:
    return yaml.safe_dump({"gateway": {"id": "gw-1", "site": "plant", "line": "line-1"},
                           "devices": [device]}, sort_keys=False, allow_unicode=True)


def variant(spec: dict[str, Any]) -> ua.Variant:
    vtype = getattr(ua.VariantType, spec["type"])

    def one(value: Any) -> Any:
        if vtype is ua.VariantType.DateTime:
            return dt.datetime.fromisoformat(value)
        if vtype is ua.VariantType.LocalizedText:
            return ua.LocalizedText(value, "zh-CN")
        return value

    value = spec["value"]
    return ua.Variant([one(v) for v in value] if isinstance(value, list) else one(value), vtype)


@contextlib.asynccontextmanager
async def serving(case: str) -> AsyncIterator[OpcUaPlcSimulator]:
    """The HIL OPC UA PLC with the case's nodes."""
    async with OpcUaPlcSimulator(update_interval=1.0) as sim:
        for name, spec in read_yaml(CASES / case / "nodes.yaml").items():
            status = getattr(ua.StatusCodes, spec["status"]) if "status" in spec else None
            await sim.add_variable(name, variant(spec), status=status)
        yield sim


def assert_value(name: str, got: tuple[Any, int, int], want: Any) -> None:
    value, _, quality = got
    if isinstance(want, dict) and "bad" in want:
        assert quality == Quality.BAD, (name, value)
        return
    if isinstance(want, dict) and "uncertain" in want:
        assert quality == Quality.UNCERTAIN, (name, value)
        want = want["uncertain"]
    else:
        assert quality == Quality.GOOD, (name, value, quality)
    if isinstance(want, dict):
        assert value == want["text"], name
    elif want == "nan":
        assert math.isnan(value), name
    elif isinstance(want, bool):
        assert value == float(want), name
    elif isinstance(want, int):
        assert int(value) == want and float(value) == float(want), (name, value)
        if abs(want) > 2**53:
            assert type(value) is int, (name, value)  # exact: never through float64
    else:
        assert value == want or math.isclose(value, want, rel_tol=1e-7), (name, value, want)
        assert math.copysign(1, value) == math.copysign(1, want), (name, value)


@pytest.mark.parametrize("case", VALUE_CASES)
async def test_golden_nodes_read_through_the_driver(case: str) -> None:
    async with serving(case) as plc:
        for mode in ("subscription", "poll"):
            await read_and_compare(plc, case, mode)


async def read_and_compare(plc: OpcUaPlcSimulator, case: str, mode: str) -> None:
    block = read_yaml(CASES / case / "device.yaml") | {
        "endpoint": plc.endpoint, "mode": mode, "publishing_interval": "100ms",
        "poll_interval": "100ms"}
    config = load_config_text(config_text(block), "cfg.yaml")
    (device,) = config.devices
    assert isinstance(device, OpcUaDeviceConfig)
    want: dict[str, Any] = read_yaml(CASES / case / "expected.json")
    names = [t.name for t in device.tags]
    driver = OpcUaDriver(device, list(range(len(names))))
    got = Collector()
    await driver.connect()
    try:
        if mode == "subscription":
            task = asyncio.create_task(driver.subscribe(got))
            assert await until(lambda: all(got.latest(i) for i in range(len(names))),
                               timeout=30), got.batches
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        else:
            for group in driver.poll_groups():
                got(await driver.read(group))
    finally:
        await driver.close()
    for i, name in enumerate(names):
        latest = got.latest(i)
        assert latest is not None, name
        assert_value(name, latest, want[name])


@pytest.mark.parametrize("case", ERRORS, ids=[c["name"] for c in ERRORS])
def test_refused_device_blocks(case: dict[str, Any]) -> None:
    device = read_yaml(CASES / "status_codes" / "device.yaml") | case["device"]
    with pytest.raises(ConfigError) as info:
        load_config_text(config_text(device), "cfg.yaml")
    problems = info.value.problems
    assert any(case["error"] in p.message for p in problems), [p.message for p in problems]
    paths = [p.path_text for p in problems]
    assert any(path.endswith(case["key"]) for path in paths), paths
    assert all(p.line > 0 for p in problems)
