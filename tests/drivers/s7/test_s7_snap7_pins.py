"""What drivers/s7/driver.py relies on in python-snap7 3.3, pinned against the simulator.

A new snap7 that changes any of it fails here first, with the reason in the test's name.
"""

from __future__ import annotations

import inspect

import snap7
from snap7 import AsyncClient
from snap7.type import Area, Parameter

from hil.devices.s7_plc import S7PlcSimulator


def test_the_pinned_version() -> None:
    assert snap7.__version__.startswith("3.3.")


async def test_async_read_multi_vars_sends_one_request_per_variable() -> None:
    """Why the driver builds its own read-var PDUs: snap7 3.3's AsyncClient reads N
    variables with N requests (its optimiser lives in the sync Client only)."""
    async with S7PlcSimulator(port=0) as sim:
        client = AsyncClient()
        client.set_connection_type(2)
        await client.connect("127.0.0.1", 0, 1, sim.port)
        before = sim.requests["read"]
        items = [{"area": Area.DB, "db_number": 1, "start": 4 * i, "size": 4} for i in range(5)]
        code, data = await client.read_multi_vars(items)
        assert code == 0 and len(data) == 5
        assert sim.requests["read"] - before == 5
        await client.disconnect()


async def test_the_connection_pieces_the_driver_uses() -> None:
    """TSAP from connection type, rack and slot; the PDU asked for and the one granted; the
    raw exchange; the SZL; the receive timeout attribute; the default type is PG (so the
    driver always sets its own)."""
    assert AsyncClient().connection_type == 1  # PG: never left to the default
    async with S7PlcSimulator(port=0, cpu="s7-1500") as sim:
        client = AsyncClient()
        client.set_connection_params("127.0.0.1", 0x0100, 0x0301)
        client.set_connection_type(0x03)
        client.set_param(Parameter.PDURequest, 480)
        await client.connect("127.0.0.1", 0, 1, sim.port)
        assert client.remote_tsap == 0x0301 and sim.connections["basic"] == 1
        assert client.get_pdu_length() == 480  # min(asked, the CPU's 960)
        assert client.connection is not None and isinstance(client.connection.timeout, float)
        job = bytes.fromhex("32 01 0000 0001 000e 0000 04 01 12 0a 10 02 0004 0003 84 000000")
        answer = await client.iso_exchange_buffer(bytearray(job))
        assert answer[:2] == b"\x32\x03" and len(answer) == 12 + 2 + 4 + 4
        order = await client.get_order_code()
        assert order.OrderCode == b"6ES7 516-3AN02-0AB0" and (order.V1, order.V2) == (2, 9)
        info = await client.get_cpu_info()
        assert info.ModuleTypeName == b"CPU 1516-3 PN/DP"
        await client.disconnect()
    assert "timeout" not in inspect.signature(AsyncClient.connect).parameters


async def test_the_sync_optimiser_fails_every_variable_when_one_fails() -> None:
    """snap7 3.3's multi-variable optimiser (sync Client) packs variables into few requests,
    but one missing DB makes the whole call raise: no value for the others. The driver
    reads each item's return code instead (only the missing DB's tags go BAD)."""
    import asyncio

    import pytest
    from snap7 import Client
    from snap7.error import S7Error

    async with S7PlcSimulator(port=0) as sim:
        def read(items: list[dict[str, object]]) -> object:
            client = Client()
            client.set_connection_type(2)
            client.connect("127.0.0.1", 0, 1, sim.port)
            try:
                return client.read_multi_vars(items)
            finally:
                client.disconnect()

        good = [{"area": Area.DB, "db_number": 1, "start": 0, "size": 4},
                {"area": Area.DB, "db_number": 3, "start": 2, "size": 2}]
        before = sim.requests["read"]
        code, data = await asyncio.to_thread(read, good)  # type: ignore[misc]
        assert code == 0 and bytes(data[1]) == b"\xd4\x31"  # DB3.DBW2 = 54321
        assert sim.requests["read"] - before == 1  # packed into one request
        with pytest.raises(S7Error, match="Object does not exist"):
            await asyncio.to_thread(read, [*good, {"area": Area.DB, "db_number": 9,
                                                   "start": 0, "size": 2}])
