"""drivers/modbus/tcp_link.py through the Modbus TCP driver, against raw TCP peers: answers
matched by transaction id, late and foreign answers dropped, bytes that are no frame, an
answer split over several segments, and the pymodbus PDUs the driver prepares."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from modbus_sim import RawDevice, mbap_reply

from drivers.modbus.driver import ModbusTcpDriver
from drivers.modbus.pymodbus_adapter import read_request, request_pdu, write_registers_request
from drivers.modbus.requests import read_pdu
from gateway.types import Quality

MakeDriver = Callable[..., ModbusTcpDriver]
TAG = {"name": "a", "type": "uint16", "address": 0}


def device(port: int, **extra: Any) -> dict[str, Any]:
    return {"name": "meter-1", "protocol": "modbus_tcp", "host": "127.0.0.1", "port": port,
            "timeout": 0.3, "retries": 0, "tags": [TAG], **extra}


async def read_a(driver: ModbusTcpDriver) -> tuple[float, int]:
    (group,) = driver.poll_groups()
    batch = await driver.read(group)
    return float(batch.values[0]), int(batch.quality[0])


class Peer(RawDevice):
    """A raw peer whose answer to a request may be several byte strings, sent apart."""

    def __init__(self, answer: Callable[[bytes], list[bytes]]) -> None:
        super().__init__(lambda request: b"")
        self.parts = answer

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while header := await reader.readexactly(6):
                body = await reader.readexactly(int.from_bytes(header[4:6], "big"))
                for part in self.parts(header + body):
                    writer.write(part)
                    await writer.drain()
                    await asyncio.sleep(0.01)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def late_and_foreign_first(request: bytes) -> list[bytes]:
    """An answer to an older transaction, one from another unit, then the right one, the
    last in two segments."""
    tid = int.from_bytes(request[:2], "big")
    older = ((tid - 1) or 65000).to_bytes(2, "big") + request[2:]
    other_unit = request[:6] + bytes([request[6] + 1]) + request[7:]
    right = mbap_reply(request, bytes([3, 2, 0, 42]))
    return [mbap_reply(older, bytes([3, 2, 0, 1])) + mbap_reply(other_unit, bytes([3, 2, 0, 2])),
            right[:5], right[5:]]


async def test_only_the_answer_to_the_request_counts(make_driver: MakeDriver) -> None:
    peer = Peer(late_and_foreign_first)
    await peer.start()
    try:
        driver = make_driver(device(peer.port))
        await driver.connect()
        for _ in range(3):
            assert await read_a(driver) == (42.0, Quality.GOOD)
        assert not driver.errors and driver.connected
    finally:
        await peer.stop()


async def test_bytes_that_are_no_frame_make_the_request_garbled(make_driver: MakeDriver) -> None:
    peer = Peer(lambda request: [request[:2] + b"\x00\x07" + request[4:]])  # protocol id 7
    await peer.start()
    try:
        driver = make_driver(device(peer.port))
        await driver.connect()
        value, quality = await read_a(driver)
        assert math.isnan(value) and quality == Quality.BAD
        assert driver.errors == {"garbled": 1}
        assert driver.connected  # the bytes are dropped, the stream stays
    finally:
        await peer.stop()


async def test_an_exception_answer_is_refused_with_its_code(make_driver: MakeDriver) -> None:
    peer = Peer(lambda request: [mbap_reply(request, bytes([0x83, 2]))])
    await peer.start()
    try:
        driver = make_driver(device(peer.port))
        await driver.connect()
        value, quality = await read_a(driver)
        assert math.isnan(value) and quality == Quality.BAD
        assert driver.errors == {"exception_2": 1}
    finally:
        await peer.stop()


def test_request_pdu_is_what_pymodbus_builds() -> None:
    """Pins pymodbus: ``ModbusClientMixin``'s methods hand ``execute`` the request PDU, whose
    ``encode()`` is its data after the function code."""
    assert request_pdu(read_request("input", 10, 124, 3)) == (3, bytes.fromhex("04000a007c"))
    assert request_pdu(write_registers_request(7, [1, 2], 1, False)) == (
        1, bytes.fromhex("100007000204") + bytes.fromhex("00010002"))


@pytest.mark.parametrize("table", ["coil", "discrete", "holding", "input"])
@pytest.mark.parametrize(("address", "count"), [(0, 1), (65535, 125), (10, 124)])
def test_read_pdu_is_what_pymodbus_builds(table: str, address: int, count: int) -> None:
    """The bytes a register read is sent as, without pymodbus, are pymodbus's."""
    assert read_pdu(table, address, count) == request_pdu(read_request(table, address, count, 1))[1]


