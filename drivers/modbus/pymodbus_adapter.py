"""pymodbus behind one module: the only place the project reaches pymodbus.

What the Modbus drivers (and ``chenxing-gateway scan``) get from here, in the project's
words and errors (:mod:`gateway.errors`):

- clients: :func:`tcp_client`, :func:`udp_client` and :func:`serial_client` (RTU or
  ASCII framing) build pymodbus's asyncio clients that never reconnect or retry on their
  own (the device runner owns the connection's life), with pymodbus's own timeout a
  backstop :data:`BACKSTOP_SECONDS` longer than the driver's for the connect, and none
  for requests once connected (:func:`exchange` times each); :func:`connect` opens one
  within the driver's timeout or raises :class:`DeviceUnreachable` with the reason
  pymodbus logged and swallowed (also pyserial's ``termios.error`` for line settings a
  port refuses); :func:`stream_client` runs pymodbus's requests and answers as RTU frames
  over a connection of the project's own (:class:`StreamClient`: a serial device
  server's, or one a 4G DTU dialled in on), and :class:`MbapClient` as Modbus TCP frames
  over the Modbus TCP driver's own connection (``drivers/modbus/tcp_link.py``), whose
  register reads need no pymodbus but the request bytes :func:`request_pdu` prepares;
- requests: :func:`read_request`, :func:`write_coil_request`,
  :func:`write_registers_request` build one request; :func:`exchange` runs it against
  the driver's timeout and the connection dropping, whichever is first;
  :func:`read_values` and :func:`check_write_answer` read the answer;
- errors: :func:`map_pymodbus_errors` turns pymodbus's exceptions into the project's
  (a closed connection is :class:`ConnectionLost`, an answer pymodbus refused is
  :class:`RequestFailed` ``decode``), and an exception response is
  :class:`RequestRefused` (``exception_<code>``, :data:`EXCEPTION_NAMES`). What
  :func:`exchange` raises: :class:`RequestFailed` (``timeout``: no answer in time;
  ``garbled``: bytes that are no frame, or a frame that fails its check; ``decode``:
  an answer that is not the one asked for), :class:`RequestRefused`,
  :class:`ConnectionLost` (:class:`UndecodableAnswer` when a TCP stream was closed after
  an answer pymodbus could not decode), or :class:`asyncio.CancelledError` when the task
  was cancelled from outside;
- what needs no pymodbus (requests and their bytes, answers read, :class:`BadFrames`,
  :func:`unanswered`) is in :mod:`drivers.modbus.requests`, re-exported here: a Modbus TCP
  gateway imports this module (and pymodbus) only when a device first needs it;
- bad frames: :class:`BadFrames` counts, per connection or bus, the frames pymodbus could
  not decode, caught where pymodbus raises them; :class:`PymodbusLogFilter` thins
  pymodbus's log lines about them (the first of each kind, then counted summaries).

Bad frames. A hostile or broken device can answer every request with bytes pymodbus
cannot decode. pymodbus then raises out of its protocol's ``data_received``; asyncio logs
that as "Fatal error: protocol.data_received() call failed" with a traceback (one per
frame) and closes the connection. The guard catches the error in pymodbus's
``callback_data`` instead: the frame is recorded for the driver (a ``garbled`` answer of
its unit), and a TCP connection is closed without the traceback, its stream being out of
step; on a serial bus the bytes are dropped and the port stays open. Bytes on TCP that
are no Modbus TCP frame at all (a protocol id other than 0) are dropped and recorded too,
before pymodbus logs an ERROR with the frames in hex for each of them; the request then
ends as ``garbled``, not as a timeout. pymodbus also logs a line per bad frame itself
(``Invalid Modbus protocol id: 39161``, ``Unable to decode frame ...``): the filter lets
the first line of each kind through (kinds differ in words, not in numbers), then counts,
and at most once a minute turns the next such line into a summary
(gateway/repeated_log.py).

Reliance on pymodbus beyond its documented API (pymodbus >= 3.10, pinned below 4), each
pinned by a test:

- a client's ``ctx`` (its transaction manager, an asyncio protocol): ``callback_data(data,
  addr)`` is called by ``datagram_received`` with the bytes received and returns the
  bytes it used, and ``ctx.transport`` can be aborted (the bad-frame guard);
  tests/drivers/modbus/test_modbus_bad_frames.py;
- a client's ``ctx.comm_params.timeout_connect`` is the timeout of pymodbus's
  ``asyncio.wait_for`` around each request's answer: :func:`connect` sets it to None once
  connected, so that a request costs no second timer, future and callbacks (about 10 µs
  a request; :func:`exchange`'s deadline is the one that ends it);
  tests/drivers/modbus/test_pymodbus_adapter.py;
- ``ctx.call_create()`` is the coroutine that opens the connection, whose OSError
  ``connect()`` logs and turns into False (:func:`connect` keeps it for the reason);
  tests/drivers/modbus/test_pymodbus_adapter.py;
- FC3/FC4 answers are decoded by ``ReadHoldingRegistersResponse.decode`` /
  ``ReadInputRegistersResponse.decode`` from the bytes after the function code, and
  ``client.register`` makes a client decode with a subclass: ours take the registers as
  one NumPy view of the frame (pymodbus unpacks each register with ``struct`` and formats
  the whole response for a debug line, about a sixth of the client's CPU per
  125-register request); tests/drivers/modbus/test_pymodbus_adapter.py;
- pymodbus writes its log lines to the ``pymodbus.logging`` logger, and says
  ``Repeating....`` for the same text again; test_modbus_bad_frames.py;
- pymodbus sometimes catches the CancelledError of a request (e.g. in its transport's
  ``send``) and raises its own error or returns instead: :func:`exchange` then takes its
  cancel request back (``Task.uncancel``) and reports the timeout, or a leftover
  ``cancelling()`` count turns the next ``asyncio.timeout`` of the device runner into a
  cancellation that stops the device for good; test_modbus_swallowed_cancel.py;
- a client's ``execute`` connects again when it has no transport: :func:`exchange` checks
  ``connected`` in the step in which pymodbus sends, so that it never does;
  test_modbus_driver.py (a lost connection stays lost);
- :class:`StreamClient`, :class:`MbapClient` and :func:`request_pdu`: ``ModbusClientMixin``'s
  read and write methods build the request PDU and call ``execute(no_response_expected,
  pdu)``; a PDU's ``encode()`` is its data
  after the function code; ``DecodePDU(is_server=False).decode`` takes the bytes from the
  function code on and uses a class given to ``register`` (None for what it cannot
  decode); test_pymodbus_adapter.py, test_modbus_tcp_link.py;
- the UDP client and the serial client with ``FramerType.ASCII`` have the ``ctx``
  and ``callback_data`` of the TCP client (the guard); test_pymodbus_adapter.py.
"""

