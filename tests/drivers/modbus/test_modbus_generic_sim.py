"""The generic Modbus simulator (hil/devices/modbus_generic.py) read through the Modbus driver:
register maps built from the golden cases decode to the cases' values, waveforms follow
the clock, every fault kind gives the expected quality and counters (TCP and RTU), and
bad maps are refused with file, line and key."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from modbus_golden import CASE_NAMES, load_case, same_value

from drivers.modbus.driver import ModbusDriver
from gateway.errors import ConfigError, ConnectionLost
from gateway.types import DataType, Quality, SampleBatch
from hil.cli import main as hil_main
from hil.devices.modbus_generic import ModbusGenericSimulator
from hil.devices.modbus_map import ModbusMap, load_map

HOST = "127.0.0.1"
MAPS_DIR = Path(__file__).resolve().parents[3] / "hil" / "maps"


def map_of_case(name: str) -> ModbusMap:
    """A register map holding a golden case's expected values at the case's addresses."""
    case = load_case(name)
    entries = []
    for tag in case.device.tags:
        entry: dict[str, Any] = {
            "name": tag.name, "table": tag.table, "address": tag.address,
            "type": tag.type.value, "byte_order": tag.byte_order,
            "value": case.expected[tag.name].exact,
        }
        if tag.bit is not None:
            entry["bit"] = tag.bit
        if tag.type is DataType.STRING:
            entry["length"] = tag.register_count
        entries.append(entry)
    return ModbusMap.from_dict({"registers": entries})


def by_name(driver: ModbusDriver, batch: SampleBatch) -> dict[str, tuple[Any, int]]:
    names = {tid: driver.config.tags[driver.tag_position[tid]].name for tid in driver.tag_ids}
    return {names[int(t)]: (v, int(q))
            for t, v, q in zip(batch.tag_ids, batch.values, batch.quality, strict=True)}


async def read_all(driver: ModbusDriver) -> dict[str, tuple[Any, int]]:
    out: dict[str, tuple[Any, int]] = {}
    for group in driver.poll_groups():
        out.update(by_name(driver, await driver.read(group)))
    return out


def mappable_cases() -> list[str]:
    """Golden cases a map can hold: no register shared by two tags (bits apart)."""
    names = []
    for name in CASE_NAMES:
        try:
            map_of_case(name)
        except ConfigError:
            continue
        names.append(name)
    return names


def test_the_golden_cases_that_fit_a_map_cover_every_type_and_byte_order() -> None:
    names = mappable_cases()
    for needed in ("abcd_big_endian", "cdab_word_swap", "badc_byte_swap", "dcba_little_endian",
                   "float_special_values", "int64_beyond_2_53", "strings", "coil_bits"):
        assert needed in names
    # a case whose tags share registers is refused by the map's overlap check
    with pytest.raises(ConfigError, match="already taken"):
        map_of_case("overlap_and_gap")


@pytest.mark.parametrize("case_name", mappable_cases())
async def test_golden_values_decode_through_the_driver(
    case_name: str, make_driver: Callable[..., ModbusDriver]
) -> None:
    case = load_case(case_name)
    async with ModbusGenericSimulator(map_of_case(case_name)) as sim:
        driver = make_driver(case.device_at(HOST, sim.port))
        await driver.connect()
        got = await read_all(driver)
    for tag in case.device.tags:
        value, quality = got[tag.name]
        assert quality == Quality.GOOD, tag.name
        expected = case.expected[tag.name].decoded
        decoded = value if isinstance(value, str | int) else float(value)
        assert same_value(decoded, expected), (tag.name, decoded, expected)


async def test_waveforms_follow_the_clock(make_driver: Callable[..., ModbusDriver]) -> None:
    now = [1000.0]
    waves = ModbusMap.from_dict({"registers": [
        {"name": "sine", "table": "input", "address": 0, "type": "float32", "value": 10,
         "waveform": {"kind": "sine", "amplitude": 2, "period": "8s"}},
        {"name": "ramp", "table": "input", "address": 2, "type": "float64", "value": 5,
         "byte_order": "DCBA", "waveform": {"kind": "ramp", "rate": 0.5, "low": 0, "high": 8}},
        {"name": "count", "table": "input", "address": 6, "type": "uint16", "value": 65534,
         "waveform": {"kind": "counter", "rate": 1}},
        {"name": "walk", "table": "holding", "address": 0, "type": "int32", "value": 100,
         "byte_order": "CDAB",
         "waveform": {"kind": "random_walk", "step": 10, "seed": 3, "low": 90, "high": 130}},
        {"name": "blink", "table": "coil", "address": 0, "type": "bool", "value": False,
         "waveform": {"kind": "counter", "rate": 1}},
    ]})
    tags = [
        {"name": "sine", "table": "input", "address": 0, "type": "float32"},
        {"name": "ramp", "table": "input", "address": 2, "type": "float64", "byte_order": "DCBA"},
        {"name": "count", "table": "input", "address": 6, "type": "uint16"},
        {"name": "walk", "table": "holding", "address": 0, "type": "int32", "byte_order": "CDAB"},
        {"name": "blink", "table": "coil", "address": 0, "type": "bool"},
    ]
    async with ModbusGenericSimulator(waves, clock=lambda: now[0]) as sim:
        driver = make_driver({"name": "waves", "protocol": "modbus_tcp", "host": HOST,
                              "port": sim.port, "tags": tags})
        await driver.connect()
        got = await read_all(driver)
        assert got["sine"][0] == 10 and got["ramp"][0] == 5 and got["count"][0] == 65534
        assert got["walk"][0] == 100 and got["blink"][0] == 0
        walks = set()
        for t in (2.0, 3.0, 7.0):  # seconds after start
            now[0] = 1000.0 + t
            got = await read_all(driver)
            assert math.isclose(got["sine"][0], 10 + 2 * math.sin(2 * math.pi * t / 8),
                                rel_tol=1e-6)
            assert got["ramp"][0] == (5 + 0.5 * t) % 8  # wraps into [0, 8)
            assert got["count"][0] == (65534 + int(t)) % 65536  # 65535, then wraps to 0
            assert got["blink"][0] == int(t) % 2
            assert 90 <= got["walk"][0] <= 130
            assert got["walk"][0] == sim.value_of("walk")  # seeded: the same walk every time
            walks.add(got["walk"][0])
        assert len(walks) > 1


FAULTY = {
    "registers": [
        {"name": "ok", "table": "input", "address": 0, "type": "float32", "value": 1.5},
        {"name": "missing", "table": "input", "address": 10, "type": "uint16", "value": 1},
        {"name": "slow", "table": "input", "address": 20, "type": "uint16", "value": 2},
        {"name": "noisy", "table": "input", "address": 30, "type": "int32", "value": -3},
        {"name": "busy", "table": "holding", "address": 0, "type": "uint16", "value": 4},
        {"name": "cut", "table": "holding", "address": 50, "type": "uint16", "value": 5},
    ],
    "faults": [
        {"table": "input", "start": 10, "end": 19, "exception": 2},
        {"table": "input", "start": 20, "delay": "600ms"},
        {"table": "input", "start": 30, "end": 31, "garble": True},
        {"table": "holding", "start": 0, "exception": 6},
        {"table": "holding", "start": 50, "drop_connection": True},
    ],
}
FAULTY_TAGS = [{k: v for k, v in r.items() if k != "value"} for r in FAULTY["registers"]]


def device(name: str, protocol: str, where: dict[str, Any], tags: list[dict[str, Any]]
           ) -> dict[str, Any]:
    return {"name": name, "protocol": protocol, "timeout": "300ms", "retries": 0,
            "tags": tags, **where}


async def test_faults_over_tcp_give_bad_tags_and_counters(
    make_driver: Callable[..., ModbusDriver],
) -> None:
    async with ModbusGenericSimulator(ModbusMap.from_dict(FAULTY)) as sim:
        tags = [t for t in FAULTY_TAGS if t["name"] != "cut"]
        driver = make_driver(device("faulty", "modbus_tcp", {"host": HOST, "port": sim.port},
                                    tags))
        await driver.connect()
        got = await read_all(driver)
        assert got["ok"] == (1.5, Quality.GOOD)
        for name in ("missing", "slow", "noisy", "busy"):
            assert got[name][1] == Quality.BAD and math.isnan(got[name][0]), name
        errors = driver.units[1].errors
        assert errors["exception_2"] == 1 and errors["exception_6"] == 1
        assert errors["timeout"] == 1  # answered 600 ms late, the timeout is 300 ms
        assert errors["decode"] == 1  # the short answer: 1 register for the 2 asked
        assert driver.units[1].requests == 5
        assert sim.fault_count == 4

        # the fault list is live: without faults the same tags read GOOD again
        sim.faults.clear()
        got = await read_all(driver)
        assert {name: q for name, (_, q) in got.items()} == dict.fromkeys(got, Quality.GOOD)
        assert got["noisy"][0] == -3 and got["busy"][0] == 4

        cutter = make_driver(device("cutter", "modbus_tcp", {"host": HOST, "port": sim.port},
                                    [FAULTY_TAGS[-1]]))
        sim.faults.append(ModbusMap.from_dict(FAULTY).faults[-1])
        await cutter.connect()
        with pytest.raises(ConnectionLost):
            await read_all(cutter)
        assert cutter.errors["connection_lost"] == 1 and not cutter.connected


async def test_faults_over_rtu_garble_and_silence(
    make_driver: Callable[..., ModbusDriver],
) -> None:
    async with ModbusGenericSimulator(ModbusMap.from_dict(FAULTY), rtu=True) as sim:
        tags = [t for t in FAULTY_TAGS if t["name"] in ("ok", "noisy", "cut", "missing")]
        driver = make_driver(device("rtu", "modbus_rtu",
                                    {"port": sim.serial_path, "baudrate": 19200}, tags))
        await driver.connect()
        got = await read_all(driver)
        assert got["ok"] == (1.5, Quality.GOOD)
        assert all(got[n][1] == Quality.BAD for n in ("noisy", "cut", "missing"))
        errors = driver.units[1].errors
        assert errors["garbled"] == 1  # a flipped byte: CRC error
        assert errors["timeout"] == 1  # RTU has no connection to drop: no answer
        assert errors["exception_2"] == 1
        assert driver.connected  # one silent request does not make the line dead


BAD_MAP = """\
unit_id: 1
registers:
  - {name: a, table: input, address: 0, type: float32, value: 1}
  - {name: b, table: input, address: 1, type: int16}
  - {name: c, address: 5, type: float99}
  - {name: d, address: 9, type: string, length: 2, value: "too long"}
  - {name: a, address: 20, type: uint16, value: 70000}
