"""Own a node's serial port without a running gateway (CLI, benches, HIL scenarios).

:func:`node_session` connects a :class:`~firmware_bridge.driver.McuNodeDriver`,
keeps its subscription running (reconnecting after a lost link, as the gateway's
device runner does) and yields the connected driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from drivers.base import Emit
from firmware_bridge.config import McuNodeDeviceConfig
from firmware_bridge.driver import McuNodeDriver
from gateway.errors import ConnectionLost, DeviceUnreachable
from gateway.types import SampleBatch

log = logging.getLogger(__name__)

RECONNECT_DELAY = 0.3


def _discard(batch: SampleBatch) -> None:
    """Readings arriving while only the firmware matters."""


@contextlib.asynccontextmanager
async def node_session(config: McuNodeDeviceConfig, emit: Emit = _discard,
                       connect_timeout: float = 10.0) -> AsyncIterator[McuNodeDriver]:
    """The node's driver, connected; DeviceUnreachable when it does not say HELLO in time."""
    driver = McuNodeDriver(config, list(range(len(config.tags))))
    deadline = asyncio.get_running_loop().time() + connect_timeout
    while True:
        try:
            await driver.connect()
            break
        except DeviceUnreachable:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(RECONNECT_DELAY)
    task = asyncio.create_task(_keep_connected(driver, emit), name=f"node-{config.name}")
    try:
        yield driver
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await driver.close()


async def _keep_connected(driver: McuNodeDriver, emit: Emit) -> None:
    while True:
        try:
            if not driver.connected:
                await driver.connect()
            await driver.subscribe(emit)
        except (ConnectionLost, DeviceUnreachable) as exc:
            log.info("%s: %s; reconnecting", driver.device_name, exc)
            await driver.close()
            await asyncio.sleep(RECONNECT_DELAY)
