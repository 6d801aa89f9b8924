"""Simulated DL/T 645 electricity meters on one RS-485 line (a pty) or behind a serial
device server (a TCP socket carrying the same frames), fed by the energy-meter process
model (:mod:`hil.process.energy_meter`).

:class:`SimMeter` is one meter: its address, its version (2007 or 1997), the values of
the shipped identifier tables computed from its model's reading (three phases from the
model's single-phase equivalent: each phase carries a third of the current and power),
the writable parameters (demand period, slip time; password checked), and a
vendor-style identifier the standard does not have, :data:`MACHINE_STATE_DI` (format
``XX``: 0 off, 1 idle, 2 running), so that one meter can feed the energy model.

:class:`Dlt645Line` puts several meters on one line: it decodes what the gateway sends
and the meter addressed answers (every meter answers the broadcast address, and more
than one answer collides into garbage, as on a real line). Faults per meter:
:attr:`SimMeter.silent` (stops answering), :attr:`SimMeter.error_byte` (exception
frames), :attr:`SimMeter.delay` (slow answers), :attr:`SimMeter.bad_answers` (``checksum``,
``half``: half a frame, ``length``: a data byte short); on the line:
:meth:`Dlt645Line.inject_garbage`, and the pty's own faults (``line.cut``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import time
from typing import Literal

from drivers.dlt645.codec import (
    BROADCAST,
    ERROR,
    REPLY,
    Control,
    Dlt645FrameError,
    Format,
    Frame,
    FrameReader,
    Version,
    address_bytes,
    decode_number,
    di_bytes,
    di_text,
    encode_frame,
    encode_number,
    encode_text,
)
from drivers.dlt645.table import DataIdentifier, table
from hil.devices.lifecycle import SimulatedDevice
from hil.devices.pty_link import PtyLink
from hil.process.energy_meter import MeterModel, MeterReading

log = logging.getLogger(__name__)

#: the simulator's vendor-style identifier for the machine state (not in the standard)
MACHINE_STATE_DI = {2007: "04FE0001", 1997: "FE01"}
MACHINE_STATE_FORMAT = "XX"
#: the meters' password by default: level 02, password 000000
DEFAULT_PASSWORD = "02000000"
#: error byte bits: other error, no data requested, password wrong
ERR_OTHER, ERR_NO_DATA, ERR_PASSWORD = 0x01, 0x02, 0x04
#: share of the total import energy counted under each tariff 1..4
TARIFF_SHARES = (0.1, 0.4, 0.3, 0.2)
BadAnswer = Literal["checksum", "half", "length"]


def _phase(name: str) -> float:
    """Each phase a little apart, so that a phase mix-up shows."""
    return {"a": 1.0, "b": 1.002, "c": 0.998}.get(name[-1], 1.0)


def reading_value(name: str, reading: MeterReading, meter: SimMeter) -> float | str | None:
    """The value the meter shows for table entry ``name`` (None: the meter lacks it)."""
    p, pf, energy = reading.active_power_kw, reading.power_factor, reading.energy_import_kwh
    q = p * math.tan(math.acos(max(min(pf, 1.0), 0.01)))
    parts = name.split(".")
    match parts:
        case ["energy", "import" | "combined", "total"]:
            return energy
        case ["energy", "import", tariff] if tariff.startswith("tariff"):
            return energy * TARIFF_SHARES[int(tariff[-1]) - 1]
        case ["energy", "import", _phase_name]:
            return energy / 3
        case ["energy", "export", *_]:
            return 0.0
        case ["energy", "reactive", "combined1" | "q1" | "import", "total"]:
            return energy * q / p if p > 0 else 0.0
        case ["energy", "reactive", *_]:
            return 0.0
        case ["energy", "apparent", "import", "total"]:
            return energy / pf
        case ["energy", "apparent", *_]:
            return 0.0
        case ["demand", "import", "total"]:
            return meter.max_demand[0]
        case ["demand", "import", "total", "time"]:
            return meter.max_demand[1]
        case ["demand", "import", _ph]:
            return meter.max_demand[0] / 3
        case ["demand", "import", _ph, "time"]:
            return meter.max_demand[1]
        case ["demand", "export", *rest]:
            return "0001010000" if rest[-1:] == ["time"] else 0.0
        case ["voltage", ph]:
            return reading.voltage_v * _phase(ph)
        case ["current", "n"]:
            return 0.0
        case ["current", ph]:
            return reading.current_a / 3 * _phase(ph)
        case ["power", "active", "total" | "avg_1min"]:
            return p
        case ["power", "active", ph]:
            return p / 3 * _phase(ph)
        case ["power", "reactive", "total"]:
            return q
        case ["power", "reactive", ph]:
            return q / 3
        case ["power", "apparent", "total"]:
            return p / pf
        case ["power", "apparent", ph]:
            return p / pf / 3
        case ["power_factor", _]:
            return pf
        case ["angle", _]:
            return math.degrees(math.acos(pf))
        case ["frequency"]:
            return reading.frequency_hz
        case ["demand", "active", "now"]:
            return p
        case ["demand", "reactive", "now"]:
            return q
        case ["demand", "apparent", "now"]:
            return p / pf
        case ["temperature"]:
            return reading.temperature_c
        case ["clock", "date"]:
            now = time.localtime(reading.timestamp)
            return time.strftime("%y%m%d", now) + f"{(now.tm_wday + 1) % 7:02d}"
        case ["clock", "time"]:
            return time.strftime("%H%M%S", time.localtime(reading.timestamp))
        case ["param", key]:
            return meter.params[key]
        case ["meter", "address" | "number"]:
            return meter.address
    return None


class SimMeter:
    """One DL/T 645 meter: what it answers to a request addressed to it."""

    def __init__(self, address: str, model: MeterModel, version: Version = 2007,
                 password: str = DEFAULT_PASSWORD) -> None:
        address_bytes(address)  # checks it
        self.address = address
        self.model = model
        self.version: Version = version
        self.password = password
        self.table = table(version)
        #: answers block reads (DI1 = FF); a meter that does not answers "no data"
        self.block_reads = True
        members: dict[str, list[tuple[int, str]]] = {}
        for di, (block, at) in self.table.blocks.items():
            members.setdefault(block, []).append((at, di))
        self._block_members = {b: [di for _, di in sorted(m)] for b, m in members.items()}
        self.params: dict[str, float] = {"demand_period": 15.0, "slip_time": 1.0}
        #: (kW, when as YYMMDDhhmm or MMDDhhmm) the largest power seen
        self.max_demand: tuple[float, str] = (0.0, "0001010000" if version == 2007 else "01010000")
        #: faults: no answer at all; every read answered with this error byte; seconds
        #: before each answer; bad answers still to send (of a kind)
        self.silent = False
        self.error_byte: int | None = None
        self.delay = 0.0
        self.bad_answers: dict[BadAnswer, int] = {"checksum": 0, "half": 0, "length": 0}
        #: identifiers answered, writes applied, requests ignored while silent
        self.reads = 0
        self.writes = 0
        self.ignored = 0

    def reading(self) -> MeterReading:
        reading = self.model.state_at(time.time())
        if reading.active_power_kw > self.max_demand[0]:
            when = time.strftime("%y%m%d%H%M" if self.version == 2007 else "%m%d%H%M",
                                 time.localtime(reading.timestamp))
            self.max_demand = (reading.active_power_kw, when)
        return reading

    def value_bytes(self, di: str) -> bytes | None:
        """The data of identifier ``di`` now (None: the meter does not have it); a block
        identifier (``0201FF00``) gives its members' data one after the other."""
        members = self._block_members.get(di)
        if members is not None:
            if not self.block_reads:
                return None
            parts = [self.value_bytes(member) for member in members]
            found = [p for p in parts if p is not None]
            return b"".join(found) if len(found) == len(parts) else None
        if di == MACHINE_STATE_DI[self.version]:
            state = int(self.reading().machine_state)
            return encode_number(state, Format.parse(MACHINE_STATE_FORMAT))
        entries = self.table.by_di.get(di)
        if not entries:
            return None
        reading = self.reading()
        record = bytearray(entries[0].record or 0)
        for entry in entries:
            value = reading_value(entry.name, reading, self)
            if value is None:
                return None
            record[entry.offset:entry.end] = _encode(value, entry)
        return bytes(record)

    def answer(self, frame: Frame) -> Frame | None:
        """The answer to a request addressed to this meter (None: no answer)."""
        if self.silent:
            self.ignored += 1
            return None
        function = frame.function
        if function == Control.READ_ADDRESS_2007 and self.version == 2007:
            return Frame(self.address, function | REPLY, address_bytes(self.address))
        reads = {2007: Control.READ_2007, 1997: Control.READ_1997}
        writes = {2007: Control.WRITE_2007, 1997: Control.WRITE_1997}
        if function == reads[self.version]:
            return self._read(frame)
        if function == writes[self.version]:
            return self._write(frame)
        return self._error(function, ERR_OTHER)

    def _error(self, function: int, error: int) -> Frame:
        return Frame(self.address, function | REPLY | ERROR, bytes([error]))

    def _read(self, frame: Frame) -> Frame:
        size = 4 if self.version == 2007 else 2
        if len(frame.data) < size:
            return self._error(frame.function, ERR_OTHER)
        if self.error_byte is not None:
            return self._error(frame.function, self.error_byte)
        di = di_text(frame.data[:size])
        data = self.value_bytes(di)
        if data is None:
            return self._error(frame.function, ERR_NO_DATA)
        self.reads += 1
        return Frame(self.address, frame.function | REPLY, frame.data[:size] + data)

    def _write(self, frame: Frame) -> Frame:
        size = 4 if self.version == 2007 else 2
        extra = 4 if self.version == 2007 else 0  # the operator code
        head = size + 4 + extra
        if len(frame.data) < head:
            return self._error(frame.function, ERR_OTHER)
        di = di_text(frame.data[:size])
        password = frame.data[size:size + 4]
        expected = bytes([int(self.password[:2], 16)]) + bytes.fromhex(self.password[2:])[::-1]
        if password != expected:
            return self._error(frame.function, ERR_PASSWORD)
        entries = self.table.by_di.get(di, ())
        entry = next((e for e in entries if e.writable), None)
        if entry is None:
            return self._error(frame.function, ERR_OTHER)
        try:
            value = decode_number(frame.data[head:], entry.format)
        except Dlt645FrameError:
            return self._error(frame.function, ERR_OTHER)
        if entry.range is not None and not entry.range[0] <= value <= entry.range[1]:
            return self._error(frame.function, ERR_OTHER)
        self.params[entry.name.split(".")[-1]] = value
        self.writes += 1
        return Frame(self.address, frame.function | REPLY)

    def get_value(self, name: str) -> float | str | None:
        """The value of table entry ``name`` now (what the gateway should read)."""
        return reading_value(name, self.reading(), self)

    def encode_answer(self, answer: Frame, preamble: int) -> bytes:
        """The answer's bytes, spoiled by the next pending bad answer, if any."""
        kind = next((k for k, n in self.bad_answers.items() if n > 0), None)
        if kind is None:
            return answer.encode(preamble)
        self.bad_answers[kind] -= 1
        if kind == "length":
            return Frame(answer.address, answer.control, answer.data[:-1]).encode(preamble)
        raw = answer.encode(preamble)
        if kind == "half":
            return raw[: len(raw) // 2]
        return raw[:-2] + bytes([(raw[-2] + 1) & 0xFF, raw[-1]])  # checksum off by one


def _encode(value: float | str, entry: DataIdentifier) -> bytes:
    fmt = entry.format
    if isinstance(value, str):
        return encode_text(value, fmt)
    units = fmt.largest / 10 ** fmt.decimals
    low = -units if fmt.signed else 0.0
    return encode_number(min(max(value, low), units), fmt)


class Dlt645Line(SimulatedDevice):
    """Meters on one line: a pty pair (RS-485) or a TCP server (a serial device server).

    ``transport``: ``serial`` (:attr:`serial_path` for the gateway; ``baudrate`` paces the
    pty like a real line) or ``tcp`` (:attr:`port` on ``host``). Answers start with
    ``answer_preamble`` FE bytes, as many meters send them.
    """

    def __init__(self, meters: list[SimMeter], transport: Literal["serial", "tcp"] = "serial",
                 host: str = "127.0.0.1", port: int = 0, seed: int = 0,
                 baudrate: int | None = None, answer_preamble: int = 2) -> None:
        addresses = [m.address for m in meters]
        if not meters or len(set(addresses)) != len(addresses):
            raise ValueError(f"meter addresses must be distinct and not empty: {addresses}")
        self.meters = {m.address: m for m in meters}
        self.transport = transport
        self.host = host
        self.port = port
        self.answer_preamble = answer_preamble
        self.line = PtyLink(seed, baudrate=baudrate)
        self._rng = random.Random(seed)
        self._fd = -1
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._reader = FrameReader()
        #: requests decoded, and bytes from the gateway that were no frame
        self.requests = 0
        self.rx_bad = 0
        self._pending: set[asyncio.TimerHandle] = set()

    @property
    def serial_path(self) -> str:
        """The serial device the gateway opens (every meter's device names it as ``port``)."""
        if not self.line.gateway_path:
            raise RuntimeError("start() the line first (transport serial)")
        return self.line.gateway_path

    def meter(self, address: str) -> SimMeter:
        return self.meters[address]

    async def start(self) -> None:
        if self.transport == "serial":
            self.line.start()
            self._fd = os.open(self.line.device_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            asyncio.get_running_loop().add_reader(self._fd, self._on_readable)
            log.info("dlt645 line on %s: meters %s", self.serial_path, ", ".join(self.meters))
            return
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("dlt645 serial device server on %s:%d: meters %s", self.host, self.port,
                 ", ".join(self.meters))

    async def stop(self) -> None:
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
        if self._server is not None:
            self._server.close()
            self.drop_connections()
            if self._handlers:  # each ends on its aborted connection; none left to cancel
                await asyncio.wait(set(self._handlers), timeout=2.0)
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        if self._fd >= 0:
            asyncio.get_running_loop().remove_reader(self._fd)
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        self.line.stop()

    def drop_connections(self) -> None:
        """TCP: abort every client connection (the serial device server restarted)."""
        for writer in list(self._clients):
            transport = writer.transport
            if transport is not None:
                transport.abort()
        self._clients.clear()

    def inject_garbage(self, count: int = 32) -> bytes:
        """Random bytes towards the gateway now (noise on the line); return them."""
        data = bytes(self._rng.randrange(256) for _ in range(count))
        self._send(data, None)
        return data

    # -- the line -----------------------------------------------------------------------
    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except OSError:
            return
        self._on_bytes(data, None)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        self._clients.add(writer)
        frames = FrameReader()
        try:
            while data := await reader.read(4096):
                self._on_bytes(data, writer, frames)
        except (ConnectionError, OSError):
            pass
        finally:
            self._clients.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    def _on_bytes(self, data: bytes, writer: asyncio.StreamWriter | None,
                  frames: FrameReader | None = None) -> None:
        reader = frames or self._reader
        before = reader.discarded + reader.rejected
        for frame in reader.feed(data):
            if frame.is_reply:
                continue  # another meter's answer (or our own, echoed)
            self.requests += 1
            self._dispatch(frame, writer)
        self.rx_bad += reader.discarded + reader.rejected - before

    def _dispatch(self, frame: Frame, writer: asyncio.StreamWriter | None) -> None:
        if frame.address == BROADCAST:
            answering = list(self.meters.values())
        else:
            found = self.meters.get(frame.address)
            answering = [found] if found is not None else []
        answers = [(m, a) for m in answering if (a := m.answer(frame)) is not None]
        if not answers:
            return
        if len(answers) > 1:  # several meters talk at once: a collision on the line
            noise = bytes(self._rng.randrange(256) for _ in range(24))
            self._later(max(m.delay for m, _ in answers), noise, writer)
            return
        meter, answer = answers[0]
        self._later(meter.delay, meter.encode_answer(answer, self.answer_preamble), writer)

    def _later(self, delay: float, data: bytes, writer: asyncio.StreamWriter | None) -> None:
        if delay <= 0:
            self._send(data, writer)
            return
        loop = asyncio.get_running_loop()
        holder: list[asyncio.TimerHandle] = []

        def fire() -> None:
            self._pending.discard(holder[0])
            self._send(data, writer)

        handle = loop.call_later(delay, fire)
        holder.append(handle)
        self._pending.add(handle)

    def _send(self, data: bytes, writer: asyncio.StreamWriter | None) -> None:
        if self.transport == "serial":
            if self._fd >= 0:
                with contextlib.suppress(BlockingIOError, OSError):
                    os.write(self._fd, data)
            return
        targets = [writer] if writer is not None else list(self._clients)
        for target in targets:
            if not target.is_closing():
                target.write(data)


def meter_address(index: int) -> str:
    """The simulator's address of its ``index``-th meter: 000000000001, 000000000002, ..."""
    return f"{index + 1:012d}"


def read_request_for(meter: SimMeter, di: str) -> bytes:
    """A read of ``di`` from ``meter`` (for tests and the bench)."""
    control = Control.READ_2007 if meter.version == 2007 else Control.READ_1997
    return encode_frame(meter.address, control, di_bytes(di, meter.version), 4)

