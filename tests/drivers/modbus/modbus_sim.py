"""A real pymodbus TCP server in-process on 127.0.0.1, with scriptable faults.

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
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

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


class ModbusSim:
    """One simulated Modbus TCP device; stop and start it again on the same port."""

    def __init__(self, memory: Memory) -> None:
        self.memory = memory
        self.faults = Faults()
        self.port = 0
        self.requests = 0
        self._server: ModbusTcpServer | None = None

    def _device(self) -> SimDevice:
        def blocks(table: str) -> list[SimData]:
            bits = table in ("coil", "discrete")
            given = self.memory.get(table) or {0: [0]}
            return [
                SimData(
                    address,
                    values=[bool(v) for v in values] if bits else list(values),
                    datatype=SimType.BITS if bits else SimType.REGISTERS,
                )
                for address, values in sorted(given.items())
            ]

        return SimDevice(
            id=UNIT_ID,
            simdata=(blocks("coil"), blocks("discrete"), blocks("holding"), blocks("input")),
            action=self._action,
        )

    async def _action(
        self, function_code: int, _start: int, address: int, _count: int, _regs: Any, _set: Any
    ) -> ExcCodes | None:
        self.requests += 1
        key = (_TABLE_OF_FC.get(function_code, "?"), address)
        if self.faults.silence is not None:
            await asyncio.sleep(self.faults.silence)
        if key in self.faults.delay:
            await asyncio.sleep(self.faults.delay[key])
        return self.faults.exception.get(key)

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        table = _TABLE_OF_FC.get(pdu.function_code)
        if sending and table in self.faults.short_answer and pdu.registers:
            pdu.registers = list(pdu.registers)[:-1]
        return pdu

    async def start(self) -> None:
        server = ModbusTcpServer(
            self._device(), address=("127.0.0.1", self.port), trace_pdu=self._trace_pdu
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

    async def read(self, table: str, address: int, count: int) -> list[int] | list[bool]:
        """The device's memory as a client would read it (bypassing faults)."""
        assert self._server is not None
        runtime = self._server.context.devices[UNIT_ID]  # type: ignore[union-attr]
        saved, runtime.action = runtime.action, None
        try:
            return await self._server.async_getValues(UNIT_ID, READ_FC[table], address, count)
        finally:
            runtime.action = saved


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
