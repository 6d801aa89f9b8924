"""The golden cases (cases/README.md): exact requests, decoded values and counters, served
by a scripted meter on a real TCP socket; refused configs with file, line and key."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from drivers.dlt645.codec import encode_frame
from drivers.dlt645.config import Dlt645TcpDeviceConfig
from drivers.dlt645.driver import Dlt645TcpDriver
from gateway.config.loader import load_config_text
from gateway.errors import ConfigError
from gateway.types import Quality

CASES = Path(__file__).resolve().parent / "cases"
VALUE_CASES = sorted(p for p in CASES.iterdir() if (p / "exchanges.json").exists())
ERROR_CASES = sorted(p for p in CASES.iterdir() if (p / "expected_error.json").exists())


class ScriptedMeter:
    """A TCP server that takes each request in turn and answers the case's bytes."""

    def __init__(self, exchanges: list[dict[str, str]]) -> None:
        self.exchanges = exchanges
        self.requests: list[str] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ScriptedMeter:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for exchange in self.exchanges:
                expected = bytes.fromhex(exchange["request"])
                got = await reader.readexactly(len(expected))
                self.requests.append(got.hex(" ").upper())
                writer.write(bytes.fromhex(exchange["answer"]))
                await writer.drain()
            await reader.read()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.mark.parametrize("case", VALUE_CASES, ids=lambda p: p.name)
async def test_case(case: Path) -> None:
    block: dict[str, Any] = yaml.safe_load((case / "device.yaml").read_text())
    exchanges = json.loads((case / "exchanges.json").read_text())["exchanges"]
    expected = json.loads((case / "expected.json").read_text())
    async with ScriptedMeter(exchanges) as meter:
        config = Dlt645TcpDeviceConfig.model_validate(
            block | {"host": "127.0.0.1", "port": meter.port})
        driver = Dlt645TcpDriver(config, list(range(len(config.tags))))
        # connect reads the first identifier once (a meter that answers is "up"): an
        # exception answer says the meter is there; then the poll runs the script
        there = encode_frame(config.meter_address, 0xD1 if config.version == 2007 else 0xC1,
                             b"\x01").hex(" ").upper()
        meter.exchanges = [{"request": exchanges[0]["request"], "answer": there}, *exchanges]
        await driver.connect()
        driver.errors.clear()
        batch = await driver.read(driver.poll_groups()[0])
        await driver.close()
    assert meter.requests == [e["request"] for e in meter.exchanges]  # byte for byte
    names = [t.name for t in config.tags]
    got: dict[str, Any] = {}
    for tag_id, value, quality in zip(batch.tag_ids, batch.values, batch.quality, strict=True):
        name = names[int(tag_id)]
        got[name] = value if quality == Quality.GOOD else {"bad": driver._failing[
            (config.meter_of(config.tags[int(tag_id)]), config.tags[int(tag_id)].identifier.di)]}
    assert got == expected["values"]
    assert {k: v for k, v in driver.errors.items() if v} == expected.get("errors", {})


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda p: p.name)
def test_error_case(case: Path) -> None:
    device = (case / "device.yaml").read_text()
    text = "gateway: {id: gw, site: s, line: l}\ndevices:\n  - " + \
        device.replace("\n", "\n    ").rstrip() + "\n"
    expected = json.loads((case / "expected_error.json").read_text())
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "gateway.yaml")
    problem = info.value.problems[0]
    assert (problem.line - 2, problem.path_text) == (expected["line"], expected["path"])
    assert expected["contains"] in problem.message