from __future__ import annotations

import asyncio
import termios
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias

import numpy as np
from pymodbus.client import (
    AsyncModbusSerialClient,
    AsyncModbusTcpClient,
    AsyncModbusUdpClient,
    ModbusBaseClient,
)
from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import DecodePDU, ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
)

from drivers.modbus.requests import (
    EXCEPTION_NAMES,
    BadFrames,
    Counted,
    check_write_answer,
    read_request,
    read_values,
    unanswered,
    write_coil_request,
    write_registers_request,
)
from drivers.modbus.rtu_framing import Expect, rtu_frame
from gateway.errors import (
    ConnectionLost,
    DeviceUnreachable,
    GatewayError,
    RequestFailed,
)
from gateway.repeated_log import LibraryLogFilter, install_library_filter
from gateway.serial_ports import LineSettings

if TYPE_CHECKING:
    from drivers.modbus.tcp_link import MbapDeviceClient

__all__ = [
    "BACKSTOP_SECONDS",
    "EXCEPTION_NAMES",
    "PYMODBUS_LOGGER",
    "Answer",
    "BadFrames",
    "Counted",
    "MbapClient",
    "MbapTransport",
    "ModbusClient",
    "PymodbusClient",
    "PymodbusLogFilter",
    "Request",
    "RtuTransport",
    "StreamClient",
    "check_write_answer",
    "connect",
    "exchange",
    "install_log_filter",
    "map_pymodbus_errors",
    "read_request",
    "read_values",
    "request_pdu",
    "serial_client",
    "stream_client",
    "tcp_client",
    "udp_client",
    "unanswered",
    "write_coil_request",
    "write_registers_request",
]

