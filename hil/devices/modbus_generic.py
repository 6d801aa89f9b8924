"""A generic simulated Modbus device (TCP, or RTU over a pty pair) driven by a register map.

The map (:mod:`hil.devices.modbus_map`, a YAML file such as ``hil/maps/boiler.yaml``)
gives the values: table, address, type, byte order, initial value and waveform
(constant, ramp, sine, seeded random walk, counter), and the faults per address
range. A request touching a faulty range gets:

| fault | TCP | RTU |
| --- | --- | --- |
| ``exception: N`` | exception response N | exception response N |
| ``delay: 1.5s`` | the answer that much later | the same |
| ``drop_connection`` | every client connection closed, no answer | no answer (silence) |
| ``garble`` | a read's answer a register (or byte of bits) short | a byte flipped (CRC) |

The addresses of a fault exist on the device, so that the fault, not an "illegal data
address", is what a client sees: where no value is mapped they read 0 (writes to them
answer exception 2). pymodbus checks a request against its register blocks before the
simulator sees it, so each table's block spans the whole address space and
:meth:`ModbusGenericSimulator._action` decides what exists; the fault list stays live.

The transport, the RTU line, the restart and the device-wide faults
(``inject_exception``, ``response_delay``, ``drop_connections``) are the energy
meter simulator's: this class is a :class:`ModbusMeterSimulator` with another
register store. Values are evaluated when a request arrives, so a client reading
at time ``t`` sees the waveform at ``t`` (seconds since :meth:`start`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ModbusPDU
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData

from gateway.types import INTEGER_RANGES, DataType
from hil.devices.modbus_map import (
    BIT_TABLES,
    MAX_REGISTER_ADDRESS,
    Fault,
    ModbusMap,
    RegisterEntry,
)
from hil.devices.modbus_meter import _FC_TABLE, _GATEWAY_TABLE, _WRITE_FCS, ModbusMeterSimulator

__all__ = ["ModbusGenericSimulator"]

log = logging.getLogger(__name__)

_MBAP = 7  # Modbus TCP header: transaction, protocol, length, unit
_TABLES = ("coil", "discrete", "holding", "input")
_BIT_READS = frozenset({1, 2})
_SPAN = MAX_REGISTER_ADDRESS + 1


class ModbusGenericSimulator(ModbusMeterSimulator):
    """A Modbus device whose registers, waveforms and faults come from a :class:`ModbusMap`.

    Args:
        modbus_map: the device (see :func:`hil.devices.modbus_map.load_map`).
        clock: seconds, for the waveforms (default ``time.monotonic``); tests may fix it.
        host, port, rtu, baudrate: as for :class:`ModbusMeterSimulator`.
    """

    def __init__(
        self,
        modbus_map: ModbusMap,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rtu: bool = False,
        baudrate: int = 19200,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(host=host, port=port, device_id=modbus_map.unit_id, rtu=rtu,
                         baudrate=baudrate)
        self.map = modbus_map
        self._map_clock = clock
        self._t0 = clock()
        self.faults: list[Fault] = list(modbus_map.faults)
        """Faults in force; tests may change the list while the simulator runs."""
        self.fault_count = 0
        """Requests that met a fault of the map."""
        self._entries: dict[str, list[RegisterEntry]] = {t: [] for t in _TABLES}
        for entry in modbus_map.registers:
            self._entries[entry.table].append(entry)
        #: values written by clients: entry name -> registers (the waveform stops)
        self._written: dict[str, list[int]] = {}
        self._addresses = {t: self._cells(t, writable_only=False) for t in _TABLES}
        self._writable = {t: self._cells(t, writable_only=True) for t in _TABLES}
        #: bit reads in flight: (function code, address) -> bits asked (pymodbus tells
        #: the action only the 16-bit words they span); at most one key per address
        self._bit_reads: dict[tuple[int, int], int] = {}
        self._short_answers = 0
        self._silent_answers = 0

    # -- values -------------------------------------------------------------------

    def elapsed(self) -> float:
        """Seconds of waveform time since the simulator was created or restarted."""
        return self._map_clock() - self._t0

    def value_of(self, name: str) -> float | int | bool | str:
        """The value of an entry now, as the device would answer it (before faults)."""
        entry = next(e for e in self.map.registers if e.name == name)
        if name in self._written:
            return self._decode_written(entry)
        return entry.value_at(self.elapsed())

    def _decode_written(self, entry: RegisterEntry) -> float | int | bool | str:
        from drivers.modbus.codec import decode_value

        value = decode_value(self._written[entry.name], entry.type, entry.byte_order)
        if entry.type is DataType.BOOL:
            return bool(value)
        if entry.type in INTEGER_RANGES and isinstance(value, float):
            return int(value)
        return value

    def _cells(self, table: str, *, writable_only: bool) -> frozenset[int]:
        return frozenset(
            e.address + i
            for e in self._entries[table]
            if not writable_only or (e.writable and e.bit is None)  # bits in a register: read-only
            for i in range(e.width)
        )

    def _words(self, table: str) -> dict[int, int]:
        """Every register (or bit, 0/1) of ``table`` now."""
        t = self.elapsed()
        out: dict[int, int] = {}
        for e in self._entries[table]:
            regs = self._written.get(e.name)
            if regs is None:
                regs = e.encode(e.value_at(t))
            if e.bit is not None:
                if regs[0]:
                    out[e.address] = out.get(e.address, 0) | (1 << e.bit)
                else:
                    out.setdefault(e.address, 0)
                continue
            for i, word in enumerate(regs):
                out[e.address + i] = word
        return out

    # -- pymodbus plumbing (overrides of the meter's) -------------------------------

    @staticmethod
    def _simdata() -> tuple[list[SimData], list[SimData], list[SimData], list[SimData]]:
        """Every table spans the address space: :meth:`_action` says what exists.

        A block covering only the mapped values made pymodbus answer exception 2 for a
        fault's addresses outside them before the action ran, so those faults never fired.
        """
        # a list of values, count 1: pymodbus multiplies a bit block by its count twice
        bits = [SimData(0, values=[False] * _SPAN, datatype=SimType.BITS)]
        words = [SimData(0, count=_SPAN, values=0, datatype=SimType.REGISTERS)]
        return bits, list(bits), words, list(words)

    def _request_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        """Note how many bits a coil or discrete input read asks for (see :meth:`_action`)."""
        if (not sending and pdu.function_code in _BIT_READS
                and pdu.dev_id == self.device_id):
            self._bit_reads[(pdu.function_code, pdu.address)] = pdu.count
        return pdu

    async def start(self) -> None:
        if self._server is None:
            self._t0 = self._map_clock()
        await super().start()

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        meter_table = _FC_TABLE.get(function_code)
        if meter_table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        table = _GATEWAY_TABLE[meter_table]
        readback = set_values is None and function_code in _WRITE_FCS
        if set_values is not None:
            n = len(set_values)
        elif function_code in _BIT_READS:  # pymodbus passes the 16-bit words spanned
            n = self._bit_reads.pop((function_code, address), 1)
        else:
            n = 1 if table in BIT_TABLES else count  # a coil write's readback: its bit
        if not readback:
            self.request_count += 1
            if self._delay_s:
                await asyncio.sleep(self._delay_s)
            if self._exception is not None:
                return self._exception
            fault = next((f for f in self.faults if f.touches(table, address, max(n, 1))), None)
            if fault is not None:
                self.fault_count += 1
                answer = await self._apply(fault)
                if answer is not None:
                    return answer
        if set_values is None:
            missing = any(a not in self._addresses[table] and not self._faulted(table, a)
                          for a in range(address, address + n))
        else:
            missing = any(a not in self._writable[table] for a in range(address, address + n))
        if missing:
            return ExcCodes.ILLEGAL_ADDRESS
        if set_values is not None:
            self._store_write(table, address, [int(v) for v in set_values])
        self._fill_table(table, start_address, registers)
        return None

    def _faulted(self, table: str, address: int) -> bool:
        """True when a fault in force covers ``address``: it exists (reads 0 if unmapped)."""
        return any(f.touches(table, address, 1) for f in self.faults)

    async def _apply(self, fault: Fault) -> ExcCodes | None:
        """Act out ``fault``; an exception code to answer, or None to answer normally."""
        if fault.exception is not None:
            return ExcCodes(fault.exception)
        if fault.delay is not None:
            await asyncio.sleep(fault.delay)
        elif fault.drop_connection:
            if self.rtu:
                self._silent_answers += 1
            else:
                self.drop_connections()
        elif fault.garble:
            if self.rtu and self.line is not None:
                self.line.garble_answers += 1
            else:
                self._short_answers += 1
        return None

    def _store_write(self, table: str, address: int, values: list[int]) -> None:
        for e in self._entries[table]:
            if e.bit is not None or not (address <= e.address + e.width - 1
                                         and e.address < address + len(values)):
                continue
            regs = list(self._written.get(e.name) or e.encode(e.value_at(self.elapsed())))
            for i in range(e.width):
                j = e.address + i - address
                if 0 <= j < len(values):
                    regs[i] = values[j]
            self._written[e.name] = regs
            log.info("Modbus generic: %s written", e.name)

    def _fill_table(self, table: str, start_address: int, registers: list[int]) -> None:
        words = self._words(table)
        if table in BIT_TABLES:  # pymodbus packs 16 bits per register
            packed: dict[int, int] = {}
            for bit_addr, bit in words.items():
                word = bit_addr // 16
                packed[word] = packed.get(word, 0) | ((1 if bit else 0) << (bit_addr % 16))
            for word, value in packed.items():
                registers[word - start_address] = value
            return
        for addr, raw in words.items():
            registers[addr - start_address] = raw

    def _outgoing_tcp(self, sending: bool, data: bytes) -> bytes:
        """TCP garble: the answer to a read loses its last register (or byte of bits).

        Any other answer (a write's echo, an exception) goes out whole: cut, it would not
        be a Modbus frame at all. Either way the garble is used up. pymodbus sends the
        answer right after the action returns, so the next answer is the faulted request's.
        """
        if not sending or not self._short_answers or len(data) <= _MBAP + 1:
            return data
        self._short_answers -= 1
        function_code, byte_count = data[_MBAP], data[_MBAP + 1]
        cut = 2 if function_code in (3, 4) else 1
        if function_code not in (1, 2, 3, 4) or byte_count < cut:
            return data
        length = int.from_bytes(data[4:6], "big") - cut
        return (data[:4] + length.to_bytes(2, "big") + data[6:_MBAP + 1]
                + bytes([byte_count - cut]) + data[_MBAP + 2 : len(data) - cut])

    def _silent_for_other_units(self, sending: bool, data: bytes) -> bytes:
        data = super()._silent_for_other_units(sending, data)
        if sending and data and self._silent_answers:
            self._silent_answers -= 1
            return b""
        return data
