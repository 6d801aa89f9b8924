"""Simulated Modbus energy meter on every transport, backed by a process model.

A real pymodbus server: on TCP, on UDP, on TCP with RTU frames (a meter behind a
serial device server), or with ``rtu=True`` (``transport="rtu"``, or ``"ascii"``) a
pymodbus serial server on one end of a :class:`~hil.devices.pty_link.PtyLink` (the
gateway opens :attr:`ModbusMeterSimulator.serial_path`). Input registers are computed
from the meter's process model when a request arrives, so a client reading at time ``t``
sees the model's value at ``t``. The register map is :data:`REGISTER_MAP` (documented in
``hil/README.md``). Fault hooks let tests and HIL scenarios make the meter
answer with a Modbus exception, answer late, drop its TCP connections, or
restart on the same port.

pymodbus 3.16 routes every request through ``SimDevice(action=...)``: the action
gets the block's register list and may rewrite it or return an exception code.
That is where the model is evaluated and the fault hooks act.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer, ModbusUdpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from hil.devices.lifecycle import SimulatedDevice
from hil.devices.pty_link import PtyLink
from hil.process.energy_meter import EnergyMeterModel, MeterModel, MeterReading

__all__ = [
    "REGISTERS_BY_NAME",
    "REGISTER_MAP",
    "TRANSPORTS",
    "DataKind",
    "ModbusMeterSimulator",
    "RegisterSpec",
    "Table",
    "decode_value",
    "encode_reading",
    "encode_value",
    "meter_tag_configs",
]

log = logging.getLogger(__name__)


class Table(StrEnum):
    """Modbus data table."""

    INPUT = "input"  # FC4
    HOLDING = "holding"  # FC3, FC6, FC16
    COIL = "coil"  # FC1, FC5, FC15
    DISCRETE_INPUT = "discrete_input"  # FC2


class DataKind(StrEnum):
    """Value type of a register entry; multi-register values are big-endian ABCD."""

    FLOAT32 = "float32"
    UINT32 = "uint32"
    INT16 = "int16"
    UINT16 = "uint16"
    BOOL = "bool"

    @property
    def width(self) -> int:
        """Number of 16-bit registers (or bits, for BOOL) the value occupies."""
        return 2 if self in (DataKind.FLOAT32, DataKind.UINT32) else 1


@dataclass(frozen=True, slots=True)
class RegisterSpec:
    """One entry of the meter's register map.

    The engineering value is ``raw * scale`` (``scale`` is 1 for floats and bits).
    """

    name: str
    table: Table
    address: int
    kind: DataKind
    scale: float = 1.0
    unit: str = ""
    writable: bool = False
    default: float | int | bool = 0
    description: str = ""

    @property
    def count(self) -> int:
        """Registers (or bits) occupied."""
        return self.kind.width


# fmt: off
#: The meter's register map, unit id 1. Immutable; addresses not listed do not exist.
REGISTER_MAP: tuple[RegisterSpec, ...] = (
    RegisterSpec("voltage", Table.INPUT, 0, DataKind.FLOAT32, unit="V",
                 description="voltage (phase to neutral)"),
    RegisterSpec("current", Table.INPUT, 2, DataKind.FLOAT32, unit="A",
                 description="current, single-phase equivalent"),
    RegisterSpec("active_power", Table.INPUT, 4, DataKind.FLOAT32, unit="kW",
                 description="active power = voltage * current * power_factor / 1000"),
    RegisterSpec("power_factor", Table.INPUT, 6, DataKind.FLOAT32,
                 description="power factor"),
    RegisterSpec("frequency", Table.INPUT, 8, DataKind.FLOAT32, unit="Hz",
                 description="grid frequency"),
    RegisterSpec("energy_import", Table.INPUT, 10, DataKind.UINT32, scale=0.01, unit="kWh",
                 description="imported active energy counter, truncated to 0.01 kWh"),
    RegisterSpec("temperature", Table.INPUT, 12, DataKind.INT16, scale=0.1, unit="degC",
                 description="internal temperature, rounded to 0.1 degC"),
    RegisterSpec("machine_state", Table.INPUT, 13, DataKind.UINT16,
                 description="0 off, 1 idle, 2 running"),
    RegisterSpec("ct_ratio", Table.HOLDING, 100, DataKind.UINT16, writable=True, default=100,
                 description="current transformer ratio (stored, not applied)"),
    RegisterSpec("power_limit", Table.HOLDING, 101, DataKind.FLOAT32, unit="kW", writable=True,
                 default=50.0, description="power limit setpoint (stored, not applied)"),
    RegisterSpec("relay_closed", Table.COIL, 0, DataKind.BOOL, writable=True, default=True,
                 description="output relay closed (stored, not applied)"),
    RegisterSpec("tamper_alarm", Table.DISCRETE_INPUT, 0, DataKind.BOOL, default=False,
                 description="tamper alarm; settable from the simulator side only"),
)
# fmt: on

#: :data:`REGISTER_MAP` by name.
REGISTERS_BY_NAME: Mapping[str, RegisterSpec] = MappingProxyType(
    {spec.name: spec for spec in REGISTER_MAP}
)

_GATEWAY_TABLE = {Table.INPUT: "input", Table.HOLDING: "holding", Table.COIL: "coil",
                  Table.DISCRETE_INPUT: "discrete"}


def meter_tag_configs(*names: str) -> list[dict[str, object]]:
    """Gateway tag configs (plain dicts) for the named registers of the map, all when none
    are named: one source of truth for tests, scenarios and demos that read this meter."""
    specs = [REGISTERS_BY_NAME[n] for n in names] if names else list(REGISTER_MAP)
    tags: list[dict[str, object]] = []
    for spec in specs:
        tag: dict[str, object] = {"name": spec.name, "table": _GATEWAY_TABLE[spec.table],
                                  "address": spec.address, "type": spec.kind.value}
        if spec.scale != 1.0:
            tag["scale"] = spec.scale
        if spec.unit:
            tag["unit"] = spec.unit
        tags.append(tag)
    return tags

_FC_TABLE: Mapping[int, Table] = MappingProxyType(
    {
        1: Table.COIL, 5: Table.COIL, 15: Table.COIL,
        2: Table.DISCRETE_INPUT,
        3: Table.HOLDING, 6: Table.HOLDING, 16: Table.HOLDING, 22: Table.HOLDING, 23: Table.HOLDING,
        4: Table.INPUT,
    }
)  # fmt: skip

_WRITE_FCS = frozenset({5, 6, 15, 16, 22, 23})

Transport = Literal["tcp", "udp", "rtu", "ascii", "rtu_over_tcp"]
#: the transports a simulated meter speaks; ``rtu`` and ``ascii`` on a pty line
TRANSPORTS: tuple[Transport, ...] = ("tcp", "udp", "rtu", "ascii", "rtu_over_tcp")
_SERIAL_TRANSPORTS = frozenset({"rtu", "ascii"})
_UINT32_MAX = 0xFFFFFFFF


def encode_value(spec: RegisterSpec, value: float) -> list[int]:
    """Encode an engineering value into the registers (or bits) of ``spec``."""
    if spec.kind is DataKind.FLOAT32:
        raw = struct.pack(">f", value)
        return [int.from_bytes(raw[0:2], "big"), int.from_bytes(raw[2:4], "big")]
    if spec.kind is DataKind.BOOL:
        return [1 if value else 0]
    scaled = value * (1.0 / spec.scale)  # e.g. kWh * 100.0: 1/0.01 is exactly 100.0
    if spec.kind is DataKind.UINT32:
        n = math.floor(scaled) & _UINT32_MAX  # counters truncate, and wrap like real ones
        return [n >> 16, n & 0xFFFF]
    if spec.kind is DataKind.INT16:
        n = max(-32768, min(32767, round(scaled)))
        return [n & 0xFFFF]
    return [max(0, min(0xFFFF, round(scaled)))]


def decode_value(spec: RegisterSpec, registers: Sequence[int]) -> float | int | bool:
    """Decode registers (or bits) of ``spec`` into the engineering value."""
    if len(registers) != spec.count:
        raise ValueError(f"{spec.name} needs {spec.count} registers, got {len(registers)}")
    if spec.kind is DataKind.BOOL:
        return bool(registers[0])
    if spec.kind is DataKind.FLOAT32:
        return float(struct.unpack(">f", struct.pack(">HH", *registers))[0])
    if spec.kind is DataKind.UINT32:
        raw = (registers[0] << 16) | registers[1]
    elif spec.kind is DataKind.INT16:
        raw = registers[0] - 0x10000 if registers[0] & 0x8000 else registers[0]
    else:
        raw = registers[0]
    return raw * spec.scale if spec.scale != 1.0 else raw


def encode_reading(reading: MeterReading) -> dict[int, int]:
    """Input registers (address -> raw value) for one reading."""
    values = {
        "voltage": reading.voltage_v,
        "current": reading.current_a,
        "active_power": reading.active_power_kw,
        "power_factor": reading.power_factor,
        "frequency": reading.frequency_hz,
        "energy_import": reading.energy_import_kwh,
        "temperature": reading.temperature_c,
        "machine_state": int(reading.machine_state),
    }
    out: dict[int, int] = {}
    for name, value in values.items():
        spec = REGISTERS_BY_NAME[name]
        for i, reg in enumerate(encode_value(spec, value)):
            out[spec.address + i] = reg
    return out


def _addresses(table: Table) -> frozenset[int]:
    return frozenset(
        spec.address + i for spec in REGISTER_MAP if spec.table is table for i in range(spec.count)
    )


_TABLE_ADDRESSES: Mapping[Table, frozenset[int]] = MappingProxyType(
    {table: _addresses(table) for table in Table}
)
_WRITABLE_ADDRESSES: Mapping[Table, frozenset[int]] = MappingProxyType(
    {
        table: frozenset(
            spec.address + i
            for spec in REGISTER_MAP
            if spec.table is table and spec.writable
            for i in range(spec.count)
        )
        for table in Table
    }
)


def _defaults(table: Table) -> dict[int, int]:
    out: dict[int, int] = {}
    for spec in REGISTER_MAP:
        if spec.table is table:
            for i, reg in enumerate(encode_value(spec, spec.default)):
                out[spec.address + i] = reg
    return out


class ModbusMeterSimulator(SimulatedDevice):
    """A simulated energy meter on Modbus TCP (pymodbus server, unit id 1).

    Args:
        model: process model; default a seeded :class:`EnergyMeterModel` (seed 0).
        host: interface to listen on.
        port: TCP port; ``0`` picks a free port at the first :meth:`start` and
            keeps it for later restarts.
        device_id: Modbus unit id of the meter. Requests to other unit ids are
            answered with exception 11 (gateway target device failed to respond).
        clock: wall-clock source used to evaluate the model at request time.
        rtu: serve Modbus RTU on a pty pair instead of TCP; the gateway opens
            :attr:`serial_path`. Requests to other unit ids get no answer, as on
            a real RS-485 line.
        transport: ``tcp`` (default), ``udp``, ``rtu`` (as ``rtu=True``), ``ascii`` (a
            pty line, Modbus ASCII) or ``rtu_over_tcp`` (RTU frames on TCP: the meter
            behind a serial device server; other unit ids get no answer, as on its line).
        baudrate: line speed of the serial server (a pty ignores it; the gateway's must
            match only by convention).

    Usage::

        async with ModbusMeterSimulator(EnergyMeterModel(seed=1)) as sim:
            client = AsyncModbusTcpClient(sim.host, port=sim.port)
    """

    def __init__(
        self,
        model: MeterModel | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        device_id: int = 1,
        clock: Callable[[], float] = time.time,
        rtu: bool = False,
        baudrate: int = 19200,
        transport: Transport | None = None,
    ) -> None:
        if not 1 <= device_id <= 247:
            raise ValueError("device_id must be 1..247")
        if transport is not None and transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}")
        self.model: MeterModel = model if model is not None else EnergyMeterModel(seed=0)
        self.host = host
        self.device_id = device_id
        self._requested_port = port
        self._port: int | None = port or None
        self._clock = clock
        self._server: ModbusTcpServer | ModbusSerialServer | ModbusUdpServer | None = None
        self.transport: Transport = transport or ("rtu" if rtu else "tcp")
        #: True when the meter is on a serial line (RTU or ASCII on a pty)
        self.rtu = self.transport in _SERIAL_TRANSPORTS
        self.baudrate = baudrate
        self.line: PtyLink | None = None
        """The virtual serial line (RTU only), for line faults: garble_answers, cut, ..."""
        self._holding = _defaults(Table.HOLDING)
        self._coils = _defaults(Table.COIL)
        self._discrete = _defaults(Table.DISCRETE_INPUT)
        self._exception: ExcCodes | None = None
        self._delay_s = 0.0
        self.request_count = 0
        """Requests to the meter's unit id that reached the datastore (incl. injected faults)."""

    # -- lifecycle -----------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port (bound port once started)."""
        if self._port is None:
            raise RuntimeError("port not known yet: start() the simulator first")
        return self._port

    @property
    def address(self) -> str:
        """``host:port`` of the listener, or the serial device path (RTU)."""
        if self.rtu:
            return self.serial_path
        return f"{self.host}:{self.port}"

    @property
    def serial_path(self) -> str:
        """The device path the gateway opens (RTU, once started)."""
        if self.line is None:
            raise RuntimeError("serial path not known yet: start() an RTU simulator first")
        return self.line.gateway_path

    @property
    def running(self) -> bool:
        """True while the server listens."""
        return self._server is not None

    async def start(self) -> None:
        """Start listening (on the same port as before after a :meth:`stop`)."""
        if self._server is not None:
            return
        if self.rtu:
            await self._start_rtu()
            return
        if self.transport == "udp":
            await self._start_udp()
            return
        rtu_frames = self.transport == "rtu_over_tcp"
        devices = [
            SimDevice(id=self.device_id, simdata=self._simdata(), action=self._action),
            # id 0 is pymodbus's catch-all for unit ids not configured
            SimDevice(
                id=0,
                simdata=[SimData(0, count=65536, datatype=DataType.REGISTERS)],
                action=self._unknown_unit,
            ),
        ]
        server = ModbusTcpServer(
            devices, address=(self.host, self._port or 0),
            framer=FramerType.RTU if rtu_frames else FramerType.SOCKET,
            trace_packet=self._silent_for_other_units if rtu_frames else self._outgoing_tcp,
            trace_pdu=self._request_pdu,
        )
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {self.host}:{self._port or 0}") from exc
        sockets = getattr(server.transport, "sockets", None) or []
        if not sockets:
            await server.shutdown()
            raise OSError(f"no listening socket on {self.host}:{self._port or 0}")
        self._port = int(sockets[0].getsockname()[1])
        self._server = server
        log.info("Modbus meter listening on %s:%d (%s, unit %d)", self.host, self._port,
                 self.transport, self.device_id)

    async def _start_udp(self) -> None:
        devices = [
            SimDevice(id=self.device_id, simdata=self._simdata(), action=self._action),
            SimDevice(id=0, simdata=[SimData(0, count=65536, datatype=DataType.REGISTERS)],
                      action=self._unknown_unit),
        ]
        server = ModbusUdpServer(devices, address=(self.host, self._port or 0),
                                 trace_packet=self._outgoing_tcp, trace_pdu=self._request_pdu)
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on udp {self.host}:{self._port or 0}") from exc
        transport = server.transport
        sockname = transport.get_extra_info("sockname") if transport is not None else None
        if not sockname:
            await server.shutdown()
            raise OSError(f"no UDP socket on {self.host}:{self._port or 0}")
        self._port = int(sockname[1])
        self._server = server
        log.info("Modbus meter on udp %s:%d (unit %d)", self.host, self._port, self.device_id)

    async def _start_rtu(self) -> None:
        if self.line is None:  # kept across restarts: the gateway keeps its port open
            self.line = PtyLink()
            self.line.start()
        devices = [
            SimDevice(id=self.device_id, simdata=self._simdata(), action=self._action),
            # pymodbus's catch-all; its answers are never sent (see _silent_for_other_units)
            SimDevice(
                id=0,
                simdata=[SimData(0, count=16, datatype=DataType.REGISTERS)],
                action=self._unknown_unit,
            ),
        ]
        server = ModbusSerialServer(
            devices,
            port=self.line.device_path,
            framer=FramerType.ASCII if self.transport == "ascii" else FramerType.RTU,
            baudrate=self.baudrate,
            reconnect_delay=0,
            trace_packet=self._silent_for_other_units,
            trace_pdu=self._request_pdu,
        )
        await server.serve_forever(background=True)
        self._server = server
        log.info("Modbus meter on %s %s (unit %d)", self.transport.upper(),
                 self.line.gateway_path, self.device_id)

    def _request_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        """Requests in, answers out (pymodbus ``trace_pdu``); a hook for subclasses."""
        return pdu

    def _outgoing_tcp(self, sending: bool, data: bytes) -> bytes:
        """TCP frames in and out (pymodbus ``trace_packet``); a hook for subclasses' faults."""
        return data

    def _silent_for_other_units(self, sending: bool, data: bytes) -> bytes:
        """RTU, ASCII: no answer for other unit ids, as on an RS-485 line without that
        device (an ASCII frame is ``:`` and the unit in two hex digits)."""
        if not sending or not data:
            return data
        if self.transport == "ascii":
            try:
                unit = int(data[1:3], 16)
            except ValueError:
                return data
        else:
            unit = data[0]
        return b"" if unit != self.device_id else data

    def inject_garbage(self, count: int = 16) -> bytes:
        """RTU: write ``count`` random bytes to the gateway's end of the line now."""
        if self.line is None:
            raise RuntimeError("garbage injection needs an RTU simulator")
        return self.line.inject_garbage(count)

    def garble_answers(self, count: int = 1) -> None:
        """RTU: corrupt one byte of each of the next ``count`` answers (a CRC error)."""
        if self.line is None:
            raise RuntimeError("garbled answers need an RTU simulator")
        self.line.garble_answers = count

    async def stop(self) -> None:
        """Stop listening and close every client connection (RTU: and the line)."""
        server, self._server = self._server, None
        if server is None:
            return
        if self.rtu:
            await server.shutdown()
            line, self.line = self.line, None
            if line is not None:
                line.stop()
            return
        listener = server.transport
        await server.shutdown()
        if isinstance(listener, asyncio.Server):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(listener.wait_closed(), timeout=2.0)
        log.info("Modbus meter on %s:%s stopped", self.host, self._port)

    async def restart(self, downtime_s: float = 0.0) -> None:
        """Simulate a device restart: stop, stay away ``downtime_s``, start on the same port."""
        if self.rtu:  # keep the line (and its path): only the device goes silent
            server, self._server = self._server, None
            if server is not None:
                await server.shutdown()
            if downtime_s > 0:
                await asyncio.sleep(downtime_s)
            await self.start()
            return
        await self.stop()
        if downtime_s > 0:
            await asyncio.sleep(downtime_s)
        await self.start()

    # -- fault injection ---------------------------------------------------

    def inject_exception(self, code: int | ExcCodes | None) -> None:
        """Answer every request with Modbus exception ``code`` until cleared with ``None``.

        Typical codes: 4 device failure, 6 device busy, 11 gateway target failed.
        """
        self._exception = None if code is None else ExcCodes(code)
        log.info("Modbus meter: injected exception %s", self._exception)

    def clear_faults(self) -> None:
        """Remove injected exceptions and response delay."""
        self._exception = None
        self._delay_s = 0.0

    @property
    def injected_exception(self) -> ExcCodes | None:
        """The exception currently answered to every request, if any."""
        return self._exception

    @property
    def response_delay(self) -> float:
        """Seconds added before every answer."""
        return self._delay_s

    @response_delay.setter
    def response_delay(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("response delay must be >= 0")
        self._delay_s = float(seconds)

    def drop_connections(self) -> int:
        """Abort every client TCP connection now; return how many were dropped.

        The listener stays open, so clients can reconnect.
        """
        if self._server is None or isinstance(self._server, ModbusSerialServer | ModbusUdpServer):
            return 0
        dropped = 0
        for conn in list(self._server.active_connections.values()):
            transport = conn.transport
            if transport is not None:
                transport.abort()
                dropped += 1
        log.info("Modbus meter: dropped %d connection(s)", dropped)
        return dropped

    @property
    def connection_count(self) -> int:
        """Client connections open now."""
        if self._server is None or isinstance(self._server, ModbusSerialServer | ModbusUdpServer):
            return 0
        return len(self._server.active_connections)

    # -- device-side values ------------------------------------------------

    def get_value(self, name: str) -> float | int | bool:
        """Current stored value of a holding register, coil or discrete input by name."""
        spec = REGISTERS_BY_NAME[name]
        store = self._store(spec.table)
        regs = [store[spec.address + i] for i in range(spec.count)]
        return decode_value(spec, regs)

    def set_value(self, name: str, value: float) -> None:
        """Set a stored value from the device side (e.g. raise ``tamper_alarm``)."""
        spec = REGISTERS_BY_NAME[name]
        store = self._store(spec.table)
        for i, reg in enumerate(encode_value(spec, value)):
            store[spec.address + i] = reg

    def _store(self, table: Table) -> dict[int, int]:
        if table is Table.HOLDING:
            return self._holding
        if table is Table.COIL:
            return self._coils
        if table is Table.DISCRETE_INPUT:
            return self._discrete
        raise KeyError(f"{table} values come from the process model")

    # -- pymodbus plumbing ---------------------------------------------------

    @staticmethod
    def _simdata() -> tuple[list[SimData], list[SimData], list[SimData], list[SimData]]:
        """Separate blocks (coils, discrete inputs, holding, input) covering the map."""

        def span(table: Table) -> tuple[int, int]:
            addrs = _TABLE_ADDRESSES[table]
            return min(addrs), max(addrs) - min(addrs) + 1

        def regs(table: Table) -> list[SimData]:
            start, count = span(table)
            return [SimData(start, count=count, values=0, datatype=DataType.REGISTERS)]

        def bits(table: Table) -> list[SimData]:
            start, count = span(table)
            return [SimData(start, count=count, values=False, datatype=DataType.BITS)]

        return bits(Table.COIL), bits(Table.DISCRETE_INPUT), regs(Table.HOLDING), regs(Table.INPUT)

    async def _unknown_unit(self, *_args: object) -> ExcCodes:
        return ExcCodes.GATEWAY_NO_RESPONSE

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """Evaluate one request: faults, address check, writes, then fill the block.

        For bit tables pymodbus packs 16 bits per register and passes the
        register count, not the bit count, in ``count``.
        """
        table = _FC_TABLE.get(function_code)
        readback = set_values is None and function_code in _WRITE_FCS
        if not readback:  # a write's response re-reads with the write's code: one request
            self.request_count += 1
            if self._delay_s:
                await asyncio.sleep(self._delay_s)
            if self._exception is not None:
                return self._exception
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        valid = _TABLE_ADDRESSES[table] if set_values is None else _WRITABLE_ADDRESSES[table]
        if table in (Table.COIL, Table.DISCRETE_INPUT):
            n = len(set_values) if set_values is not None else 1
        else:
            n = len(set_values) if set_values is not None else count
        if any(a not in valid for a in range(address, address + n)):
            return ExcCodes.ILLEGAL_ADDRESS
        if set_values is not None and table in (Table.HOLDING, Table.COIL):
            store = self._store(table)
            for i, value in enumerate(set_values):
                store[address + i] = int(value)
        self._fill(table, start_address, registers)
        return None

    def _fill(self, table: Table, start_address: int, registers: list[int]) -> None:
        """Write current values into pymodbus's register list for ``table``."""
        if table is Table.INPUT:
            values = encode_reading(self.model.state_at(self._clock()))
        else:
            values = self._store(table)
        if table in (Table.COIL, Table.DISCRETE_INPUT):
            words: dict[int, int] = {}
            for bit_addr, bit in values.items():
                word = bit_addr // 16
                words[word] = words.get(word, 0) | ((1 if bit else 0) << (bit_addr % 16))
            for word, packed in words.items():
                registers[word - start_address] = packed
            return
        for addr, raw in values.items():
            registers[addr - start_address] = raw