@pytest.mark.parametrize(("table", "address", "count"), [
    ("holding", 0, 126), ("input", 0, 0), ("coil", 0, 2001), ("discrete", 65536, 1)])
def test_read_pdu_refuses_what_pymodbus_refuses(table: str, address: int, count: int) -> None:
    with pytest.raises(ValueError) as ours:
        read_pdu(table, address, count)
    with pytest.raises(ValueError) as theirs:
        request_pdu(read_request(table, address, count, 1))
    assert str(ours.value) == str(theirs.value)


def test_register_polling_imports_no_pymodbus() -> None:
    """A gateway of Modbus TCP devices polled for registers never imports pymodbus (2.7 MiB
    of RSS, issue 21); a bit read does, the first time."""
    script = """
import asyncio, sys
from drivers.modbus.config import ModbusTcpDeviceConfig
from drivers.modbus.driver import ModbusTcpDriver

async def serve(reader, writer):  # holding 0 is 9, coil 0 is on (modbus_sim imports pymodbus)
    try:
        while header := await reader.readexactly(12):  # one read request
            data = bytes([2, 0, 9]) if header[7] == 3 else bytes([1, 1])
            writer.write(header[:4] + bytes([0, len(data) + 2, header[6], header[7]]) + data)
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()

async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    device = {"name": "m", "protocol": "modbus_tcp", "host": "127.0.0.1",
              "port": server.sockets[0].getsockname()[1], "timeout": 5,
              "tags": [{"name": "a", "type": "uint16", "address": 0}]}
    driver = ModbusTcpDriver(ModbusTcpDeviceConfig.model_validate(device), [1])
    await driver.connect()
    batch = await driver.read(driver.poll_groups()[0])
    assert batch.values[0] == 9, batch
    print("registers", "pymodbus" in sys.modules)
    await driver.close()
    device["tags"].append({"name": "b", "type": "bool", "table": "coil", "address": 0})
    driver = ModbusTcpDriver(ModbusTcpDeviceConfig.model_validate(device), [1, 2])
    await driver.connect()
    batches = [await driver.read(group) for group in driver.poll_groups()]
    assert [list(b.quality) for b in batches] == [[0, 0]], batches
    print("bits", "pymodbus" in sys.modules)
    await driver.close()
    server.close()

asyncio.run(main())
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["registers", "False", "bits", "True"]


@pytest.mark.parametrize("table", ["holding", "input"])
async def test_a_register_read_goes_out_as_planned(table: str, make_driver: MakeDriver) -> None:
    seen: list[bytes] = []

    def answer(request: bytes) -> list[bytes]:
        seen.append(request)
        return [mbap_reply(request, bytes([request[7], 2, 0, 9]))]

    peer = Peer(answer)
    await peer.start()
    try:
        driver = make_driver(device(peer.port, tags=[{**TAG, "table": table, "address": 5}]))
        await driver.connect()
        assert await read_a(driver) == (9.0, Quality.GOOD)
        code = 3 if table == "holding" else 4
        assert seen[0][2:] == bytes([0, 0, 0, 6, 1, code, 0, 5, 0, 1])  # MBAP, unit 1, PDU
        assert int.from_bytes(seen[0][:2], "big") == 1  # the first transaction id
    finally:
        await peer.stop()
