"""The simulated Modbus TCP meter, read and written by a real pymodbus client."""

from __future__ import annotations

import asyncio
import math
import struct
import time
from collections.abc import AsyncIterator

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.pdu import ExceptionResponse

from hil.devices.modbus_meter import (
    REGISTER_MAP,
    REGISTERS_BY_NAME,
    ModbusMeterSimulator,
    Table,
    decode_value,
    encode_value,
)
from hil.process.energy_meter import (
    EnergyMeterModel,
    MeterReading,
    WaveformMeter,
    WaveformParams,
    waveform_reading,
)
from tests.waiting import until

# Decoding is written out here, independently of hil.devices.modbus_meter.


def f32(regs: list[int], at: int) -> float:
    return float(struct.unpack(">f", struct.pack(">HH", regs[at], regs[at + 1]))[0])


def u32(regs: list[int], at: int) -> int:
    return (regs[at] << 16) | regs[at + 1]


def i16(regs: list[int], at: int) -> int:
    return int(struct.unpack(">h", struct.pack(">H", regs[at]))[0])


def exception_code(response: object) -> int | None:
    return response.exception_code if isinstance(response, ExceptionResponse) else None


def assert_between(
    value: float, lo: MeterReading, hi: MeterReading, field: str, tol: float
) -> None:
    """``value`` lies between the readings taken just before and just after the request."""
    a, b = getattr(lo, field), getattr(hi, field)
    assert min(a, b) - tol <= value <= max(a, b) + tol, (field, value, a, b)


class ManualClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def connect(sim: ModbusMeterSimulator, **kwargs: object) -> AsyncModbusTcpClient:
    client = AsyncModbusTcpClient(sim.host, port=sim.port, timeout=2, **kwargs)  # type: ignore[arg-type]
    assert await client.connect()
    return client


@pytest.fixture
async def waveform_sim() -> AsyncIterator[tuple[ModbusMeterSimulator, WaveformParams]]:
    params = WaveformParams(t0=time.time() - 1234.5, period_s=20.0, energy0_kwh=100.0)
    async with ModbusMeterSimulator(WaveformMeter(params)) as sim:
        yield sim, params


@pytest.fixture
async def client(
    waveform_sim: tuple[ModbusMeterSimulator, WaveformParams],
) -> AsyncIterator[AsyncModbusTcpClient]:
    c = await connect(waveform_sim[0])
    yield c
    c.close()


def test_register_map_is_the_documented_one() -> None:
    rows = [(s.name, s.table, s.address, s.count, s.kind.value) for s in REGISTER_MAP]
    assert rows == [
        ("voltage", Table.INPUT, 0, 2, "float32"),
        ("current", Table.INPUT, 2, 2, "float32"),
        ("active_power", Table.INPUT, 4, 2, "float32"),
        ("power_factor", Table.INPUT, 6, 2, "float32"),
        ("frequency", Table.INPUT, 8, 2, "float32"),
        ("energy_import", Table.INPUT, 10, 2, "uint32"),
        ("temperature", Table.INPUT, 12, 1, "int16"),
        ("machine_state", Table.INPUT, 13, 1, "uint16"),
        ("ct_ratio", Table.HOLDING, 100, 1, "uint16"),
        ("power_limit", Table.HOLDING, 101, 2, "float32"),
        ("relay_closed", Table.COIL, 0, 1, "bool"),
        ("tamper_alarm", Table.DISCRETE_INPUT, 0, 1, "bool"),
    ]
    assert isinstance(REGISTER_MAP, tuple)
    with pytest.raises(AttributeError):
        REGISTER_MAP[0].address = 5  # type: ignore[misc]


async def test_input_registers_follow_the_waveform_at_read_time(
    waveform_sim: tuple[ModbusMeterSimulator, WaveformParams], client: AsyncModbusTcpClient
) -> None:
    _, params = waveform_sim
    for _ in range(5):
        before = time.time()
        rr = await client.read_input_registers(0, count=14, device_id=1)
        after = time.time()
        assert not rr.isError()
        regs = rr.registers
        lo, hi = waveform_reading(before, params), waveform_reading(after, params)

        def within(value: float, field: str, tol: float = 1e-4) -> None:
            assert_between(value, lo, hi, field, tol)  # noqa: B023

        within(f32(regs, 0), "voltage_v")
        within(f32(regs, 2), "current_a")
        within(f32(regs, 4), "active_power_kw")
        within(f32(regs, 6), "power_factor")
        within(f32(regs, 8), "frequency_hz")
        energy = u32(regs, 10)
        assert math.floor(lo.energy_import_kwh * 100) <= energy
        assert energy <= math.floor(hi.energy_import_kwh * 100)
        assert energy > 100 * 100  # energy0 plus 20 minutes at ~2 kW
        within(i16(regs, 12) / 10.0, "temperature_c", tol=0.05 + 1e-9)
        assert regs[13] in {int(lo.machine_state), int(hi.machine_state)}
        await asyncio.sleep(0.15)  # the next read at another point of the waveform; no wait


