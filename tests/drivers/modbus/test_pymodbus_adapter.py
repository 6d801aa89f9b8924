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


async def test_a_connected_client_has_no_request_timer_of_pymodbus_s_own(
    modbus_sim: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pins pymodbus: ``ctx.comm_params.timeout_connect`` is the timeout of the
    ``asyncio.wait_for`` around each answer; after :func:`connect` it is None, so that a
    request arms no timer of pymodbus's (exchange's deadline is the only one)."""
    sim = await modbus_sim(MEMORY)
    line = await open_line(sim.port)
    timeouts: list[float | None] = []
    wait_for = asyncio.wait_for

    def watched(awaitable: Any, timeout: float | None) -> Any:
        timeouts.append(timeout)
        return wait_for(awaitable, timeout)

    monkeypatch.setattr(asyncio, "wait_for", watched)
    try:
        answer = await exchange(line, read_request("holding", 0, 4, 1), 1.0, "read", "sim")
        assert read_values(answer, "holding", 4, "read").tolist() == [1, 2, 0xFFFF, 40000]
        assert timeouts == [None]
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


# -- the stream client: pymodbus's requests and answers over the project's RTU stream ------


class _Recorder:
    """An RtuTransport that answers each request with a canned frame and keeps the requests."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = answers
        self.requests: list[tuple[bytes, Any]] = []
        self.open = True

    def close(self) -> None:
        self.open = False

    async def transact(self, request: bytes, expect: Any) -> bytes:
        self.requests.append((request, expect))
        return self.answers.pop(0)


async def test_stream_client_runs_pymodbus_requests_through_execute() -> None:
    """Pins pymodbus: ``ModbusClientMixin``'s read and write methods build the request PDU
    and hand it to ``execute(no_response_expected, pdu)``; ``DecodePDU(is_server=False)``
    decodes an answer's PDU with a class given to ``register``; the frames are RTU."""
    from drivers.modbus.pymodbus_adapter import stream_client
    from drivers.modbus.rtu_framing import Expect, rtu_frame

    transport = _Recorder([rtu_frame(1, bytes.fromhex("0404000A0014")),
                           rtu_frame(1, bytes.fromhex("0600640002")),
                           rtu_frame(1, bytes.fromhex("8402"))])
    client = stream_client(transport)
    assert client.connected
    answer = await client.read_input_registers(3, count=2, device_id=1)
    assert isinstance(answer.registers, np.ndarray)  # the array class was registered
    assert read_values(answer, "input", 2, "read").tolist() == [10, 20]
    request, expect = transport.requests[0]
    assert request == rtu_frame(1, bytes.fromhex("0400030002"))
    assert expect == Expect(1, 4, 4)
    await client.write_register(100, 2, device_id=1)
    assert transport.requests[1][0] == rtu_frame(1, bytes.fromhex("0600640002"))
    refused = await client.read_input_registers(0, count=1, device_id=1)
    with pytest.raises(RequestRefused, match="exception 2"):
        read_values(refused, "input", 1, "read")
    client.close()
    assert not client.connected


async def test_stream_client_refuses_an_answer_pymodbus_cannot_decode() -> None:
    from drivers.modbus.pymodbus_adapter import stream_client
    from drivers.modbus.rtu_framing import rtu_frame

    client = stream_client(_Recorder([rtu_frame(1, bytes.fromhex("0403000A00"))]))  # odd count
    with pytest.raises(ModbusIOException, match="cannot decode the answer"):
        await client.read_input_registers(0, count=1, device_id=1)


async def test_udp_and_ascii_clients_have_the_guarded_callback() -> None:
    """Pins pymodbus: the UDP and the serial ASCII clients have ``ctx.callback_data`` (the
    bad-frame guard wraps it) and take the ASCII framer."""
    from drivers.modbus.pymodbus_adapter import serial_client, udp_client
    from gateway.serial_ports import LineSettings

    udp = udp_client("127.0.0.1", 5020, "probe", 1.0, lambda _: None, BadFrames())
    assert udp.ctx.callback_data.__name__ == "callback_data"
    assert udp.ctx.callback_data.__qualname__.startswith("_guard_client")
    ascii_client = serial_client("/dev/null", LineSettings(9600), "probe", 1.0,
                                 lambda _: None, BadFrames(), lambda _: None, "ascii")
    assert type(ascii_client.ctx.framer).__name__ == "FramerAscii"
    assert ascii_client.ctx.callback_data.__qualname__.startswith("_guard_client")
