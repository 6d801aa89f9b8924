"""A real pymodbus server in-process (TCP on 127.0.0.1, or RTU on a pty line), with faults.

Uses pymodbus 3.16's ``SimDevice``/``SimData`` datastore (the
``ModbusSequentialDataBlock``/``ModbusDeviceContext``/``ModbusServerContext``
trio still works in 3.16 but is deprecated and logs a warning on every use).

Quirk of the pymodbus 3.16 server: an answer delayed by ``Faults.delay`` is sent
with the transaction id of the newest request on the connection (it reads
``last_pdu`` after awaiting the datastore), so a late answer can pass for the
answer to a later request. Tests make delays outlast themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from hil.devices.pty_link import PtyLink

UNIT_ID = 1
#: function code of a read of each table, and the table each function code touches
READ_FC = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
_TABLE_OF_FC = {
    1: "coil",
    5: "coil",
    15: "coil",
    2: "discrete",
    3: "holding",
    6: "holding",
    16: "holding",
    4: "input",
}

#: table -> {start address: values}; addresses not listed answer "illegal address"
Memory = dict[str, dict[int, list[int]]]


@dataclass
class Faults:
    """Misbehaviour of the simulated device, changeable while it runs."""

    #: (table, address) of a request's first register -> seconds to wait before answering
    delay: dict[tuple[str, int], float] = field(default_factory=dict)
    #: (table, address) -> exception code to answer with
    exception: dict[tuple[str, int], ExcCodes] = field(default_factory=dict)
    #: when set, every request waits this long (a device that went silent)
    silence: float | None = None
    #: answers to reads of these tables lose their last register
    short_answer: set[str] = field(default_factory=set)
    #: unit id -> exception code answered to every request for that unit
    unit_exception: dict[int, ExcCodes] = field(default_factory=dict)


class ModbusSim:
    """Simulated Modbus devices; stop and start it again on the same port.

    ``memory`` is unit 1's; ``units`` adds other unit ids with their own memory.
    With ``rtu=True`` the server speaks RTU on one end of a :class:`PtyLink`
    (``sim.line``) and the driver opens ``sim.serial_path``; unit ids not
    served get no answer, as on an RS-485 line.
    """

    def __init__(
        self, memory: Memory, units: dict[int, Memory] | None = None, rtu: bool = False
    ) -> None:
        self.memory = memory
        self.units = {UNIT_ID: memory, **(units or {})}
        self.rtu = rtu
        self.faults = Faults()
        self.port = 0
        self.requests = 0
        #: (unit id, function code) of every request, in order
        self.log: list[tuple[int, int]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.line: PtyLink | None = None
        self._server: ModbusTcpServer | ModbusSerialServer | None = None

    @property
    def serial_path(self) -> str:
        assert self.line is not None
        return self.line.gateway_path

    def _devices(self) -> list[SimDevice]:
        return [self._device(unit, memory) for unit, memory in self.units.items()]

    def _device(self, unit: int, memory: Memory) -> SimDevice:
        def blocks(table: str) -> list[SimData]:
            bits = table in ("coil", "discrete")
            given = memory.get(table) or {0: [0]}
            return [
                SimData(
                    address,
                    values=[bool(v) for v in values] if bits else list(values),
                    datatype=SimType.BITS if bits else SimType.REGISTERS,
                )
                for address, values in sorted(given.items())
            ]

        async def action(*args: Any) -> ExcCodes | None:
            return await self._action(unit, *args)

        return SimDevice(
            id=unit,
            simdata=(blocks("coil"), blocks("discrete"), blocks("holding"), blocks("input")),
            action=action,
        )

    async def _action(
        self,
        unit: int,
        function_code: int,
        _start: int,
        address: int,
        _count: int,
        _regs: Any,
        set_values: Any,
    ) -> ExcCodes | None:
        if set_values is None and function_code in (5, 6, 15, 16):
            return None  # the read-back of a write: not a request of its own
        self.requests += 1
        self.log.append((unit, function_code))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            key = (_TABLE_OF_FC.get(function_code, "?"), address)
            # the simulated device's faults: it answers late (the device's pace, not a wait)
            if self.faults.silence is not None:
                await asyncio.sleep(self.faults.silence)
            if key in self.faults.delay:
                await asyncio.sleep(self.faults.delay[key])
            if unit in self.faults.unit_exception:
                return self.faults.unit_exception[unit]
            return self.faults.exception.get(key)
        finally:
            self.in_flight -= 1

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        table = _TABLE_OF_FC.get(pdu.function_code)
        if sending and table in self.faults.short_answer and pdu.registers:
            pdu.registers = list(pdu.registers)[:-1]
        return pdu

    async def start(self) -> None:
        if self.rtu:
            if self.line is None:
                self.line = PtyLink()
                self.line.start()
            serial = ModbusSerialServer(
                [*self._devices(), _catch_all()],
                port=self.line.device_path,
                trace_pdu=self._trace_pdu,
                trace_packet=_silent_for_others(set(self.units)),
                reconnect_delay=0,
            )
            await serial.serve_forever(background=True)
            self._server = serial
            return
        server = ModbusTcpServer(
            self._devices(), address=("127.0.0.1", self.port), trace_pdu=self._trace_pdu
        )
        await server.serve_forever(background=True)
        if not self.port:
            self.port = server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._server = server

    async def stop(self) -> None:
        """Stop listening and drop every client connection."""
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()
            await asyncio.sleep(0)  # let the transports deliver connection_lost

    def close_line(self) -> None:
        """RTU: take the virtual serial line away."""
        line, self.line = self.line, None
        if line is not None:
            line.stop()

    async def read(
        self, table: str, address: int, count: int, unit: int = UNIT_ID
    ) -> list[int] | list[bool]:
        """The device's memory as a client would read it (bypassing faults)."""
        assert self._server is not None
        runtime = self._server.context.devices[unit]  # type: ignore[union-attr]
        saved, runtime.action = runtime.action, None
        try:
            return await self._server.async_getValues(unit, READ_FC[table], address, count)
        finally:
            runtime.action = saved


def _catch_all() -> SimDevice:
    """pymodbus's catch-all device (id 0) for unit ids not served; its answers are dropped."""

    async def answer(*_args: Any) -> ExcCodes:
        return ExcCodes.GATEWAY_NO_RESPONSE

    return SimDevice(
        id=0, simdata=[SimData(0, count=16, datatype=SimType.REGISTERS)], action=answer
    )


def _silent_for_others(units: set[int]) -> Callable[[bool, bytes], bytes]:
    """RTU: send nothing for unit ids not served, like an RS-485 line without that device."""

    def trace(sending: bool, data: bytes) -> bytes:
        return b"" if sending and data and data[0] not in units else data

    return trace


class RawDevice:
    """A TCP peer that answers every Modbus request with bytes of the test's choosing.

    For answers no well-behaved server sends: ``answer(request_frame) -> reply_frame``.
    """

    def __init__(self, answer: Callable[[bytes], bytes]) -> None:
        self.answer = answer
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while header := await reader.readexactly(6):
                body = await reader.readexactly(int.from_bytes(header[4:6], "big"))
                writer.write(self.answer(header + body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def mbap_reply(request: bytes, pdu: bytes) -> bytes:
    """A frame answering ``request`` (same transaction and unit id) with ``pdu``."""
    return request[:2] + b"\x00\x00" + (len(pdu) + 1).to_bytes(2, "big") + request[6:7] + pdu
