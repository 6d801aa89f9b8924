"""Every fault kind of a register map fires, read by real clients over TCP and RTU.

The faults sit on addresses where the map has no value, as in ``hil/maps/boiler.yaml``:
pymodbus used to answer "illegal data address" for them before the simulator saw the
request, so none fired. pymodbus's own client sees each fault as the device acts it
out; the gateway's Modbus driver counts it (timeout, bad frame, exception, connection
lost and a reconnect by its device runner) and publishes BAD, never a wrong value.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from drivers.modbus.driver import ModbusDriver
from gateway.backoff import Backoff
from gateway.errors import ConnectionLost
from gateway.runtime.device_runner import DeviceRunner
from gateway.types import Quality, SampleBatch
from hil.devices.modbus_generic import ModbusGenericSimulator
from hil.devices.modbus_map import EXCEPTION_CODES, ModbusMap, load_map
from tests.waiting import until

HOST = "127.0.0.1"
BOILER = Path(__file__).resolve().parents[3] / "hil" / "maps" / "boiler.yaml"
FAULT_AT = 100  # no value is mapped there, in any table
DELAY_S = 0.4
VALUES: list[dict[str, Any]] = [
    {"name": "level", "table": "input", "address": 0, "type": "float32", "value": 2.5},
    {"name": "setpoint", "table": "holding", "address": 0, "type": "uint16", "value": 7},
    {"name": "pump", "table": "coil", "address": 0, "type": "bool", "value": True},
    {"name": "alarm", "table": "discrete", "address": 0, "type": "bool", "value": True},
]
KINDS: dict[str, dict[str, Any]] = {
    "exception": {"exception": 6},
    "delay": {"delay": f"{DELAY_S}s"},
    "drop_connection": {"drop_connection": True},
    "garble": {"garble": True},
}
FIRST_WORD = {"input": 0x4020, "holding": 7, "coil": 1, "discrete": 1}  # 2.5 is 0x40200000
READS = {"input": "read_input_registers", "holding": "read_holding_registers",
         "coil": "read_coils", "discrete": "read_discrete_inputs"}


def faulty_map(table: str, fault: dict[str, Any]) -> ModbusMap:
    return ModbusMap.from_dict({
        "registers": VALUES,
        "faults": [{"table": table, "start": FAULT_AT, "end": FAULT_AT + 3, **fault}],
    })


class Wire:
    """What a pymodbus client saw: raw bytes received, connects and disconnects."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.connection: list[bool] = []

    def packet(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self.received.append(data)
        return data

    def pdu(self, _sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        return pdu

    def connect(self, connected: bool) -> None:
        self.connection.append(connected)


@asynccontextmanager
async def client_of(
    sim: ModbusGenericSimulator, wire: Wire, timeout: float
) -> AsyncIterator[AsyncModbusTcpClient | AsyncModbusSerialClient]:
    """pymodbus's own client, no retries and no reconnects of its own."""
    client: AsyncModbusTcpClient | AsyncModbusSerialClient
    if sim.rtu:
        client = AsyncModbusSerialClient(
            sim.serial_path, baudrate=19200, timeout=timeout, retries=0, reconnect_delay=0,
            trace_packet=wire.packet, trace_connect=wire.connect)
    else:
        client = AsyncModbusTcpClient(
            HOST, port=sim.port, timeout=timeout, retries=0, reconnect_delay=0,
            trace_packet=wire.packet, trace_connect=wire.connect)
    assert await client.connect()
    try:
        yield client
    finally:
        client.close()


async def read(client: Any, table: str, address: int, count: int) -> Any:
    return await getattr(client, READS[table])(address, count=count, device_id=1)


def values_of(answer: Any, table: str) -> list[int]:
    return [int(b) for b in answer.bits] if table in ("coil", "discrete") else answer.registers


@pytest.mark.parametrize("rtu", [False, True], ids=["tcp", "rtu"])
@pytest.mark.parametrize("table", list(READS))
@pytest.mark.parametrize("kind", list(KINDS))
async def test_each_fault_kind_fires_for_a_pymodbus_client(
    kind: str, table: str, rtu: bool
) -> None:
    wire = Wire()
    async with (ModbusGenericSimulator(faulty_map(table, KINDS[kind]), rtu=rtu) as sim,
                client_of(sim, wire, timeout=2.0 if kind == "delay" else 0.5) as client):
        good = await read(client, table, 0, 1)  # the mapped value, untouched by the fault
        assert not good.isError() and values_of(good, table)[0] == FIRST_WORD[table]
        received_before = len(wire.received)
        started = time.monotonic()
        if kind == "exception":
            answer = await read(client, table, FAULT_AT, 4)
            assert answer.isError() and answer.exception_code == 6
        elif kind == "delay":
            answer = await read(client, table, FAULT_AT, 4)
            assert time.monotonic() - started >= DELAY_S  # answered that much later (a lower
            # bound: a loaded box only makes it later)
            assert not answer.isError() and values_of(answer, table)[:4] == [0, 0, 0, 0]
        elif kind == "drop_connection" and not rtu:
            with pytest.raises(ModbusException):  # no answer
                await read(client, table, FAULT_AT, 4)
            await until(lambda: False in wire.connection, "the client saw the connection close")
            assert sim.connection_count == 0
        elif kind == "drop_connection":  # RTU: the device stays silent
            with pytest.raises(ModbusException):
                await read(client, table, FAULT_AT, 4)
            assert len(wire.received) == received_before
        elif not rtu:  # garble on TCP: a short answer
            answer = await read(client, table, FAULT_AT, 4)
            assert not answer.isError()
            got = values_of(answer, table)
            assert len(got) == (3 if table in ("input", "holding") else 0), got
        else:  # garble on RTU: bytes arrive, but no valid frame (a CRC error)
            with pytest.raises(ModbusException):
                await read(client, table, FAULT_AT, 4)
            assert len(wire.received) > received_before
        assert sim.fault_count == 1
        if kind != "drop_connection" or rtu:  # only the faulted request was affected
            again = await read(client, table, 0, 1)
            assert not again.isError() and values_of(again, table)[0] == FIRST_WORD[table]


@pytest.mark.parametrize("code", EXCEPTION_CODES)
async def test_every_exception_code_is_answered(code: int) -> None:
    sim_map = faulty_map("holding", {"exception": code})
    async with (ModbusGenericSimulator(sim_map) as sim,
                client_of(sim, Wire(), timeout=1.0) as client):
        answer = await read(client, "holding", FAULT_AT + 2, 1)
        assert answer.isError() and answer.exception_code == code
        # a write into the range gets it too, and changes nothing
        written = await client.write_register(FAULT_AT, 5, device_id=1)
        assert written.isError() and written.exception_code == code
        # next to the range: the device's normal answer (no value mapped: exception 2)
        beside = await read(client, "holding", FAULT_AT + 4, 1)
        assert beside.isError() and beside.exception_code == 2


async def test_a_garbled_exception_answer_leaves_the_next_answer_whole() -> None:
    """On TCP only a read's answer is cut; an exception answer (the read also reaches an
    address without a value) goes out whole, and the garble is used up all the same."""
    garbled = ModbusMap.from_dict({
        "registers": [*VALUES, *({"name": f"x{a}", "table": "input", "address": a,
                                  "type": "uint16", "value": 9} for a in (100, 102))],
        "faults": [{"table": "input", "start": 100, "garble": True}],
    })
    async with (ModbusGenericSimulator(garbled) as sim,
                client_of(sim, Wire(), timeout=1.0) as client):
        beyond = await read(client, "input", 100, 2)  # 101 has no value
        assert beyond.isError() and beyond.exception_code == 2
        good = await read(client, "input", 0, 2)
        assert not good.isError() and good.registers == [0x4020, 0]
        short = await read(client, "input", 100, 1)
        assert not short.isError() and short.registers == []
        assert sim.fault_count == 2


async def test_a_fault_added_while_running_fires_at_any_address() -> None:
    async with (ModbusGenericSimulator(faulty_map("input", {"garble": True})) as sim,
                client_of(sim, Wire(), timeout=1.0) as client):
        far = await read(client, "holding", 60000, 2)
        assert far.isError() and far.exception_code == 2  # nothing there
        sim.faults.append(faulty_map("holding", {"exception": 4}).faults[0].model_copy(
            update={"start": 60000, "end": 60001}))
        far = await read(client, "holding", 60000, 2)
        assert far.isError() and far.exception_code == 4


async def test_a_coil_fault_fires_for_a_read_that_reaches_it() -> None:
    """pymodbus tells the simulator how many 16-bit words a bit read spans, not its bits:
    the fault at coil 100 must fire for coils 96..103 and not for coils 90..99."""
    async with (ModbusGenericSimulator(faulty_map("coil", {"exception": 6})) as sim,
                client_of(sim, Wire(), timeout=1.0) as client):
        sim.faults[0] = sim.faults[0].model_copy(update={"end": None})  # coil 100 only
        reaching = await read(client, "coil", 96, 8)
        assert reaching.isError() and reaching.exception_code == 6
        short = await read(client, "coil", 90, 10)
        assert short.isError() and short.exception_code == 2  # 90..99: nothing mapped


# -- the gateway's Modbus driver --------------------------------------------------------

BOILER_TAGS = {  # the faulted addresses of hil/maps/boiler.yaml, as gateway tags
    "slow": {"name": "slow", "table": "holding", "address": 200, "type": "uint16"},
    "garbled": {"name": "garbled", "table": "input", "address": 50, "type": "int32"},
    "missing": {"name": "missing", "table": "input", "address": 40, "type": "uint16"},
    "cut": {"name": "cut", "table": "holding", "address": 300, "type": "uint16",
            "poll_group": "diagnostics"},
    "pressure": {"name": "pressure", "table": "input", "address": 0, "type": "float32"},
}


def gateway_device(sim: ModbusGenericSimulator, names: list[str]) -> dict[str, Any]:
    where = ({"protocol": "modbus_rtu", "port": sim.serial_path, "baudrate": 19200} if sim.rtu
             else {"protocol": "modbus_tcp", "host": HOST, "port": sim.port})
    return {"name": "boiler", "timeout": "300ms", "retries": 0, **where,
            "poll_interval": "50ms", "poll_groups": [{"name": "diagnostics", "interval": "200ms"}],
            "tags": [BOILER_TAGS[n] for n in names]}


def names_of(driver: ModbusDriver) -> dict[int, str]:
    return {tid: driver.config.tags[driver.tag_position[tid]].name for tid in driver.tag_ids}


@pytest.mark.parametrize("rtu", [False, True], ids=["tcp", "rtu"])
async def test_the_boiler_faults_reach_the_gateway_driver_as_bad_tags_and_counters(
    rtu: bool, make_driver: Callable[..., ModbusDriver]
) -> None:
    async with ModbusGenericSimulator(load_map(BOILER), rtu=rtu) as sim:
        driver = make_driver(gateway_device(sim, ["pressure", "slow", "garbled", "missing"]))
        await driver.connect()
        got: dict[str, tuple[float, int]] = {}
        for group in driver.poll_groups():
            batch = await driver.read(group)
            names = names_of(driver)
            got.update({names[int(t)]: (float(v), int(q)) for t, v, q in
                        zip(batch.tag_ids, batch.values, batch.quality, strict=True)})
        assert got["pressure"][1] == Quality.GOOD and 11.0 <= got["pressure"][0] <= 13.0
        for name in ("slow", "garbled", "missing"):
            assert got[name][1] == Quality.BAD and math.isnan(got[name][0]), (name, got[name])
        errors = driver.units[1].errors
        assert errors["timeout"] == 1  # 2 s late; the timeout is 300 ms
        assert errors["exception_2"] == 1  # the block the device lacks
        assert errors["garbled" if rtu else "decode"] == 1  # CRC error / one register short
        assert sim.fault_count == 3


async def test_a_dropped_connection_is_counted_reconnected_and_published_bad(
    make_driver: Callable[..., ModbusDriver],
) -> None:
    """The device runner reconnects after the boiler closes the connection (holding 300);
    the tag there is only ever published BAD, the others stay GOOD between the drops."""
    async with ModbusGenericSimulator(load_map(BOILER)) as sim:
        samples: dict[str, list[tuple[float, int]]] = {"cut": [], "pressure": []}
        drivers: list[ModbusDriver] = []

        def factory() -> ModbusDriver:
            drivers.append(make_driver(gateway_device(sim, ["pressure", "cut"])))
            return drivers[-1]

        def sink(batch: SampleBatch) -> None:
            names = names_of(drivers[-1])
            for t, v, q in zip(batch.tag_ids, batch.values, batch.quality, strict=True):
                samples[names[int(t)]].append((float(v), int(q)))

        fast = Backoff(initial=0.01, maximum=0.05)
        runner = DeviceRunner("boiler", factory, sink, reconnect=fast, crash_restart=fast)
        task = asyncio.create_task(runner.run())
        try:
            await until(lambda: runner.stats.connection_losses >= 2
                        and runner.stats.connects >= 3, "two drops and reconnects")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert runner.stats.crashes == 0
        assert drivers[0].errors["connection_lost"] >= 2
        assert samples["cut"] and all(q != Quality.GOOD and math.isnan(v)
                                      for v, q in samples["cut"])
        assert any(q == Quality.GOOD for _, q in samples["pressure"])
        assert all(11.0 <= v <= 13.0 for v, q in samples["pressure"] if q == Quality.GOOD)


async def test_the_driver_sees_a_drop_as_connection_lost(
    make_driver: Callable[..., ModbusDriver],
) -> None:
    async with ModbusGenericSimulator(load_map(BOILER)) as sim:
        driver = make_driver(gateway_device(sim, ["cut"]))
        await driver.connect()
        with pytest.raises(ConnectionLost):
            for group in driver.poll_groups():
                await driver.read(group)
        assert driver.errors["connection_lost"] == 1 and not driver.connected