async def test_input_registers_equal_the_process_model_at_request_time() -> None:
    t0 = 1_700_000_000.0
    clock = ManualClock(t0 + 3000.25)
    twin = EnergyMeterModel(seed=5, t0=t0)
    async with ModbusMeterSimulator(EnergyMeterModel(seed=5, t0=t0), clock=clock) as sim:
        client = await connect(sim)
        try:
            for now in (t0 + 3000.25, t0 + 3001.5, t0 + 4000.0):
                clock.now = now
                rr = await client.read_input_registers(0, count=14)
                expected: MeterReading = twin.state_at(now)
                regs = rr.registers
                assert f32(regs, 0) == pytest.approx(expected.voltage_v, rel=1e-6)
                assert f32(regs, 2) == pytest.approx(expected.current_a, rel=1e-6)
                assert f32(regs, 4) == pytest.approx(expected.active_power_kw, rel=1e-6)
                assert f32(regs, 6) == pytest.approx(expected.power_factor, rel=1e-6)
                assert f32(regs, 8) == pytest.approx(expected.frequency_hz, rel=1e-6)
                assert u32(regs, 10) == math.floor(expected.energy_import_kwh * 100)
                assert i16(regs, 12) == round(expected.temperature_c * 10)
                assert regs[13] == int(expected.machine_state)
                assert 200.0 < f32(regs, 0) < 260.0
            # a partial read in the middle of the block is consistent with the full one
            rr = await client.read_input_registers(10, count=3)
            assert rr.registers == regs[10:13]
        finally:
            client.close()


async def test_holding_registers_defaults_and_writes_persist(
    waveform_sim: tuple[ModbusMeterSimulator, WaveformParams], client: AsyncModbusTcpClient
) -> None:
    sim, _ = waveform_sim
    rr = await client.read_holding_registers(100, count=3)
    assert rr.registers[0] == 100
    assert f32(rr.registers, 1) == 50.0

    assert not (await client.write_register(100, 250)).isError()
    limit = list(struct.unpack(">HH", struct.pack(">f", 42.5)))
    assert not (await client.write_registers(101, limit)).isError()

    rr = await client.read_holding_registers(100, count=3)
    assert rr.registers[0] == 250
    assert f32(rr.registers, 1) == 42.5
    assert sim.get_value("ct_ratio") == 250
    assert sim.get_value("power_limit") == 42.5

    await sim.restart()  # a device restart keeps its settings
    other = await connect(sim)
    try:
        rr = await other.read_holding_registers(100, count=3)
        assert rr.registers[0] == 250
        assert f32(rr.registers, 1) == 42.5
    finally:
        other.close()


async def test_coil_and_discrete_input(
    waveform_sim: tuple[ModbusMeterSimulator, WaveformParams], client: AsyncModbusTcpClient
) -> None:
    sim, _ = waveform_sim
    assert (await client.read_coils(0, count=1)).bits[0] is True
    assert not (await client.write_coil(0, False)).isError()
    assert (await client.read_coils(0, count=1)).bits[0] is False
    assert sim.get_value("relay_closed") is False
    assert not (await client.write_coils(0, [True])).isError()
    assert (await client.read_coils(0, count=1)).bits[0] is True

    assert (await client.read_discrete_inputs(0, count=1)).bits[0] is False
    sim.set_value("tamper_alarm", True)
    assert (await client.read_discrete_inputs(0, count=1)).bits[0] is True


@pytest.mark.parametrize(
    ("call", "args"),
    [
        ("read_input_registers", (14,)),
        ("read_input_registers", (13, 2)),
        ("read_input_registers", (100,)),
        ("read_holding_registers", (99,)),
        ("read_holding_registers", (102, 2)),
        ("read_holding_registers", (0,)),
        ("read_coils", (1,)),
        ("read_discrete_inputs", (1,)),
        ("write_register", (99, 1)),
        ("write_register", (103, 1)),
        ("write_coil", (1, True)),
    ],
)
async def test_addresses_outside_the_map_are_illegal(
    client: AsyncModbusTcpClient, call: str, args: tuple[int, ...]
) -> None:
    method = getattr(client, call)
    if call.startswith("read") and len(args) == 2:
        response = await method(args[0], count=args[1])
    else:
        response = await method(*args)
    assert exception_code(response) == 2


async def test_unknown_unit_id_answers_gateway_target_failed(client: AsyncModbusTcpClient) -> None:
    assert exception_code(await client.read_input_registers(0, count=2, device_id=7)) == 11
    assert not (await client.read_input_registers(0, count=2, device_id=1)).isError()


@pytest.mark.parametrize("code", [4, 6, 11])
async def test_injected_exception_answers_every_request_until_cleared(
    waveform_sim: tuple[ModbusMeterSimulator, WaveformParams],
    client: AsyncModbusTcpClient,
    code: int,
) -> None:
    sim, _ = waveform_sim
    sim.inject_exception(code)
    assert sim.injected_exception == code
    assert exception_code(await client.read_input_registers(0, count=14)) == code
    assert exception_code(await client.read_holding_registers(100, count=1)) == code
    assert exception_code(await client.read_coils(0)) == code
    assert exception_code(await client.read_discrete_inputs(0)) == code
    assert exception_code(await client.write_register(100, 7)) == code
    assert sim.get_value("ct_ratio") == 100  # the failed write did not land
    sim.inject_exception(None)
    assert not (await client.read_input_registers(0, count=14)).isError()


