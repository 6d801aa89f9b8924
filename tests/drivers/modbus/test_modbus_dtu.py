"""4G DTUs dialling in: the DTU driver and its listener against the DTU simulator on real
sockets. Registration (literal and pattern), heartbeats anywhere in the stream, garbage,
half answers, a DTU that redials (the new connection replaces the old), two DTUs on one
port, an unknown DTU refused and logged once, a DTU that never registers dropped, and the
errors a factory engineer reads."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from modbus_polling import lost, read_all

from drivers.modbus.driver import ModbusDtuDriver
from drivers.registry import REGISTRY
from gateway.errors import DeviceUnreachable
from gateway.listen_ports import ListenPorts
from gateway.serial_ports import SerialPorts
from gateway.types import Quality
from hil.devices.modbus_dtu import DtuSimulator
from hil.devices.modbus_meter import ModbusMeterSimulator, meter_tag_configs
from hil.netutil import free_port
from hil.process.energy_meter import WaveformMeter, WaveformParams, waveform_reading
from tests.waiting import until

T0 = 1_700_000_000.0
AT = T0 + 12.5
TAGS = meter_tag_configs("voltage", "energy_import", "ct_ratio", "relay_closed")
IDS = [100, 101, 102, 103]


class _Catalog:
    def ids_of_device(self, name: str) -> list[int]:
        return IDS


def dtu_device(name: str, port: int, registration: dict[str, str], **kw: Any) -> dict[str, Any]:
    return {"name": name, "protocol": "modbus_dtu", "listen_host": "127.0.0.1",
            "listen_port": port, "registration_packet": registration,
            "heartbeat_packet": {"ascii": "HB"}, "tags": TAGS, "timeout": "500ms",
            "retries": 0, "dial_in_timeout": "5s", **kw}


@pytest.fixture
def listen_ports() -> ListenPorts:
    return ListenPorts(linger=2.0)


@pytest.fixture
async def make_driver(listen_ports: ListenPorts
                      ) -> AsyncIterator[Callable[[dict[str, Any]], ModbusDtuDriver]]:
    made: list[ModbusDtuDriver] = []

    def make(raw: dict[str, Any]) -> ModbusDtuDriver:
        device = REGISTRY.device_adapter.validate_python(raw)
        driver = REGISTRY.create_driver(device, _Catalog(), SerialPorts(),  # type: ignore[arg-type]  # a catalog of one device
                                        listen_ports)
        assert isinstance(driver, ModbusDtuDriver)
        made.append(driver)
        return driver

    yield make
    for driver in made:
        await driver.close()
    listen_ports.close()


def meter() -> ModbusMeterSimulator:
    return ModbusMeterSimulator(WaveformMeter(WaveformParams(t0=T0)), clock=lambda: AT,
                                transport="rtu_over_tcp")




def volts() -> float:
    expected = waveform_reading(AT, WaveformParams(t0=T0)).voltage_v
    return float(struct.unpack(">f", struct.pack(">f", expected))[0])


async def test_reads_writes_and_drops_heartbeats_wherever_they_arrive(
        make_driver: Callable[[dict[str, Any]], ModbusDtuDriver]) -> None:
    port = free_port()
    async with DtuSimulator("127.0.0.1", port, meter=meter(), registration=b"DTU-0001",
                            heartbeat=b"HB", heartbeat_interval=0.02) as dtu, dtu.meter:
        driver = make_driver(dtu_device("m", port, {"ascii": "DTU-0001"}))
        await driver.connect()
        identity = await driver.identity()
        assert identity is not None and "DTU ascii 'DTU-0001'" in identity
        for _ in range(5):  # heartbeats every 20 ms land between and around the answers
            values = await read_all(driver)
            assert values[100] == (volts(), Quality.GOOD)
            beats = dtu.heartbeats
            await until(lambda b=beats: dtu.heartbeats > b, "a heartbeat between two polls")
        dtu.heartbeat_inside_answers = 8
        dtu.registration_with_data = True
        values = await read_all(driver)
        assert all(q == Quality.GOOD for _, q in values.values()), values
        await driver.write(102, 321)
        assert dtu.meter.get_value("ct_ratio") == 321
        assert not driver.errors
        slot = driver.slot
        assert slot is not None and slot.stream is not None
        assert slot.stream.packets_dropped >= 8


async def test_garbage_and_half_answers_are_bad_counted_and_pass(
        make_driver: Callable[[dict[str, Any]], ModbusDtuDriver]) -> None:
    port = free_port()
    async with DtuSimulator("127.0.0.1", port, meter=meter(), heartbeat_interval=60) as dtu, \
            dtu.meter:
        driver = make_driver(dtu_device("m", port, {"ascii": "DTU-0001"}))
        await driver.connect()
        dtu.garbage_before_answers = 4
        values = await read_all(driver)
        assert all(q == Quality.GOOD for _, q in values.values())  # garbage skipped
        dtu.half_answers = 1
        values = await read_all(driver)
        bad = [tag for tag, (_, q) in values.items() if q == Quality.BAD]
        assert len(bad) == 1
        assert driver.errors["garbled"] == 1  # bytes came, no whole answer
        assert all(q == Quality.GOOD for _, q in (await read_all(driver)).values())


async def test_a_pattern_identifies_the_dtu_and_two_dtus_share_a_port(
        make_driver: Callable[[dict[str, Any]], ModbusDtuDriver]) -> None:
    port = free_port()
    second = ModbusMeterSimulator(WaveformMeter(WaveformParams(t0=T0 - 30)), clock=lambda: AT,
                                  transport="rtu_over_tcp")
    async with (DtuSimulator("127.0.0.1", port, meter=meter(),
                             registration=b"USR-G780 ID:0001 CSQ:23") as one, one.meter,
                DtuSimulator("127.0.0.1", port, meter=second, registration=b"DTU-0002")
                as two, two.meter):
        first = make_driver(dtu_device("line-1", port, {"pattern": r"ID:0001\b"}))
        other = make_driver(dtu_device("line-2", port, {"ascii": "DTU-0002"}))
        await asyncio.gather(first.connect(), other.connect())
        assert (await read_all(first))[100] == (volts(), Quality.GOOD)
        expected = waveform_reading(AT, WaveformParams(t0=T0 - 30)).voltage_v
        assert (await read_all(other))[100][0] == pytest.approx(expected, abs=1e-4)
        await first.write(102, 7)
        assert one.meter.get_value("ct_ratio") == 7 and two.meter.get_value("ct_ratio") == 100


async def test_a_redial_replaces_the_half_open_connection(
        make_driver: Callable[[dict[str, Any]], ModbusDtuDriver],
        listen_ports: ListenPorts) -> None:
    port = free_port()
    async with DtuSimulator("127.0.0.1", port, meter=meter()) as dtu, dtu.meter:
        driver = make_driver(dtu_device("m", port, {"ascii": "DTU-0001"}))
        await driver.connect()
        assert await read_all(driver)
        dtu.redial(leave_old_open=True)  # the 4G link dropped: the old socket stays open
        await until(lambda: dtu.connections == 2 and dtu.online.is_set(), "the DTU redialled")
        await until(lambda: lost(driver), "the driver lost the replaced connection")
        await driver.close()  # the device runner closes and connects again after a backoff
        await driver.connect()
        assert all(q == Quality.GOOD for _, q in (await read_all(driver)).values())
        slot = driver.slot
        assert slot is not None and slot.registrations == 2
        listener = listen_ports._ports[port].listener
        assert listener.counts.replaced == 1  # type: ignore[attr-defined]  # a DtuListener


async def test_a_dtu_that_hung_up_is_found_again_after_the_driver_reconnects(
        make_driver: Callable[[dict[str, Any]], ModbusDtuDriver]) -> None:
    port = free_port()
    async with DtuSimulator("127.0.0.1", port, meter=meter(), redial_delay=0.1) as dtu, \
            dtu.meter:
        driver = make_driver(dtu_device("m", port, {"ascii": "DTU-0001"}))
        await driver.connect()
        dtu.hang_up()
        await until(lambda: lost(driver), "the driver lost the connection the DTU closed")
        await driver.close()
        await until(lambda: dtu.connections == 2 and dtu.online.is_set(), "the DTU redialled")
        await driver.connect()  # the port lingered: the new connection was kept for it
        assert all(q == Quality.GOOD for _, q in (await read_all(driver)).values())


async def test_an_unknown_dtu_is_refused_and_logged_once(
        make_driver: Callable[[dict[str, Any]], ModbusDtuDriver], listen_ports: ListenPorts,
        caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    driver = make_driver(dtu_device("m", port, {"ascii": "DTU-0001"}, register_timeout="1s",
                                    dial_in_timeout="200ms"))
    with pytest.raises(DeviceUnreachable):
        await driver.connect()  # opens the port; nobody there yet
    caplog.set_level(logging.DEBUG, logger="drivers.modbus.dtu")
    stranger = DtuSimulator("127.0.0.1", port, registration=b"DTU-9999", redial_delay=0.05)
    async with stranger:
        listener: Any = listen_ports._ports[port].listener
        await until(lambda: listener.counts.refused >= 3, "the stranger refused three times",
                    seen=lambda: listener.counts)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING
                and "DTU-9999" in r.getMessage()]
    assert len(warnings) == 1
    assert "is no configured device's" in warnings[0].getMessage()


async def test_a_dtu_that_does_not_register_is_dropped(
        make_driver: Callable[[dict[str, Any]], ModbusDtuDriver], listen_ports: ListenPorts,
        caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    driver = make_driver(dtu_device("m", port, {"ascii": "DTU-0001"}, register_timeout="300ms",
                                    dial_in_timeout="100ms"))
    with pytest.raises(DeviceUnreachable):
        await driver.connect()
    mute = DtuSimulator("127.0.0.1", port, registration=None, redial_delay=0.05)
    async with mute:
        listener: Any = listen_ports._ports[port].listener
        await until(lambda: listener.counts.unregistered >= 2, "the mute DTU dropped twice")
    assert "no registration packet within 0.3 s" in caplog.text


async def test_connect_says_which_dtu_has_not_dialled_in(
        make_driver: Callable[[dict[str, Any]], ModbusDtuDriver]) -> None:
    port = free_port()
    driver = make_driver(dtu_device("m", port, {"hex": "AA 55 01"}, dial_in_timeout="200ms"))
    assert driver.awaited_peer() == (f"the hex AA 55 01 DTU to dial in to port {port} and "
                                     "register")
    with pytest.raises(DeviceUnreachable, match=rf"DTU hex AA 55 01 has not dialled in to "
                       rf"127.0.0.1:{port} and registered within 0.2 s"):
        await driver.connect()


async def test_two_devices_expecting_one_registration_are_refused(
        make_driver: Callable[[dict[str, Any]], ModbusDtuDriver]) -> None:
    port = free_port()
    first = make_driver(dtu_device("a", port, {"ascii": "DTU-1"}, dial_in_timeout="100ms"))
    second = make_driver(dtu_device("b", port, {"ascii": "DTU-1"}, dial_in_timeout="100ms"))
    with pytest.raises(DeviceUnreachable, match="has not dialled in"):
        await first.connect()
    with pytest.raises(DeviceUnreachable, match="devices 'a' and 'b' both expect the DTU "
                       "registration packet ascii 'DTU-1'"):
        await second.connect()


async def test_a_port_in_use_is_a_readable_error(
        make_driver: Callable[[dict[str, Any]], ModbusDtuDriver]) -> None:
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = blocker.sockets[0].getsockname()[1]
    try:
        driver = make_driver(dtu_device("m", port, {"ascii": "DTU-1"}))
        with pytest.raises(DeviceUnreachable, match=f"cannot listen for DTUs on 127.0.0.1:{port}"):
            await driver.connect()
    finally:
        blocker.close()
        await blocker.wait_closed()


async def test_the_dtu_port_and_connection_show_in_the_metrics(
        make_driver: Callable[[dict[str, Any]], ModbusDtuDriver]) -> None:
    from drivers.modbus.metrics import modbus_unit_metrics

    port = free_port()
    async with DtuSimulator("127.0.0.1", port, meter=meter(), heartbeat_interval=0.02) as dtu, \
            dtu.meter:
        driver = make_driver(dtu_device("m", port, {"ascii": "DTU-0001"}))
        await driver.connect()
        dtu.heartbeat_inside_answers = 2
        for _ in range(3):
            await read_all(driver)
        families = {f.name: f for f in modbus_unit_metrics({"m": driver})}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    assert samples[("chenxing_modbus_dtu_connections_total",
                    (("outcome", "registered"), ("port", str(port))))] == 1
    assert samples[("chenxing_modbus_dtu_registrations_total", (("device", "m"),))] == 1
    assert samples[("chenxing_modbus_dtu_packets_dropped_total", (("device", "m"),))] >= 2
