"""Polling a Modbus driver in tests: every group once, by tag id; a poll that finds the
connection gone."""

from __future__ import annotations

from drivers.modbus.driver import ModbusDriver
from gateway.errors import ConnectionLost


async def read_all(driver: ModbusDriver) -> dict[int, tuple[float, int]]:
    """One poll of every group: tag id -> (raw value, quality)."""
    out: dict[int, tuple[float, int]] = {}
    for group in driver.poll_groups():
        batch = await driver.read(group)
        for tag_id, value, quality in zip(batch.tag_ids, batch.values, batch.quality,
                                          strict=True):
            out[int(tag_id)] = (float(value), int(quality))
    return out


async def lost(driver: ModbusDriver) -> bool:
    """One poll; True when it found the connection gone."""
    try:
        await read_all(driver)
    except ConnectionLost:
        return True
    return False
