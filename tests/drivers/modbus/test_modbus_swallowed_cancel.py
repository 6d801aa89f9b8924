"""The per-request deadline cancels the polling task; pymodbus may catch that CancelledError
and answer with its own error. The driver must then count a timeout and take its cancel
request back: a leftover ``Task.cancelling()`` count turns the next ``asyncio.timeout`` in
the device runner into a cancellation, which stopped the device for good (seen in the
meter-exceptions HIL scenario)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from pymodbus.exceptions import ModbusIOException

from drivers.modbus.driver import ModbusTcpDriver
from gateway.errors import RequestFailed

MEMORY = {"holding": {0: [1, 2]}}
TAGS = [{"name": "a", "table": "holding", "address": 0, "type": "uint16"}]


def device(port: int) -> dict[str, Any]:
    return {"name": "meter-1", "protocol": "modbus_tcp", "host": "127.0.0.1", "port": port,
            "timeout": 0.1, "tags": TAGS}


async def swallows_the_cancel(_client: Any) -> Any:
    try:
        await asyncio.sleep(5)  # a request that outlasts the deadline: cancelled, never waited
    except asyncio.CancelledError:  # what pymodbus does in places: its own error instead
        raise ModbusIOException("request cancelled") from None


async def returns_after_the_cancel(client: Any) -> Any:
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(5)  # a request that outlasts the deadline: cancelled, never waited
    return await client.read_holding_registers(0, count=1, device_id=1)


@pytest.mark.parametrize("request_fn", [swallows_the_cancel, returns_after_the_cancel])
async def test_a_swallowed_deadline_cancel_leaves_the_task_usable(
    request_fn: Callable[[Any], Any], modbus_sim: Any, make_driver: Any
) -> None:
    sim = await modbus_sim(MEMORY)
    driver: ModbusTcpDriver = make_driver(device(sim.port))
    await driver.connect()
    task = asyncio.current_task()
    assert task is not None
    if request_fn is swallows_the_cancel:
        with pytest.raises(RequestFailed) as failed:
            await driver._call("read probe", request_fn, 1)
        assert failed.value.counter == "timeout"
    else:
        response = await driver._call("read probe", request_fn, 1)
        assert response.registers == [1]
    assert task.cancelling() == 0
    # a timeout after it is a timeout, not a cancellation of the task
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await asyncio.sleep(1)  # outlasts the timeout: cancelled, never waited