async def test_response_delay(
    waveform_sim: tuple[ModbusMeterSimulator, WaveformParams], client: AsyncModbusTcpClient
) -> None:
    sim, _ = waveform_sim
    sim.response_delay = 0.3
    started = time.monotonic()
    assert not (await client.read_input_registers(0, count=2)).isError()
    assert time.monotonic() - started >= 0.3
    sim.clear_faults()
    # answered without the delay: before a timer of the old delay set before the request
    # fires (the delay would be a timer on this same loop, due after it), however loaded
    async with asyncio.timeout(0.3):
        assert not (await client.read_input_registers(0, count=2)).isError()


async def test_response_delay_beyond_client_timeout_times_out(
    waveform_sim: tuple[ModbusMeterSimulator, WaveformParams],
) -> None:
    sim, _ = waveform_sim
    client = AsyncModbusTcpClient(sim.host, port=sim.port, timeout=0.2, retries=0)
    assert await client.connect()
    try:
        sim.response_delay = 0.6
        with pytest.raises(ModbusIOException):
            await client.read_input_registers(0, count=2)
    finally:
        client.close()


async def test_drop_connections_disconnects_clients(
    waveform_sim: tuple[ModbusMeterSimulator, WaveformParams],
) -> None:
    sim, _ = waveform_sim
    events: list[bool] = []
    client = AsyncModbusTcpClient(
        sim.host, port=sim.port, timeout=1, retries=0, reconnect_delay=0,
        trace_connect=events.append,
    )  # fmt: skip
    assert await client.connect()
    try:
        assert not (await client.read_input_registers(0, count=2)).isError()
        assert sim.connection_count == 1
        assert sim.drop_connections() == 1
        await until(lambda: not client.connected, "the client saw the drop")
        assert events == [True, False]
        assert sim.connection_count == 0
        with pytest.raises(ConnectionException):
            await client.read_input_registers(0, count=2)
        # the listener is still there: the client can come back
        assert await client.connect()
        assert not (await client.read_input_registers(0, count=2)).isError()
    finally:
        client.close()


async def test_stop_and_start_again_on_the_same_port() -> None:
    sim = ModbusMeterSimulator(WaveformMeter(WaveformParams(t0=time.time())))
    await sim.start()
    try:
        port = sim.port
        assert port > 0
        await sim.stop()
        assert not sim.running
        down = AsyncModbusTcpClient(sim.host, port=port, timeout=0.5, retries=0)
        assert not await down.connect()
        down.close()
        await sim.start()
        assert sim.port == port
        client = await connect(sim)
        try:
            assert not (await client.read_input_registers(0, count=14)).isError()
        finally:
            client.close()
    finally:
        await sim.stop()


async def test_restart_drops_connected_clients() -> None:
    async with ModbusMeterSimulator(WaveformMeter()) as sim:
        client = await connect(sim, reconnect_delay=0, retries=0)
        try:
            await sim.restart(downtime_s=0.05)
            await until(lambda: not client.connected, "the client saw the restart")
            assert await client.connect()
            assert not (await client.read_input_registers(0, count=2)).isError()
        finally:
            client.close()


async def test_port_zero_picks_distinct_free_ports() -> None:
    async with ModbusMeterSimulator() as a, ModbusMeterSimulator() as b:
        assert a.port != b.port
        assert 0 < a.port < 65536
        assert a.address == f"127.0.0.1:{a.port}"


async def test_port_in_use_raises() -> None:
    async with ModbusMeterSimulator() as a:
        with pytest.raises(OSError):
            await ModbusMeterSimulator(port=a.port).start()


def test_port_unknown_before_start() -> None:
    with pytest.raises(RuntimeError):
        _ = ModbusMeterSimulator().port


@pytest.mark.parametrize(
    ("name", "value", "registers"),
    [
        ("voltage", 230.0, [0x4366, 0x0000]),
        ("energy_import", 1234.567, [0x0001, 0xE240]),  # 123456 = floor(123456.7)
        ("energy_import", 42_949_672.96, [0, 0]),  # 2**32 hundredths wraps to 0
        ("temperature", -5.25, [0xFFCC]),  # round(-52.5) = -52
        ("temperature", 41.26, [413]),
        ("machine_state", 2, [2]),
        ("relay_closed", True, [1]),
    ],
)
def test_register_codec(name: str, value: float, registers: list[int]) -> None:
    spec = REGISTERS_BY_NAME[name]
    assert encode_value(spec, value) == registers
    decoded = decode_value(spec, registers)
    if name == "energy_import" and registers != [0, 0]:
        assert decoded == pytest.approx(1234.56)
    elif name == "temperature":
        assert decoded == pytest.approx(registers_to_temp(registers))
    elif registers != [0, 0]:
        assert decoded == value


def registers_to_temp(registers: list[int]) -> float:
    return i16(registers, 0) / 10.0