#: a pymodbus client of its own transport (TCP, UDP, serial)
PymodbusClient = ModbusBaseClient
#: what a request runs on: a pymodbus client, or a :class:`StreamClient`
ModbusClient: TypeAlias = "ModbusBaseClient | StreamClient | MbapClient | MbapDeviceClient"
#: one answer as pymodbus gives it (read it with :func:`read_values` / :func:`check_write_answer`)
Answer = ModbusPDU
#: one request: sends on the client it is given and returns the answer
Request = Callable[[ModbusClient], Awaitable[Answer]]
Table = Literal["coil", "discrete", "holding", "input"]
#: framing of a serial line
SerialFraming = Literal["rtu", "ascii"]
_SERIAL_FRAMERS = {"rtu": FramerType.RTU, "ascii": FramerType.ASCII}

#: pymodbus's own request timeout is ours plus this, so that ours always fires first
BACKSTOP_SECONDS = 1.0


# -- errors ------------------------------------------------------------------------------


@contextmanager
def map_pymodbus_errors(client: ModbusClient, what: str, where: str) -> Iterator[None]:
    """pymodbus's exceptions raised in the block as the project's.

    ``ConnectionException``, and any error while the client is disconnected, is
    :class:`ConnectionLost`; another ``ModbusException`` means an answer came but
    pymodbus refused it (e.g. another unit id than asked): :class:`RequestFailed`
    ``decode``. The project's own errors pass as they are, and so does anything else
    while the client is connected (a bug, to be seen as it is). ``what`` names the
    request (``read holding 0..9``), ``where`` the device (``host:port``, the serial port).
    """
    try:
        yield
    except Exception as exc:
        failure = _translated(exc, client, what, where)
        if failure is exc:
            raise
        raise failure from failure.__cause__


def _translated(exc: Exception, client: ModbusClient, what: str, where: str) -> Exception:
    """:func:`map_pymodbus_errors` as a function (no context manager on the hot path):
    the project's error for ``exc``, or ``exc`` itself; the error's ``__cause__`` is what
    to chain it to."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, ConnectionException) or not client.connected:
        return ConnectionLost(f"the connection to {where} closed during {what}")
    if isinstance(exc, ModbusException):
        failure = RequestFailed("decode", f"{what}: bad answer: {exc}")
        failure.__cause__ = exc
        return failure
    return exc


# -- clients -----------------------------------------------------------------------------


def tcp_client(host: str, port: int, name: str, timeout: float,
               on_connect_change: Callable[[bool], None], bad: BadFrames) -> ModbusBaseClient:
    """A Modbus TCP client that never reconnects nor retries on its own, decoding register
    answers into NumPy arrays and counting undecodable frames in ``bad``."""
    client = AsyncModbusTcpClient(host, port=port, name=name, timeout=timeout + BACKSTOP_SECONDS,
                                  retries=0, reconnect_delay=0, trace_connect=on_connect_change)
    _use_array_responses(client)
    _guard_client(client, bad, mbap=True, abort=True)
    return client


def udp_client(host: str, port: int, name: str, timeout: float,
               on_connect_change: Callable[[bool], None], bad: BadFrames) -> ModbusBaseClient:
    """A Modbus UDP client (MBAP frames in datagrams), like :func:`tcp_client`; a datagram
    that is no frame is dropped (nothing to get out of step: each datagram stands alone)."""
    client = AsyncModbusUdpClient(host, port=port, name=name, timeout=timeout + BACKSTOP_SECONDS,
                                  retries=0, reconnect_delay=0, trace_connect=on_connect_change)
    _use_array_responses(client)
    _guard_client(client, bad, mbap=True, abort=False)
    return client


def serial_client(port: str, line: LineSettings, name: str, timeout: float,
                  on_connect_change: Callable[[bool], None], bad: BadFrames,
                  on_bytes: Callable[[int], None], framing: SerialFraming = "rtu"
                  ) -> ModbusBaseClient:
    """A Modbus RTU (or ``framing="ascii"``: ASCII) client on ``port`` (``line``: baud rate,
    byte size, parity, stop bits), like :func:`tcp_client`; ``on_bytes`` is told how many
    bytes came in, so that a timeout with bytes is a garbled answer. An undecodable frame is
    dropped, the port stays open."""

    def count_bytes(sending: bool, data: bytes) -> bytes:
        if not sending:
            on_bytes(len(data))
        return data

    baudrate, bytesize, parity, stopbits = line
    client = AsyncModbusSerialClient(
        port, framer=_SERIAL_FRAMERS[framing], baudrate=baudrate, bytesize=bytesize,
        parity=parity, stopbits=int(stopbits), name=name, timeout=timeout + BACKSTOP_SECONDS,
        retries=0, reconnect_delay=0, trace_packet=count_bytes, trace_connect=on_connect_change,
    )
    _use_array_responses(client)
    _guard_client(client, bad, mbap=False, abort=False)
    return client


async def connect(client: ModbusBaseClient, timeout: float,
                  describe: Callable[[BaseException | None, bool], str],
                  ready: asyncio.Event | None = None) -> None:
    """Open ``client`` within ``timeout`` s (and wait for ``ready`` when given: a serial
    transport is set up a loop step after ``connect`` returns). On failure the client is
    closed and :class:`DeviceUnreachable` raised with ``describe(error, timed_out)``:
    ``error`` is the OSError (or ValueError: a host name IDNA cannot encode) that pymodbus
    logged and swallowed, the first thing an engineer needs."""
    errors: list[BaseException] = []
    restore = _record_connect_errors(client, errors)
    timed_out = False
    try:
        async with asyncio.timeout(timeout):
            ok = await client.connect()
            if ok and ready is not None:
                await ready.wait()
    except TimeoutError:
        ok, timed_out = False, True
    except (OSError, ValueError) as exc:
        ok = False
        errors.append(exc)
    except termios.error as exc:  # pyserial: a port that refuses the line settings
        ok = False
        errors.append(_line_settings_refused(exc))
    except BaseException:  # cancelled: leave no half-open client behind
        client.close()
        raise
    finally:
        restore()
    if not ok or not client.connected:
        client.close()
        raise DeviceUnreachable(describe(errors[-1] if errors else None, timed_out))
    # connected: the requests are timed by exchange's deadline alone (module docstring)
    client.ctx.comm_params.timeout_connect = None  # type: ignore[assignment]  # None: asyncio.wait_for without a timer


def _line_settings_refused(exc: termios.error) -> OSError:
    """pyserial's ``termios.error`` (no OSError) for settings the port cannot take."""
    code, text = (*exc.args, 0, "")[:2]
    return OSError(code, f"{text or 'refused'} (the port refuses these line settings; a "
                         "pseudo-terminal takes 8N1 only)")


