"""The simulated meter on Modbus RTU over a pty line, read by the gateway's RTU driver."""

from __future__ import annotations

import math

from drivers.modbus.config import ModbusRtuDeviceConfig
from drivers.modbus.driver import ModbusRtuDriver
from gateway.types import Quality
from hil.devices.modbus_meter import ModbusMeterSimulator
from hil.process.energy_meter import WaveformMeter, WaveformParams


def meter_device(path: str, **extra: object) -> ModbusRtuDeviceConfig:
    return ModbusRtuDeviceConfig.model_validate(
        {
            "name": "meter",
            "protocol": "modbus_rtu",
            "port": path,
            "baudrate": 19200,
            "timeout": 0.3,
            "retries": 0,
            "tags": [
                {"name": "voltage", "table": "input", "address": 0, "type": "float32"},
                {"name": "ct_ratio", "table": "holding", "address": 100, "type": "uint16"},
            ],
            **extra,
        }
    )


async def test_meter_on_rtu_serves_the_register_map_and_line_faults() -> None:
    import time

    model = WaveformMeter(WaveformParams(t0=time.time()))
    async with ModbusMeterSimulator(model, rtu=True) as sim:
        assert sim.address == sim.serial_path and sim.serial_path.startswith("/dev/")
        driver = ModbusRtuDriver(meter_device(sim.serial_path), [0, 1])
        try:
            await driver.connect()
            (group,) = driver.poll_groups()
            batch = await driver.read(group)
            assert batch.quality.tolist() == [Quality.GOOD] * 2
            value = dict(zip(batch.tag_ids.tolist(), batch.values.tolist(), strict=True))
            assert 219 < value[0] < 241 and value[1] == 100.0

            sim.garble_answers(1)  # the first request of the poll: ct_ratio (holding)
            batch = await driver.read(group)
            assert batch.quality.tolist() == [Quality.BAD, Quality.GOOD]
            assert math.isnan(batch.values[0])
            assert driver.errors["garbled"] == 1
            sim.inject_garbage(32)
            batch = await driver.read(group)
            assert batch.quality.tolist() == [Quality.GOOD] * 2
        finally:
            await driver.close()


async def test_meter_on_rtu_is_silent_for_other_unit_ids() -> None:
    async with ModbusMeterSimulator(rtu=True) as sim:
        driver = ModbusRtuDriver(meter_device(sim.serial_path, unit_id=7), [0, 1])
        try:
            await driver.connect()
            (group,) = driver.poll_groups()
            batch = await driver.read(group)
            assert (batch.quality == Quality.BAD).all()
            assert driver.errors["timeout"] == 2 and "exception_11" not in driver.errors
        finally:
            await driver.close()