faults:
  - {table: input, start: 0, delay: 1s, exception: 2}
  - {table: holding, start: 3, exception: 9}
"""


def test_bad_maps_name_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "plant.yaml"
    path.write_text(BAD_MAP)
    with pytest.raises(ConfigError) as info:
        load_map(path)
    text = str(info.value)
    for expected in (
        "plant.yaml:4: registers[1].address: input 1 is already taken by registers[0]",
        "plant.yaml:5: registers[2].type:",
        "plant.yaml:6: registers[3]:",
        "plant.yaml:7: registers[4]:",
        "plant.yaml:9: faults[0]: give exactly one of",
        "plant.yaml:10: faults[1]:",
    ):
        assert expected in text, text
    assert "70000" in text and "takes 8 bytes" in text
    result = CliRunner().invoke(hil_main, ["sim", "modbus", "--map", str(path)])
    assert result.exit_code == 1 and "plant.yaml:5" in result.output


def test_the_shipped_maps_are_valid() -> None:
    maps = sorted(MAPS_DIR.glob("*.yaml"))
    assert maps
    for path in maps:
        assert load_map(path).registers


async def test_writes_replace_the_value_and_stop_its_waveform(
    make_driver: Callable[..., ModbusDriver],
) -> None:
    from gateway.errors import DeviceWriteRefused

    now = [0.0]
    device_map = ModbusMap.from_dict({"registers": [
        {"name": "setpoint", "table": "holding", "address": 0, "type": "float32", "value": 10,
         "waveform": {"kind": "ramp", "rate": 1}},
        {"name": "locked", "table": "holding", "address": 2, "type": "uint16", "value": 7,
         "writable": False},
        {"name": "relay", "table": "coil", "address": 3, "type": "bool", "value": False},
    ]})
    tags = [
        {"name": "setpoint", "address": 0, "type": "float32", "writable": True,
         "range": [0, 100]},
        {"name": "locked", "address": 2, "type": "uint16", "writable": True, "range": [0, 10]},
        {"name": "relay", "table": "coil", "address": 3, "type": "bool", "writable": True},
    ]
    async with ModbusGenericSimulator(device_map, clock=lambda: now[0]) as sim:
        driver = make_driver({"name": "w", "protocol": "modbus_tcp", "host": HOST,
                              "port": sim.port, "tags": tags})
        await driver.connect()
        now[0] = 5.0
        assert (await read_all(driver))["setpoint"][0] == 15.0  # the ramp runs
        await driver.write(driver.tag_ids[0], 42.5)
        await driver.write(driver.tag_ids[2], True)
        now[0] = 50.0
        got = await read_all(driver)
        assert got["setpoint"][0] == 42.5 and sim.value_of("setpoint") == 42.5  # ramp stopped
        assert got["relay"][0] == 1 and sim.value_of("relay") is True
        with pytest.raises(DeviceWriteRefused, match="exception 2"):
            await driver.write(driver.tag_ids[1], 8)
        assert (await read_all(driver))["locked"][0] == 7