def _record_connect_errors(client: ModbusClient, errors: list[BaseException]
                           ) -> Callable[[], None]:
    """Keep in ``errors`` the errors of ``client``'s connection attempt by wrapping
    pymodbus's connection factory (``ctx.call_create``), which keeps pymodbus's own
    connect path; returns the function that puts the factory back."""
    ctx: Any = getattr(client, "ctx", None)
    create = getattr(ctx, "call_create", None)
    if create is None:
        return lambda: None

    async def create_recording() -> object:
        try:
            return await create()
        except (OSError, ValueError) as exc:
            errors.append(exc)
            raise
        except termios.error as exc:
            errors.append(_line_settings_refused(exc))
            raise

    def restore() -> None:
        ctx.call_create = create

    ctx.call_create = create_recording
    return restore


# -- Modbus RTU over a stream of the project's own -----------------------------------------


class RtuTransport(Protocol):
    """A connection carrying RTU frames (:class:`drivers.modbus.rtu_stream.RtuStream`)."""

    @property
    def open(self) -> bool: ...

    def close(self) -> None: ...

    async def transact(self, request: bytes, expect: Expect) -> bytes: ...


class StreamClient(ModbusClientMixin[Awaitable[ModbusPDU]]):
    """pymodbus's requests and answers (its PDUs, encoded and decoded by pymodbus) as
    Modbus RTU frames over an :class:`RtuTransport`: a serial device server's or a DTU's
    TCP connection, whose framing (CRC, the DTU's packets in the stream, garbage) is the
    project's own (:mod:`drivers.modbus.rtu_framing`). pymodbus's RTU framer on a TCP
    client drops the whole buffer at a CRC error and knows no DTU packets; its clients
    cannot use a connection the gateway accepted. The read and write methods are
    pymodbus's (``ModbusClientMixin``): they build the request and call :meth:`execute`."""

    def __init__(self, transport: RtuTransport) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # pymodbus's mixin has an untyped __init__
        self._transport = transport
        self._decoder = DecodePDU(is_server=False)

    @property
    def connected(self) -> bool:
        return self._transport.open

    def close(self) -> None:
        self._transport.close()

    def register(self, custom_response_class: type[ModbusPDU]) -> None:
        self._decoder.register(custom_response_class)

    def execute(self, no_response_expected: bool, request: ModbusPDU) -> Awaitable[ModbusPDU]:
        return self._exchange(request)

    async def _exchange(self, request: ModbusPDU) -> ModbusPDU:
        function = request.function_code
        frame = rtu_frame(request.dev_id, bytes((function,)) + request.encode())
        expect = Expect(request.dev_id, function, _byte_count(request))
        answer = await self._transport.transact(frame, expect)
        pdu = self._decoder.decode(answer[1:-2])
        if pdu is None:
            raise ModbusIOException(f"cannot decode the answer {answer.hex(' ')}",
                                    function_code=function)
        pdu.dev_id = answer[0]
        return pdu


