"""The simulated MELSEC CPU (hil/devices/mc_plc.py) as an independent client sees it:
plc-comm-slmp (test-only) reads, writes and is refused as a CPU would refuse it."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

import pytest
import slmp

from hil.devices.mc_plc import PROCESS_MAP, McPlcSimulator, mc_tag_configs

StartPlc = Callable[..., Any]
TARGET = slmp.SlmpTarget(network=0, station=0xFF, module_io=0x03FF, multidrop=0)


def client(port: int, profile: str = "melsec:iq-r", transport: str = "tcp") -> Any:
    return slmp.AsyncSlmpClient("127.0.0.1", port, transport=transport, plc_profile=profile,
                                timeout=2.0, default_target=TARGET)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_the_machine_is_in_its_devices(transport: str, mc_plc: StartPlc) -> None:
    sim: McPlcSimulator = await mc_plc(series="iq-r")
    other = client(sim.port, transport=transport)
    await other.connect()
    try:
        melt = await other.read_float32("D100")
        assert 200 < melt < 240
        assert (await other.read_type_name()).model == "R04CPU"
        await other.write_float32("D202", 210.0)  # the melt setpoint goes to the model
        await other.write_devices("D210", [1], bit_unit=False)  # idle
        assert (await other.read_devices("SM400", 1, bit_unit=True)) == [True]
    finally:
        await other.close()
    assert sim.model.melt_setpoint == 210.0 and sim.model.mode == "idle"
    assert sim.get_value("melt_setpoint") == 210.0


async def test_a_setpoint_the_machine_refuses_is_put_back(mc_plc: StartPlc) -> None:
    sim: McPlcSimulator = await mc_plc(series="iq-r")
    other = client(sim.port)
    await other.connect()
    try:
        await other.write_float32("D200", 99.0)  # hold time 0.1..30 s
        assert await other.read_float32("D200") == sim.model.hold_time == 3.0
    finally:
        await other.close()


async def test_limits_and_ranges_answer_end_codes(mc_plc: StartPlc) -> None:
    """Raw frames (no client checks its own limits first): what the CPU answers."""
    sim = await mc_plc(series="iq-f")

    async def ask(command: int, subcommand: int, data: bytes) -> int:
        body = bytes((0, 0xFF, 0xFF, 0x03, 0)) + struct.pack("<HHHH", 6 + len(data), 4,
                                                            command, subcommand) + data
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
        try:
            writer.write(b"\x50\x00" + body)
            head = await asyncio.wait_for(reader.readexactly(11), 2)
        finally:
            writer.close()
        return int(struct.unpack_from("<H", head, 9)[0])

    d = lambda number: number.to_bytes(3, "little") + b"\xa8"  # noqa: E731
    m = lambda number: number.to_bytes(3, "little") + b"\x90"  # noqa: E731
    assert await ask(0x0401, 0, d(0) + struct.pack("<H", 960)) == 0
    assert await ask(0x0401, 0, d(0) + struct.pack("<H", 961)) == 0xC052
    assert await ask(0x0401, 1, m(0) + struct.pack("<H", 3584)) == 0
    assert await ask(0x0401, 1, m(0) + struct.pack("<H", 3585)) == 0xC051  # iQ-F's bit limit
    assert await ask(0x0401, 0, d(12280) + struct.pack("<H", 20)) == 0xC056
    assert await ask(0x0401, 0, b"\x00\x00\x00\x77" + struct.pack("<H", 1)) == 0xC05C
    assert await ask(0x0403, 0, bytes((193, 0)) + d(0) * 193) == 0xC054
    assert await ask(0x0619, 0, b"") == 0xC059
    assert await ask(0x1401, 0, d(0) + struct.pack("<H", 2) + b"\x01\x00") == 0xC061


def test_tag_configs_follow_the_series_base() -> None:
    q = {t["name"]: t["address"] for t in mc_tag_configs("q")}
    f = {t["name"]: t["address"] for t in mc_tag_configs("iq-f")}
    assert (q["cycle_start"], f["cycle_start"]) == ("X10", "X20")  # wire input 16
    assert q["temp_alarm"] == "B0" and len(q) == len(PROCESS_MAP)
