"""Own a node's serial port without a running gateway (CLI, benches, HIL scenarios).

:func:`node_session` runs the node's :class:`~firmware_bridge.driver.McuNodeDriver`
under the gateway's own :class:`~gateway.runtime.device_runner.DeviceRunner`, so a
session reconnects after a lost link (with backoff), marks the tags while the
node is away and restarts after a crash exactly as the gateway does, and yields
the driver once it is connected. (After a crash, a bug, the runner builds a new
driver, as the gateway's does; the one yielded is then closed.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from drivers.base import Emit
from firmware_bridge.config import McuNodeDeviceConfig
from firmware_bridge.driver import McuNodeDriver
from gateway.backoff import Backoff
from gateway.errors import DeviceUnreachable
from gateway.runtime.device_runner import DeviceRunner, DeviceState
from gateway.serial_ports import SerialPorts
from gateway.types import SampleBatch

#: reconnect delays of a session (someone waits at a terminal: short, never minutes)
RECONNECT_DELAY = 0.3
RECONNECT_MAX = 2.0


def _discard(batch: SampleBatch) -> None:
    """Readings arriving while only the firmware matters."""


@contextlib.asynccontextmanager
async def node_session(config: McuNodeDeviceConfig, emit: Emit = _discard,
                       connect_timeout: float = 10.0,
                       ports: SerialPorts | None = None) -> AsyncIterator[McuNodeDriver]:
    """The node's driver, connected; DeviceUnreachable when it is not up within
    ``connect_timeout`` (with the last reason it could not connect).

    ``ports``: the serial ports the session claims the node's port in (ports of its own
    when not given).
    """
    ports = ports if ports is not None else SerialPorts()
    tag_ids = list(range(len(config.tags)))
    up = asyncio.Event()

    def on_state(_device: str, state: DeviceState) -> None:
        if state is DeviceState.UP:
            up.set()
        else:
            up.clear()

    runner = DeviceRunner(
        config.name,
        lambda: McuNodeDriver(config, tag_ids, ports),
        emit,
        on_state,
        reconnect=Backoff(initial=RECONNECT_DELAY, maximum=RECONNECT_MAX),
    )
    task = asyncio.create_task(runner.run(), name=f"node-{config.name}")
    try:
        try:
            async with asyncio.timeout(connect_timeout):
                await up.wait()
        except TimeoutError:
            reason = runner.stats.last_error or f"not connected within {connect_timeout:g} s"
            raise DeviceUnreachable(reason) from None
        driver = runner.driver
        assert isinstance(driver, McuNodeDriver)
        yield driver
    finally:
        task.cancel()
        await asyncio.wait([task])  # the runner closes the driver on its way out