def _byte_count(request: ModbusPDU) -> int | None:
    """Data bytes of the answer to a read (the request says how many registers or bits)."""
    if request.function_code in (1, 2):
        return -(-request.count // 8)
    if request.function_code in (3, 4):
        return 2 * request.count
    return None


def stream_client(transport: RtuTransport) -> StreamClient:
    """A :class:`StreamClient` on ``transport``, decoding register answers into NumPy
    arrays like the other clients."""
    client = StreamClient(transport)
    _use_array_responses(client)
    install_log_filter()
    return client


# -- pymodbus's PDUs over a Modbus TCP connection of the project's own ---------------------


class MbapTransport(Protocol):
    """A Modbus TCP connection (:class:`drivers.modbus.tcp_link.MbapConnection`)."""

    @property
    def connected(self) -> bool: ...

    def close(self) -> None: ...

    async def send(self, unit: int, pdu: bytes, timeout: float | None) -> bytes | None: ...

    def undecodable(self, reason: str) -> None: ...


class MbapClient(ModbusClientMixin[Awaitable[ModbusPDU]]):
    """pymodbus's requests and answers (its PDUs) over a Modbus TCP connection of the
    project's own (:class:`MbapTransport`: the MBAP framing, the transaction ids). The read
    and write methods are pymodbus's (``ModbusClientMixin``); they build the request and
    call :meth:`execute`, which :func:`exchange` times. An answer pymodbus cannot decode
    closes the connection (:meth:`MbapTransport.undecodable`): :func:`exchange` raises
    :class:`UndecodableAnswer`, as for pymodbus's own TCP client."""

    def __init__(self, transport: MbapTransport) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # pymodbus's mixin has an untyped __init__
        self.transport = transport
        self._decoder = DecodePDU(is_server=False)
        _use_array_responses(self)
        install_log_filter()

    @property
    def connected(self) -> bool:
        return self.transport.connected

    def close(self) -> None:
        self.transport.close()

    def register(self, custom_response_class: type[ModbusPDU]) -> None:
        self._decoder.register(custom_response_class)

    def execute(self, no_response_expected: bool, request: ModbusPDU) -> Awaitable[ModbusPDU]:
        return self._exchange(request)

    async def _exchange(self, request: ModbusPDU) -> ModbusPDU:
        unit = request.dev_id
        answer = await self.transport.send(
            unit, bytes((request.function_code,)) + request.encode(), None)
        if answer is None:  # without a timeout of its own only a closed connection ends it
            raise ConnectionException("connection closed")
        pdu = self.decode(unit, answer)
        if pdu is None:
            raise ModbusIOException("Unable to decode request")
        return pdu

    def decode(self, unit: int, answer: bytes) -> ModbusPDU | None:
        """The answer PDU in ``answer`` (from its function code on), as pymodbus decodes
        it; None, the connection closed and a bad frame counted, when it cannot."""
        pdu = self._decoder.decode(answer)
        if pdu is None:
            self.transport.undecodable(f"an answer of function code {answer[0]} and "
                                       f"{len(answer)} bytes that pymodbus cannot decode")
            return None
        pdu.dev_id = unit
        return pdu


class _PduOf(ModbusClientMixin[ModbusPDU]):
    """A client that sends nothing: its read and write methods (pymodbus's, with their
    argument checks) return the request PDU they built."""

    def execute(self, no_response_expected: bool, request: ModbusPDU) -> ModbusPDU:
        return request


def request_pdu(request: Request) -> tuple[int, bytes]:
    """The unit id and the PDU bytes (from the function code on) of ``request`` as pymodbus
    builds them: what a Modbus TCP driver sends for a read at every poll."""
    pdu: Any = request(_PduOf())  # type: ignore[no-untyped-call, arg-type]  # _PduOf's methods return the PDU itself, not an awaitable
    return int(pdu.dev_id), bytes((pdu.function_code,)) + pdu.encode()


# -- requests and answers ------------------------------------------------------------------



# -- one request against the timeout and the connection --------------------------------------


class Watched(Protocol):
    """A connection as :func:`exchange` watches it (the driver's ``Link``)."""

    client: ModbusClient
    #: resolved when the connection drops (or the driver lets go of it)
    lost: asyncio.Future[None]
    #: bytes received so far (serial only): a timeout with bytes is a garbled answer
    rx: list[int]
    bad: BadFrames


async def exchange(link: Watched, request: Request, timeout: float, what: str,
                   where: str) -> Answer:
    """Run ``request`` on ``link.client``: the answer, or the project's error for what
    happened instead (module docstring).

    No task and no ``asyncio.wait`` per request (each costs event-loop turns on the hot
    path): the request runs in the calling task, which a deadline cancels at ``timeout``
    or as soon as the connection drops.
    """
    client = link.client
    received, undecodable = link.rx[0], link.bad.count
    deadline = _Deadline(timeout, link.lost)
    try:
        try:
            if not client.connected:  # in the step in which pymodbus sends (docstring)
                raise ConnectionException("connection closed")
            answer = await request(client)
        except BaseException as exc:
            deadline.disarm(exc)
            raise
        deadline.disarm(None)
        return answer
    except asyncio.CancelledError:
        if not deadline.cancel_was_ours():
            task = asyncio.current_task()
            if deadline.fired or task is None or task.cancelling():
                raise  # cancelled from outside: not ours to handle
            # pymodbus cancelled its own request: the connection is going away
            raise ConnectionLost(f"{what} was cancelled by the Modbus client") from None
    except Exception as exc:  # map_pymodbus_errors, inline
        if link.lost.done() and link.bad.count != undecodable:  # a bad frame closed it
            raise unanswered(link, received, undecodable, timeout, what, where) from None
        failure = _translated(exc, client, what, where)
        # after our deadline fired, pymodbus's own error says that it caught our cancel
        if not deadline.fired or not isinstance(failure, RequestFailed):
            if failure is exc:
                raise
            raise failure from failure.__cause__
    raise unanswered(link, received, undecodable, timeout, what, where)


class _Deadline:
    """Cancels the running task after ``timeout`` s or when ``lost`` resolves, whichever is
    first: a lighter ``asyncio.timeout`` (one timer handle) for one request."""

    __slots__ = ("_handle", "_lost", "_task", "fired")

    def __init__(self, timeout: float, lost: asyncio.Future[None]) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self.fired = False
        self._handle = asyncio.get_running_loop().call_later(timeout, self._fire)
        self._lost = lost
        lost.add_done_callback(self._fire)

    def _fire(self, _: object = None) -> None:
        if not self.fired:
            self.fired = True
            self._task.cancel()

    def disarm(self, in_flight: BaseException | None) -> None:
        """Stop watching. When it fired but the request ended otherwise than by our
        CancelledError (``in_flight``: what it raised, None when it returned), pymodbus
        swallowed our cancel: take the cancel request back now."""
        self._handle.cancel()
        self._lost.remove_done_callback(self._fire)
        if self.fired and not isinstance(in_flight, asyncio.CancelledError):
            self._task.uncancel()

    def cancel_was_ours(self) -> bool:
        """For a CancelledError out of the request: True when it is the deadline's alone
        (taken back: the task is no longer cancelling)."""
        return self.fired and self._task.uncancel() == 0


# -- register answers as NumPy arrays ------------------------------------------------------

_BIG_ENDIAN_U16 = np.dtype(">u2")


def _decode_registers(pdu: ModbusPDU, data: bytes) -> None:
    byte_count = int(data[0])
    if byte_count >= len(data) or byte_count % 2:
        raise ModbusIOException(
            f"byte_count {byte_count} does not fit a packet of {len(data)} bytes",
            function_code=pdu.function_code,
        )
    # a read-only big-endian view; read_values converts it to native uint16 in one copy
    # pymodbus hints list[int]; every reader of it indexes or iterates, which an array does
    pdu.registers = np.frombuffer(data, _BIG_ENDIAN_U16, byte_count // 2, 1)  # type: ignore[assignment]


def _describe_answer(pdu: ModbusPDU) -> str:
    return (f"{type(pdu).__name__}(dev_id={pdu.dev_id}, transaction_id={pdu.transaction_id}, "
            f"{len(pdu.registers)} registers)")


class _HoldingRegistersResponse(ReadHoldingRegistersResponse):
    """FC3 answer with its registers as a NumPy array (validation as pymodbus's: a byte
    count that does not fit the frame makes it undecodable, a garbled answer)."""

    def decode(self, data: bytes) -> None:
        _decode_registers(self, data)

    def __str__(self) -> str:
        return _describe_answer(self)


class _InputRegistersResponse(ReadInputRegistersResponse):
    """FC4 answer with its registers as a NumPy array."""

    def decode(self, data: bytes) -> None:
        _decode_registers(self, data)

    def __str__(self) -> str:
        return _describe_answer(self)


def _use_array_responses(client: ModbusClient) -> None:
    """Make ``client`` decode FC3 and FC4 answers with the classes above (this client only)."""
    client.register(_HoldingRegistersResponse)
    client.register(_InputRegistersResponse)


# -- bad frames --------------------------------------------------------------------------

#: the logger pymodbus writes its own lines to
PYMODBUS_LOGGER = "pymodbus.logging"
#: pymodbus's own line for "the same text again" (its dedup is global and forgets)
_PYMODBUS_REPEATING = "Repeating...."



def _guard_client(client: ModbusClient, bad: BadFrames, mbap: bool, abort: bool) -> None:
    """Count in ``bad`` the frames pymodbus cannot decode on ``client`` instead of letting
    it raise; with ``mbap`` (TCP, UDP) also bytes that are no Modbus TCP frame; with
    ``abort`` (a TCP stream) an undecodable frame closes the connection (serial, UDP: the
    bytes are dropped). Also installs :class:`PymodbusLogFilter` (once per process)."""
    install_log_filter()
    ctx: Any = getattr(client, "ctx", None)
    original = getattr(ctx, "callback_data", None)
    if original is None:
        return

    def callback_data(data: bytes, addr: tuple[Any, ...] | None = None) -> int:
        if mbap and len(data) >= 4 and data[2:4] != b"\x00\x00":
            protocol = int.from_bytes(data[2:4], "big")
            bad(f"not a Modbus TCP frame: protocol id {protocol}, {len(data)} bytes")
            return len(data)  # dropped; the request waits for its answer or times out
        try:
            return int(original(data, addr=addr))
        except (ModbusException, ValueError, IndexError) as exc:
            bad(str(exc) or type(exc).__name__)
            transport = getattr(ctx, "transport", None)
            if abort and transport is not None:
                transport.abort()  # what asyncio would do, without its traceback
            return len(data)

    ctx.callback_data = callback_data


class PymodbusLogFilter(LibraryLogFilter):
    """pymodbus's lines thinned (:class:`~gateway.repeated_log.LibraryLogFilter`), and its
    own ``Repeating....`` taken as the line it repeats: a summary later says e.g.
    ``pymodbus logged this 52 more times in the last 60 s: Invalid Modbus protocol id: 1234``.
    """

    library = "pymodbus"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock)
        self._last_kind: str | None = None

    def kind_of(self, text: str) -> tuple[str, str] | None:
        if text != _PYMODBUS_REPEATING:
            seen = super().kind_of(text)
            self._last_kind = None if seen is None else seen[1]
            return seen
        kind = self._last_kind
        repeated = None if kind is None else self.last_reason(kind)
        return None if kind is None or repeated is None else (repeated, kind)


def install_log_filter() -> PymodbusLogFilter:
    """The filter on pymodbus's logger, added the first time (idempotent)."""
    return install_library_filter([PYMODBUS_LOGGER], PymodbusLogFilter)
