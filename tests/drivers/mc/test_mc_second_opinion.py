"""plc-comm-slmp (an independent SLMP client, test-only) against the simulated CPU, next to
the driver: the same devices read by both give the same values, and what one writes the
other reads. A second opinion on the simulator and the driver, never the verdict alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import slmp
from mc_golden import load_case, same_value

from drivers.mc.driver import McDriver
from gateway.types import Quality

StartPlc = Callable[..., Any]
PROFILES = {"q": "melsec:qnudv", "iq-r": "melsec:iq-r", "iq-f": "melsec:iq-f"}


def client(port: int, series: str, transport: str) -> slmp.AsyncSlmpClient:
    return slmp.AsyncSlmpClient(
        "127.0.0.1", port, transport=transport, plc_profile=PROFILES[series], timeout=2.0,
        default_target=slmp.SlmpTarget(network=0, station=0xFF, module_io=0x03FF, multidrop=0))


@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_both_read_the_same_words_and_numbers(transport: str, mc_plc: StartPlc,
                                                    make_driver: Callable[..., McDriver]) -> None:
    case = load_case("low_first_words")
    sim = await mc_plc(series="q", process=False)
    sim.load(case.memory)
    other = client(sim.port, "q", transport)
    await other.connect()
    try:
        words = await other.read_devices("D100", len(case.memory["D"]), bit_unit=False)
        assert words == [case.memory["D"][100 + i] for i in range(len(words))]
        tags = {t.name: t for t in case.device.tags}
        number = tags["float32_8"].location("q").number
        assert await other.read_float32(f"D{number}") == pytest.approx(case.expected["float32_8"])
        number = tags["int32_4"].location("q").number
        dword = await other.read_dword(f"D{number}")
        assert dword - (1 << 32 if dword & 0x80000000 else 0) == case.expected["int32_4"]
    finally:
        await other.close()
    driver = make_driver(case.device_at(sim.port, transport=transport))
    await driver.connect()
    (group,) = driver.poll_groups()
    batch = await driver.read(group)
    names = [case.device.tags[driver.tag_position[int(t)]].name for t in batch.tag_ids]
    assert all(same_value(v, case.expected[n]) for n, v in zip(names, batch.values,
                                                                strict=True))


@pytest.mark.parametrize("series", ["q", "iq-r", "iq-f"])
async def test_what_one_writes_the_other_reads(series: str, mc_plc: StartPlc,
                                               make_driver: Callable[..., McDriver]) -> None:
    sim = await mc_plc(series=series, process=False)
    xy = "X20" if series == "iq-f" else "X10"  # wire input 16 in either base
    driver = make_driver({
        "name": "p", "protocol": "mc", "host": "127.0.0.1", "port": sim.port,
        "plc_series": series, "tags": [
            {"name": "level", "type": "int32", "address": "D50", "writable": True,
             "range": [-(2**31), 2**31 - 1]},
            {"name": "lamp", "type": "bool", "address": "M7", "writable": True},
            {"name": "start", "type": "bool", "address": xy},
            {"name": "link", "type": "uint16", "address": "W1A"}]})
    await driver.connect()
    other = client(sim.port, series, "tcp")
    await other.connect()
    try:
        await driver.write(100, -123456)
        await driver.write(101, True)
        assert await other.read_dword("D50") == (-123456) & 0xFFFFFFFF
        assert await other.read_devices("M7", 1, bit_unit=True) == [True]
        await other.write_devices(xy, [True], bit_unit=True)
        await other.write_devices("W1A", [0xBEEF], bit_unit=False)
    finally:
        await other.close()
    (group,) = driver.poll_groups()
    batch = await driver.read(group)
    values = {driver.config.tags[driver.tag_position[int(t)]].name: (v, q)
              for t, v, q in zip(batch.tag_ids, batch.values, batch.quality, strict=True)}
    assert values == {"level": (-123456, Quality.GOOD), "lamp": (1, Quality.GOOD),
                      "start": (1, Quality.GOOD), "link": (0xBEEF, Quality.GOOD)}
    assert sim.memory.bits["X"][16] == 1  # both put X20 (iQ-F) / X10 (Q, iQ-R) at input 16
