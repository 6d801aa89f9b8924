"""A second opinion on the FINS frames: the independent ``fins`` package (PyPI, 1.0.5).

Its frames are compared byte for byte with ours, and its UDP and TCP clients read and
write the simulated PLC that the driver's tests use (so the simulator speaks FINS as
another implementation understands it, handshake included), and the driver reads back
what ``fins`` wrote. Never the verdict alone: the golden bytes of test_fins_frames.py
come from the FINS reference."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

import fins.tcp  # type: ignore[import-untyped]
import fins.udp  # type: ignore[import-untyped]
import pytest
from fins.fins_common import (  # type: ignore[import-untyped]
    FinsConnection,
    FinsPLCMemoryAreas,
)

from drivers.fins.address import parse_address
from drivers.fins.driver import FinsDriver
from drivers.fins.frames import (
    MEMORY_AREA_READ,
    MEMORY_AREA_WRITE,
    Route,
    command_frame,
    memory_area_read,
    memory_area_write,
)
from gateway.types import Quality
from hil.devices.fins_plc import FinsPlcSimulator

MakeDriver = Callable[..., FinsDriver]


class _Captured(FinsConnection):  # type: ignore[misc]
    """``fins``'s frame builder, without a transport: a command returns its own frame."""

    def execute_fins_command_frame(self, fins_command_frame: bytes) -> bytes:
        return fins_command_frame


def test_our_frames_are_the_fins_packages() -> None:
    theirs = _Captured()
    theirs.dest_net_add, theirs.dest_node_add, theirs.dest_unit_add = 1, 10, 0
    theirs.srce_net_add, theirs.srce_node_add, theirs.srce_unit_add = 0, 25, 0
    route = Route(dest_node=10, src_node=25, dest_network=1, gateway_count=7)
    areas = FinsPLCMemoryAreas()
    assert command_frame(route, 0x60, MEMORY_AREA_READ, memory_area_read(0x82, 100, 0, 10)) \
        == theirs.memory_area_read(areas.DATA_MEMORY_WORD, b"\x00\x64\x00", 10)
    assert command_frame(route, 0x60, MEMORY_AREA_READ, memory_area_read(0x30, 100, 5, 1)) \
        == theirs.memory_area_read(areas.CIO_BIT, b"\x00\x64\x05", 1)
    assert command_frame(route, 0x60, MEMORY_AREA_WRITE,
                         memory_area_write(0xA3, 7, 0, 2, b"\x12\x34\x56\x78")) \
        == theirs.memory_area_write(areas.EM3_WORD, b"\x00\x07\x00", b"\x12\x34\x56\x78", 2)
    for bank in range(25):  # every EM bank's word code
        name = f"EM{bank:X}_WORD" if bank < 16 else f"EM{bank - 6}_WORD"  # theirs: EM10..EM18
        assert getattr(areas, name)[0] == parse_address(f"E{bank:X}_0").code, name


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_the_fins_packages_clients_read_and_write_the_simulated_plc(
    transport: str, plc: FinsPlcSimulator, make_driver: MakeDriver
) -> None:
    high, low = struct.unpack(">HH", struct.pack(">f", 231.5))
    plc.set_words("D100", [low, high])  # Omron's order: low word first
    plc.set_words("W5", [0x1234])

    def client_side() -> tuple[float, int, int, bool]:
        client: FinsConnection
        if transport == "udp":
            client = fins.udp.UDPFinsConnection()
            client.connect("127.0.0.1", port=plc.port, bind_port=0)
            client.dest_node_add, client.srce_node_add = 1, 25
        else:
            client = fins.tcp.TCPFinsConnection()
            client.connect("127.0.0.1", port=plc.port)  # the node-address handshake
        try:
            value = client.read("d", 100, "r")
            word = client.read("w", 5, "ui")
            client.write(-2.5, "d", 200, "r")
            client.write(4321, "h", 3, "ui")
            bit_reply = client.memory_area_write(FinsPLCMemoryAreas().CIO_BIT,
                                                 b"\x00\x0a\x03", b"\x01", 1)
            return value, word, client.srce_node_add, bit_reply[12:14] == b"\x00\x00"
        finally:
            client.fins_socket.close()

    value, word, node, bit_ok = await asyncio.to_thread(client_side)
    assert (value, word, bit_ok) == (231.5, 0x1234, True)
    assert node == (25 if transport == "udp" else 239)  # TCP: assigned in the handshake
    driver = make_driver(plc, [{"name": "sp", "address": "D200", "type": "float32"},
                               {"name": "h3", "address": "H3", "type": "uint16"},
                               {"name": "bit", "address": "CIO10.03", "type": "bool"}],
                         transport=transport)
    await driver.connect()
    batch = await driver.read(driver.poll_groups()[0])
    assert dict(zip(batch.tag_ids.tolist(), batch.values.tolist(), strict=True)) == {
        100: -2.5, 101: 4321.0, 102: 1.0}
    assert (batch.quality == Quality.GOOD).all()
