"""Modbus over UDP, ASCII on a serial line and RTU through a serial device server: the
drivers against the meter simulator on a real socket or pty, values, writes and faults
(garbage, garbled and half answers, exceptions, silence, a device server restart)."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
from modbus_polling import lost, read_all

from drivers.base import Driver
from drivers.modbus.driver import ModbusDriver
from drivers.registry import REGISTRY
from gateway.errors import ConnectionLost
from gateway.serial_ports import SerialPorts
from gateway.types import Quality
from hil.devices.modbus_meter import ModbusMeterSimulator, Transport, meter_tag_configs
from hil.process.energy_meter import WaveformMeter, WaveformParams, waveform_reading
from tests.waiting import until

T0 = 1_700_000_000.0
AT = T0 + 7.5  # the meter's clock stands still here: values are exact
TAGS = meter_tag_configs("voltage", "energy_import", "ct_ratio", "relay_closed")
IDS = [100, 101, 102, 103]


class _Catalog:
    def ids_of_device(self, name: str) -> list[int]:
        return IDS


def device_of(sim: ModbusMeterSimulator, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "meter", "tags": TAGS, "timeout": "300ms", "retries": 0}
    transport = sim.transport
    if transport in ("rtu", "ascii"):  # a pty takes 8N1 only
        where = {"port": sim.serial_path, "baudrate": 19200, "bytesize": 8, "parity": "N"}
    else:
        where = {"host": "127.0.0.1", "port": sim.port}
    return {**base, "protocol": f"modbus_{transport}", **where, **kw}


@pytest.fixture
async def drivers() -> AsyncIterator[Callable[[dict[str, Any]], ModbusDriver]]:
    made: list[Driver] = []
    ports = SerialPorts()

    def make(raw: dict[str, Any]) -> ModbusDriver:
        device = REGISTRY.device_adapter.validate_python(raw)
        driver = REGISTRY.create_driver(device, _Catalog(), ports)  # type: ignore[arg-type]  # a catalog of one device
        assert isinstance(driver, ModbusDriver)
        made.append(driver)
        return driver

    yield make
    for driver in made:
        await driver.close()


def meter(transport: Transport, **kw: Any) -> ModbusMeterSimulator:
    return ModbusMeterSimulator(WaveformMeter(WaveformParams(t0=T0)), clock=lambda: AT,
                                transport=transport, **kw)



TRANSPORTS: list[Transport] = ["udp", "ascii", "rtu_over_tcp"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_reads_and_writes_the_meter(transport: Transport,
                                          drivers: Callable[[dict[str, Any]], ModbusDriver]
                                          ) -> None:
    async with meter(transport) as sim:
        driver = drivers(device_of(sim))
        await driver.connect()
        values = await read_all(driver)
        expected = waveform_reading(AT, WaveformParams(t0=T0))
        volts = struct.unpack(">f", struct.pack(">f", expected.voltage_v))[0]
        assert values[100] == (volts, Quality.GOOD)
        assert values[101] == (int(expected.energy_import_kwh * 100), Quality.GOOD)
        assert values[102] == (100, Quality.GOOD) and values[103] == (1, Quality.GOOD)
        await driver.write(102, 250)
        await driver.write(103, False)
        assert sim.get_value("ct_ratio") == 250 and sim.get_value("relay_closed") is False
        assert (await read_all(driver))[102] == (250, Quality.GOOD)
        assert not driver.errors


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_exception_and_silence_are_bad_quality_and_counted(
        transport: Transport, drivers: Callable[[dict[str, Any]], ModbusDriver]) -> None:
    async with meter(transport) as sim:
        driver = drivers(device_of(sim))
        await driver.connect()
        sim.inject_exception(4)
        values = await read_all(driver)
        assert {q for _, q in values.values()} == {Quality.BAD}
        assert driver.errors["exception_4"] >= 1
        sim.inject_exception(None)
        sim.response_delay = 0.6  # past the 300 ms timeout
        try:
            values = await read_all(driver)
        except ConnectionLost:  # 3 requests in a row without an answer: presumed dead
            assert driver.errors["connection_lost"] == 1
        else:
            assert values[100][1] == Quality.BAD and np.isnan(values[100][0])
        assert driver.errors["timeout"] >= 1
        sim.response_delay = 0.0
        await until(lambda: _good(driver), "good values again after the faults")



async def _good(driver: ModbusDriver) -> bool:
    try:
        values = await read_all(driver)
    except ConnectionLost:  # three silent requests: the driver starts afresh
        await driver.connect()
        return False
    return all(q == Quality.GOOD for _, q in values.values())


async def test_ascii_garbage_and_garbled_answers_are_garbled_and_retried(
        drivers: Callable[[dict[str, Any]], ModbusDriver]) -> None:
    async with meter("ascii") as sim:
        driver = drivers(device_of(sim, retries=1))
        await driver.connect()
        assert await _good(driver)
        sim.garble_answers(1)  # one byte of the next answer flipped: an LRC or hex error
        values = await read_all(driver)
        assert all(q == Quality.GOOD for _, q in values.values())  # the retry got it
        assert driver.errors["garbled"] == 1
        assert sim.line is not None
        sim.line.garble_answers = 4  # both tries of a request, twice
        values = await read_all(driver)
        assert Quality.BAD in {q for _, q in values.values()}
        assert driver.errors["garbled"] >= 3
        sim.inject_garbage(40)  # noise on the line between polls
        await until(lambda: _good(driver), "good values after line noise")


class _GarblingUdpMeter(ModbusMeterSimulator):
    """A meter whose next ``garbage`` UDP answers are random bytes (no MBAP frame)."""

    garbage = 0

    def _outgoing_tcp(self, sending: bool, data: bytes) -> bytes:
        if sending and self.garbage:
            self.garbage -= 1
            return b"\x13\x37" + bytes(range(40))
        return data


async def test_udp_datagram_that_is_no_frame_is_garbled_then_good(
        drivers: Callable[[dict[str, Any]], ModbusDriver]) -> None:
    async with _GarblingUdpMeter(WaveformMeter(WaveformParams(t0=T0)), clock=lambda: AT,
                                 transport="udp") as sim:
        driver = drivers(device_of(sim))
        await driver.connect()
        sim.garbage = 1
        values = await read_all(driver)
        assert Quality.BAD in {q for _, q in values.values()}
        assert driver.errors["garbled"] == 1
        assert all(q == Quality.GOOD for _, q in (await read_all(driver)).values())


class _DeviceServerMeter(ModbusMeterSimulator):
    """A meter behind a serial device server that sends a keep-alive and line noise:
    ``keepalive_inside`` answers get b"KA" in their middle, ``noise_before`` answers come
    after garbage, ``half`` answers stop halfway."""

    keepalive_inside = 0
    noise_before = 0
    half = 0

    def _silent_for_other_units(self, sending: bool, data: bytes) -> bytes:
        data = super()._silent_for_other_units(sending, data)
        if not sending or not data:
            return data
        if self.keepalive_inside:
            self.keepalive_inside -= 1
            data = data[:3] + b"KA" + data[3:]
        if self.noise_before:
            self.noise_before -= 1
            data = b"\x00\xff\x01\x03" + data
        if self.half:
            self.half -= 1
            data = data[: len(data) // 2]
        return data


async def test_rtu_over_tcp_drops_keepalives_skips_garbage_and_survives_half_answers(
        drivers: Callable[[dict[str, Any]], ModbusDriver]) -> None:
    async with _DeviceServerMeter(WaveformMeter(WaveformParams(t0=T0)), clock=lambda: AT,
                                  transport="rtu_over_tcp") as sim:
        driver = drivers(device_of(sim, heartbeat_packet={"ascii": "KA"}))
        await driver.connect()
        sim.keepalive_inside, sim.noise_before = 4, 4
        values = await read_all(driver)
        assert all(q == Quality.GOOD for _, q in values.values()), values
        assert not driver.errors
        sim.half = 1
        values = await read_all(driver)
        assert sorted(q for _, q in values.values()).count(Quality.BAD) == 1
        assert driver.errors["garbled"] == 1  # bytes came, no whole answer: not a timeout
        assert all(q == Quality.GOOD for _, q in (await read_all(driver)).values())


async def test_rtu_over_tcp_device_server_restart_is_a_lost_connection(
        drivers: Callable[[dict[str, Any]], ModbusDriver]) -> None:
    async with meter("rtu_over_tcp") as sim:
        driver = drivers(device_of(sim))
        await driver.connect()
        assert await _good(driver)
        sim.drop_connections()
        await until(lambda: lost(driver), "the driver lost the dropped connection")
        assert driver.errors["connection_lost"] == 1
        await driver.connect()
        assert await _good(driver)


async def test_rtu_over_tcp_refused_connect_names_the_device_server(
        closed_port: int, drivers: Callable[[dict[str, Any]], ModbusDriver]) -> None:
    driver = drivers({"name": "meter", "protocol": "modbus_rtu_over_tcp", "host": "127.0.0.1",
                      "port": closed_port, "tags": TAGS})
    from gateway.errors import DeviceUnreachable

    with pytest.raises(DeviceUnreachable, match=f"connection refused by 127.0.0.1:{closed_port}"):
        await driver.connect()


async def test_ascii_and_rtu_devices_cannot_share_a_line(
        drivers: Callable[[dict[str, Any]], ModbusDriver]) -> None:
    async with meter("ascii") as sim:
        ascii_meter = drivers(device_of(sim))
        rtu_meter = drivers({**device_of(sim), "name": "other", "protocol": "modbus_rtu"})
        await ascii_meter.connect()
        from gateway.errors import PortConflict

        with pytest.raises(PortConflict, match="must speak one protocol"):
            await rtu_meter.connect()
