"""drivers/modbus/pymodbus_adapter.py: pymodbus's errors as the project's, and the pymodbus
internals the adapter relies on (its docstring lists them), pinned against a real pymodbus
server on 127.0.0.1. The bad-frame guard is pinned in test_modbus_bad_frames.py, the
swallowed cancel in test_modbus_swallowed_cancel.py."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from modbus_sim import RawDevice, mbap_reply
from pymodbus.exceptions import ConnectionException, ModbusIOException

from drivers.modbus.pymodbus_adapter import (
    BadFrames,
    ModbusClient,
    connect,
    exchange,
    map_pymodbus_errors,
    read_request,
    read_values,
    tcp_client,
)
from gateway.errors import (
    ConnectionLost,
    DeviceUnreachable,
    RequestFailed,
    RequestRefused,
    UndecodableAnswer,
)

MEMORY = {"holding": {0: [1, 2, 0xFFFF, 40000]}}


@dataclass
class Line:
    """A connection as :func:`exchange` watches it."""

    client: ModbusClient
    lost: asyncio.Future[None]
    rx: list[int] = field(default_factory=lambda: [0])
    bad: BadFrames = field(default_factory=BadFrames)


async def open_line(port: int, timeout: float = 1.0) -> Line:
    lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    bad = BadFrames()

    def on_change(connected: bool) -> None:
        if not connected and not lost.done():
            lost.set_result(None)

    client = tcp_client("127.0.0.1", port, "probe", timeout, on_change, bad)
    await connect(client, timeout, lambda error, timed_out: f"{error!r} {timed_out}")
    return Line(client, lost, bad=bad)


async def test_connect_keeps_the_os_error_pymodbus_swallows(closed_port: int) -> None:
    """Pins pymodbus: ``connect()`` returns False on a refused connection (no exception),
    and ``ctx.call_create`` is the coroutine that raised it."""
    seen: list[tuple[BaseException | None, bool]] = []

    def describe(error: BaseException | None, timed_out: bool) -> str:
        seen.append((error, timed_out))
        return "unreachable"

    client = tcp_client("127.0.0.1", closed_port, "probe", 1.0, lambda _: None, BadFrames())
    assert callable(client.ctx.call_create)
    with pytest.raises(DeviceUnreachable, match="unreachable"):
        await connect(client, 1.0, describe)
    ((error, timed_out),) = seen
    assert isinstance(error, ConnectionRefusedError) and not timed_out
    assert await client.connect() is False  # pymodbus itself only says False


async def test_register_answers_are_numpy_arrays_decoded_by_the_registered_class(
    modbus_sim: Any,
) -> None:
    """Pins pymodbus: ``client.register`` makes the client decode FC3 with our subclass,
    whose ``decode`` gets the bytes after the function code."""
    sim = await modbus_sim(MEMORY)
    line = await open_line(sim.port)
    try:
        answer = await exchange(line, read_request("holding", 0, 4, 1), 1.0, "read", "sim")
        assert type(answer).__name__ == "_HoldingRegistersResponse"
        assert isinstance(answer.registers, np.ndarray)
        values = read_values(answer, "holding", 4, "read")
        assert values.dtype == np.uint16 and values.tolist() == [1, 2, 0xFFFF, 40000]
        with pytest.raises(RequestFailed, match="answer has 4 registers for 3 asked") as info:
            read_values(answer, "holding", 3, "read")
        assert info.value.counter == "decode"
    finally:
        line.client.close()


async def test_an_exception_answer_is_request_refused_with_its_code(modbus_sim: Any) -> None:
    sim = await modbus_sim(MEMORY)
    line = await open_line(sim.port)
    try:
        answer = await exchange(line, read_request("holding", 900, 1, 1), 1.0, "read 900",
                                "sim")
        with pytest.raises(RequestRefused, match=r"exception 2 \(illegal data address\)") as info:
            read_values(answer, "holding", 1, "read 900")
        assert (info.value.code, info.value.counter) == (2, "exception_2")
    finally:
        line.client.close()


async def test_no_answer_is_a_timeout_and_the_task_stays_usable() -> None:
    silent = RawDevice(lambda _request: b"")
    await silent.start()
    line = await open_line(silent.port)
    try:
        with pytest.raises(RequestFailed, match=r"no answer to read within 0\.1 s") as info:
            await exchange(line, read_request("holding", 0, 1, 1), 0.1, "read", "dev")
        assert info.value.counter == "timeout"
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0
    finally:
        line.client.close()
        await silent.stop()


async def test_an_undecodable_answer_closes_the_stream_as_undecodable_answer() -> None:
    garbage = RawDevice(lambda r: mbap_reply(r, bytes([3, 0xFF, 0x00, 0x01])))
    await garbage.start()
    line = await open_line(garbage.port)
    try:
        with pytest.raises(UndecodableAnswer, match="garbled answer that cannot be decoded"):
            await exchange(line, read_request("holding", 0, 1, 1), 1.0, "read", "dev")
    finally:
        line.client.close()
        await garbage.stop()


class _Client:
    def __init__(self, connected: bool) -> None:
        self.connected = connected


def _mapped(connected: bool, raised: BaseException) -> BaseException:
    """What comes out of map_pymodbus_errors when ``raised`` is raised in it."""
    try:
        with map_pymodbus_errors(_Client(connected), "read", "dev"):  # type: ignore[arg-type]
            raise raised
    except BaseException as exc:  # the test looks at whatever comes out
        return exc
    raise AssertionError("nothing raised")


REFUSED = RequestRefused("exception_2", "refused", 2)


@pytest.mark.parametrize(("connected", "raised", "expected"), [
    (True, ConnectionException("closed"), ConnectionLost("the connection to dev closed "
                                                         "during read")),
    (True, ModbusIOException("unit 3 answered"), RequestFailed("decode", "read: bad answer: "
                                                               "Modbus Error: [Input/Output] "
                                                               "unit 3 answered")),
    (False, ModbusIOException("no transport"), ConnectionLost("the connection to dev closed "
                                                              "during read")),
    (False, OSError("broken pipe"), ConnectionLost("the connection to dev closed during read")),
    (True, KeyError("x"), KeyError("x")),  # a bug stays a bug while connected
    (False, REFUSED, REFUSED),  # the project's own pass as they are
])
def test_map_pymodbus_errors_translates_into_the_projects_errors(
    connected: bool, raised: BaseException, expected: BaseException
) -> None:
    """Pure logic: which pymodbus exception becomes which of the project's."""
    out = _mapped(connected, raised)
    assert type(out) is type(expected) and str(out) == str(expected)
    if isinstance(expected, RequestFailed):
        assert isinstance(out, RequestFailed) and out.counter == expected.counter
    if expected is REFUSED:
        assert out is REFUSED
