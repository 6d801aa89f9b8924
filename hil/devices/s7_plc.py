"""Simulated Siemens S7 PLC on S7comm over ISO-on-TCP (RFC 1006), fed by the
injection-moulding process model.

A small S7comm server of its own (not python-snap7's server, which the driver's library
ships: the simulator must not share the code it checks), with what a realistic test
needs and snap7's server lacks: multi-variable reads and writes with a return code per
item, PDU size negotiation capped by the CPU, connection-type accounting (PG, OP, S7
basic) with one PG connection as on an S7-300 or S7-200 SMART, PUT/GET switched off
(header error 0x8104, as an S7-1200/1500), optimized DBs (item return code 0x05), SZL
identification (0x0011 order number, 0x001C component names), and faults: slow answers,
garbage on the stream, corrupt PDUs, half frames, dropped connections, a stopped device.

Memory (see hil/README.md for the table): DB1 the machine's values from the process
model, DB2 its setpoints (melt temperature, hold time; writes are applied to the model),
DB3 a fixed value of every S7 type, M, I, Q, timers and counters; areas and DBs may be
given as byte images instead (``memory={"DB5": b"...", "M": b"..."}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import struct
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from hil.devices.lifecycle import SimulatedDevice
from hil.netutil import free_port
from hil.process.injection_moulding import CyclePhase, InjectionMouldingModel

__all__ = ["CPU_PROFILES", "CpuProfile", "S7PlcSimulator", "type_values_db"]

log = logging.getLogger(__name__)

# S7comm constants, written out here on purpose (the driver has its own)
_JOB, _ACK, _ACK_DATA, _USERDATA = 0x01, 0x02, 0x03, 0x07
_SETUP, _READ, _WRITE = 0xF0, 0x04, 0x05
_AREA_NAMES = {0x81: "I", 0x82: "Q", 0x83: "M", 0x84: "DB", 0x1C: "C", 0x1D: "T"}
_CONN_TYPES = {0x01: "pg", 0x02: "op", 0x03: "basic"}


@dataclass(frozen=True)
class CpuProfile:
    """What a CPU family answers: order number, names, PDU size, slot, limits."""

    order_number: str
    module_name: str
    module_type: str
    firmware: tuple[int, int, int]
    pdu_size: int
    slot: int
    max_items: int = 20
    connections: Mapping[str, int] = field(
        default_factory=lambda: {"pg": 1, "op": 4, "basic": 4})


CPU_PROFILES: dict[str, CpuProfile] = {
    "s7-1200": CpuProfile("6ES7 214-1AG40-0XB0", "CPU 1214C DC/DC/DC", "CPU 1214C DC/DC/DC",
                          (4, 5, 2), 240, 1),
    "s7-1500": CpuProfile("6ES7 516-3AN02-0AB0", "CPU 1516-3 PN/DP", "CPU 1516-3 PN/DP",
                          (2, 9, 4), 960, 1),
    "s7-300": CpuProfile("6ES7 315-2EH14-0AB0", "CPU 315-2 PN/DP", "CPU 315-2 PN/DP",
                         (3, 2, 6), 240, 2),
    "s7-200smart": CpuProfile("6ES7 288-1ST20-0AA0", "CPU ST20", "CPU ST20 DC/DC/DC",
                              (2, 7, 0), 240, 1, connections={"pg": 1, "op": 8, "basic": 8}),
}


def _bcd(n: int) -> int:
    return (n // 10) << 4 | n % 10


def _date_and_time(moment: dt.datetime) -> bytes:
    ms = moment.microsecond // 1000
    return bytes([_bcd(moment.year % 100), _bcd(moment.month), _bcd(moment.day),
                  _bcd(moment.hour), _bcd(moment.minute), _bcd(moment.second),
                  _bcd(ms // 10), (ms % 10) << 4 | (moment.isoweekday() % 7 + 1)])


def _s7_string(text: bytes, declared: int) -> bytes:
    return bytes([declared, len(text)]) + text.ljust(declared, b"\0")


def type_values_db() -> bytes:
    """DB3: one fixed value of every S7 type (the table in hil/README.md)."""
    db = bytearray(118)
    db[0] = 0b01  # 0.0 true, 0.1 false
    db[1] = 200
    struct.pack_into(">HhIif", db, 2, 54321, -1234, 3_000_000_000, -123456789, 1.5)
    struct.pack_into(">dqQ", db, 18, 3.25, -(2**62) - 7, 2**64 - 1)
    db[42:54] = _s7_string(b"mould-A17", 10)
    text = "模具A17".encode("utf-16-be")
    db[54:70] = struct.pack(">HH", 6, len(text) // 2) + text.ljust(12, b"\0")
    db[70:78] = _date_and_time(dt.datetime(2026, 1, 2, 3, 4, 5, 250000))
    struct.pack_into(">bBHIQ", db, 78, -12, 250, 60000, 4_000_000_000, 2**63 + 5)
    db[94] = ord("Z")
    db[96:118] = _s7_string("注塑机".encode("gbk"), 20)
    return bytes(db)


class S7PlcSimulator(SimulatedDevice):
    """An S7 PLC on ISO-on-TCP.

    Args:
        model: the process model behind DB1, M, I, Q, T and C (default: seeded, seed 0).
        use_model: False serves the memory images alone (golden cases).
        cpu: a key of :data:`CPU_PROFILES` (PDU size, slot, order number, limits).
        pdu_size: the most the CPU grants (default the profile's).
        memory: byte images of areas or DBs by name (``"DB5"``, ``"M"``, ``"I"``, ``"Q"``,
            ``"T"``, ``"C"``), replacing the defaults.
        connections: most connections of each type at once (default the profile's).
        clock: wall-clock time source for the process model.
    """

    def __init__(
        self,
        model: InjectionMouldingModel | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        cpu: str = "s7-1200",
        pdu_size: int | None = None,
        memory: Mapping[str, bytes] | None = None,
        connections: Mapping[str, int] | None = None,
        use_model: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if cpu not in CPU_PROFILES:
            raise ValueError(f"unknown CPU {cpu!r}; one of {', '.join(CPU_PROFILES)}")
        self.profile = CPU_PROFILES[cpu]
        self.cpu = cpu
        self.model = model or InjectionMouldingModel(seed=0)
        #: the model feeds DB1, M, I, Q, T, C and takes the setpoints of DB2 (else: images)
        self.use_model = use_model
        self.host = host
        self.port = port or free_port(host)
        self.pdu_size = pdu_size or self.profile.pdu_size
        self.max_connections = dict(connections or self.profile.connections)
        self.clock = clock
        self.areas: dict[str, bytearray] = {
            "M": bytearray(64), "I": bytearray(8), "Q": bytearray(8),
            "T": bytearray(32), "C": bytearray(32),
        }
        self.dbs: dict[int, bytearray] = {1: bytearray(66), 2: bytearray(8),
                                           3: bytearray(type_values_db())}
        if use_model:
            struct.pack_into(">ff", self.dbs[2], 0, self.model.melt_setpoint, self.model.hold_time)
        for name, image in (memory or {}).items():
            key = name.upper()
            if key.startswith("DB"):
                self.dbs[int(key[2:])] = bytearray(image)
            elif key in self.areas:
                self.areas[key] = bytearray(image)
            else:
                raise ValueError(f"unknown area {name!r}")
        # faults and switches
        self.put_get = True
        self.optimized_dbs: set[int] = set()
        self.item_errors: dict[str, int] = {}
        self.response_delay = 0.0
        self._garbage = 0
        self._corrupt = 0
        self._half = 0
        # accounting
        self.connections: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.items_read = 0
        self.writes: list[tuple[str, int, bytes]] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._readers: dict[asyncio.StreamWriter, asyncio.StreamReader] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                      reuse_address=True)
            log.info("S7 PLC (%s) listening on %s", self.cpu, self.address)

    async def stop(self) -> None:
        """Stop listening and drop every connection (the PLC powered off)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self.drop_connections()
        if self._tasks:  # aborted transports end the handlers; cancelling them makes noise
            _, pending = await asyncio.wait(list(self._tasks), timeout=2.0)
            for task in pending:
                task.cancel()
        if server is not None:
            with contextlib.suppress(Exception):
                await server.wait_closed()

    async def restart(self, downtime_s: float = 0.0) -> None:
        await self.stop()
        await asyncio.sleep(downtime_s)
        await self.start()

    def drop_connections(self) -> int:
        """Abort every client connection (cable pulled); returns how many."""
        writers = list(self._writers)
        for writer in writers:
            writer.transport.abort()
        return len(writers)

    # -- faults ---------------------------------------------------------------------
    def garbage_next(self, n: int = 1) -> None:
        """The next ``n`` answers are random bytes, not TPKT frames."""
        self._garbage = n

    def corrupt_next(self, n: int = 1) -> None:
        """The next ``n`` read answers are whole frames whose S7 data is cut short."""
        self._corrupt = n

    def half_frames_next(self, n: int = 1) -> None:
        """The next ``n`` answers stop halfway (the rest never comes)."""
        self._half = n

    def clear_faults(self) -> None:
        self.put_get = True
        self.optimized_dbs.clear()
        self.item_errors.clear()
        self.response_delay = 0.0
        self._garbage = self._corrupt = self._half = 0

    # -- memory ---------------------------------------------------------------------
    def read_bytes(self, area: str, start: int, count: int, db: int = 0) -> bytes:
        memory = self.dbs[db] if area == "DB" else self.areas[area]
        return bytes(memory[start:start + count])

    def _refresh(self) -> None:
        if not self.use_model:
            return
        r = self.model.state_at(self.clock())
        db1 = self.dbs[1]
        struct.pack_into(">ffffih", db1, 0, r.melt_temp_c, r.mould_temp_c,
                         r.injection_pressure_bar, r.cycle_time_s, r.part_count, int(r.phase))
        running = r.phase in (CyclePhase.INJECT, CyclePhase.HOLD, CyclePhase.COOL)
        db1[22] = 1 if running else 0
        db1[24:42] = _s7_string(r.state.encode("ascii"), 16)
        start = dt.datetime.fromtimestamp(r.cycle_start).replace(microsecond=0)
        start = start.replace(microsecond=int(r.cycle_start % 1 * 1000) * 1000)
        db1[42:50] = _date_and_time(start)
        zones = (tuple(r.zone_temps_c) + (0.0,) * 4)[:4]
        struct.pack_into(">ffff", db1, 50, *zones)
        struct.pack_into(">ff", self.dbs[2], 0, r.melt_setpoint_c, r.hold_time_s)
        m = self.areas["M"]
        m[0] = 1 if running else 0
        struct.pack_into(">hf", m, 10, int(r.phase), r.melt_temp_c)
        door_closed = r.phase not in (CyclePhase.OPEN, CyclePhase.EJECT)
        self.areas["I"][0] = (1 if door_closed else 0) | 0b10  # I0.1: e-stop circuit healthy
        q = self.areas["Q"]
        q[0] = (q[0] & ~0b11) | 0b01 | (0b10 if r.phase is CyclePhase.INJECT else 0)
        struct.pack_into(">H", self.areas["C"], 6, r.part_count % 1000)  # C3
        tenths = min(999, int((self.clock() - r.cycle_start) * 10))  # T5: cycle time, 100 ms
        struct.pack_into(">H", self.areas["T"], 10, 0x1000 | _bcd(tenths // 100) << 8
                         | _bcd(tenths % 100))

    def _apply_setpoints(self) -> None:
        if not self.use_model:
            return
        melt, hold = struct.unpack_from(">ff", self.dbs[2], 0)
        if 100.0 <= melt <= 350.0:
            self.model.set_melt_setpoint(melt)
        if 0.1 <= hold <= 30.0:
            self.model.set_hold_time(hold)

    # -- connection -----------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self._readers[writer] = reader
        kind: str | None = None
        pdu = self.pdu_size
        try:
            while True:
                frame = await _read_tpkt(reader)
                if frame is None:
                    return
                if len(frame) < 2:
                    return
                cotp_type = frame[1] & 0xF0
                if cotp_type == 0xE0:  # connection request
                    kind = self._accept(frame, writer)
                    if kind is None:
                        await writer.drain()
                        return
                elif cotp_type == 0x80:  # disconnect request
                    return
                elif cotp_type == 0xF0 and kind is not None:
                    s7 = frame[3:]
                    answer, pdu = self._answer(s7, pdu)
                    if answer is not None:
                        await self._send(writer, answer)
                else:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            if kind is not None:
                self.connections[kind] -= 1
            self._writers.discard(writer)
            self._readers.pop(writer, None)
            writer.transport.abort()
            self._tasks.discard(task)

    def _accept(self, frame: bytes, writer: asyncio.StreamWriter) -> str | None:
        params = _cotp_params(frame[7:])
        remote = params.get(0xC2, b"\x00\x00")
        remote_tsap = int.from_bytes(remote, "big") if len(remote) == 2 else 0
        kind = _CONN_TYPES.get(remote_tsap >> 8)
        slot, rack = remote_tsap & 0x1F, (remote_tsap >> 5) & 0x7
        src_ref = int.from_bytes(frame[4:6], "big")
        if kind is None or rack != 0 or slot not in (self.profile.slot, 0):
            self.refused["tsap"] += 1
            log.info("S7 PLC: connection refused: TSAP %04X (rack %d slot %d)", remote_tsap,
                     rack, slot)
            writer.write(_tpkt(bytes([6, 0x80]) + src_ref.to_bytes(2, "big") + b"\x00\x01\x00"))
            return None
        if self.connections[kind] >= self.max_connections.get(kind, 0):
            self.refused[kind] += 1
            log.info("S7 PLC: %s connection refused: all %d in use", kind.upper(),
                     self.max_connections.get(kind, 0))
            writer.write(_tpkt(bytes([6, 0x80]) + src_ref.to_bytes(2, "big") + b"\x00\x01\x04"))
            return None
        self.connections[kind] += 1
        cc_params = b"".join(bytes([code, len(value)]) + value for code, value in params.items())
        cc = bytes([6 + len(cc_params), 0xD0]) + src_ref.to_bytes(2, "big") + b"\x00\x01\x00"
        writer.write(_tpkt(cc + cc_params))
        return kind

    async def _send(self, writer: asyncio.StreamWriter, s7: bytes) -> None:
        if self.response_delay:
            await asyncio.sleep(self.response_delay)
        frame = _tpkt(b"\x02\xf0\x80" + s7)
        if self._garbage:
            self._garbage -= 1
            frame = os.urandom(len(frame)).replace(b"\x03", b"\x7f")
        elif self._half:
            self._half -= 1
            writer.write(frame[:len(frame) // 2])
            await writer.drain()
            while await self._readers[writer].read(4096):  # the rest never comes
                pass
            return
        writer.write(frame)
        await writer.drain()

    # -- S7 jobs --------------------------------------------------------------------
    def _answer(self, s7: bytes, pdu: int) -> tuple[bytes | None, int]:
        if len(s7) < 10 or s7[0] != 0x32:
            self.requests["bad"] += 1
            return None, pdu
        kind, ref, plen, dlen = s7[1], *struct.unpack(">HHH", s7[4:10])
        param, data = s7[10:10 + plen], s7[10 + plen:10 + plen + dlen]
        if kind == _USERDATA:
            self.requests["userdata"] += 1
            return self._userdata(ref, param, data), pdu
        if kind != _JOB or not param:
            return _header(_ACK, ref, b"", b"", 0x8500), pdu
        function = param[0]
        if function == _SETUP:
            self.requests["setup"] += 1
            asked = struct.unpack(">H", param[6:8])[0]
            pdu = max(240, min(asked, self.pdu_size))
            answer = param[:6] + struct.pack(">H", pdu)
            return _header(_ACK_DATA, ref, answer, b""), pdu
        if len(s7) > pdu:
            return _header(_ACK, ref, b"", b"", 0x8500), pdu
        if function in (_READ, _WRITE):
            self.requests["read" if function == _READ else "write"] += 1
            if not self.put_get:
                return _header(_ACK, ref, b"", b"", 0x8104), pdu
            count = param[1]
            specs = [param[2 + 12 * i:14 + 12 * i] for i in range(count)]
            if count > self.profile.max_items or any(len(sp) != 12 for sp in specs):
                return _header(_ACK, ref, b"", b"", 0x8500), pdu
            if function == _READ:
                return self._read(ref, specs, pdu), pdu
            self._refresh()
            return self._write(ref, specs, data), pdu
        return _header(_ACK, ref, b"", b"", 0x8104), pdu

    def _locate(self, spec: bytes) -> tuple[str, bytearray | None, int, int, int, int]:
        """(name, memory, byte start, bytes, bit or -1, error code or 0) of an item spec."""
        transport, count, db, area = spec[3], *struct.unpack(">HH", spec[4:8]), spec[8]
        address = int.from_bytes(spec[9:12], "big")
        name = _AREA_NAMES.get(area)
        if spec[0] != 0x12 or spec[2] != 0x10 or name is None:
            return "?", None, 0, 0, -1, 0x05
        if name in ("T", "C"):
            if transport not in (0x1C, 0x1D, 0x02, 0x04):
                return name, None, 0, 0, -1, 0x06
            start, size, bit = address * 2, count * 2, -1
        elif transport == 0x01:
            start, size, bit = address >> 3, 1, address & 7
            if count != 1:
                return name, None, 0, 0, -1, 0x07
        else:
            width = {0x02: 1, 0x03: 1, 0x04: 2, 0x05: 2, 0x06: 4, 0x07: 4, 0x08: 4}.get(transport)
            if width is None or address & 7:
                return name, None, 0, 0, -1, 0x06
            start, size, bit = address >> 3, count * width, -1
        label = f"DB{db}" if name == "DB" else name
        if label in self.item_errors:
            return label, None, 0, 0, -1, self.item_errors[label]
        if name == "DB":
            if db in self.optimized_dbs:
                return label, None, 0, 0, -1, 0x05
            memory = self.dbs.get(db)
            if memory is None:
                return label, None, 0, 0, -1, 0x0A
        else:
            memory = self.areas[name]
        if start + size > len(memory):
            return label, None, 0, 0, -1, 0x05
        return label, memory, start, size, bit, 0

    def _read(self, ref: int, specs: list[bytes], pdu: int) -> bytes:
        self._refresh()
        parts = []
        for i, spec in enumerate(specs):
            label, memory, start, size, bit, error = self._locate(spec)
            if memory is None:
                parts.append(bytes([error, 0, 0, 0]))
                continue
            self.items_read += 1
            if bit >= 0:
                value = bytes([(memory[start] >> bit) & 1])
                item = bytes([0xFF, 0x03]) + struct.pack(">H", 1) + value
            elif label[0] in "TC":
                value = bytes(memory[start:start + size])
                item = bytes([0xFF, 0x09]) + struct.pack(">H", size) + value
            else:
                value = bytes(memory[start:start + size])
                item = bytes([0xFF, 0x04]) + struct.pack(">H", size * 8) + value
            if self._corrupt:
                self._corrupt -= 1
                item = item[:-1]  # the length says one byte more than comes
            if len(value) % 2 and i < len(specs) - 1:
                item += b"\0"
            parts.append(item)
        data = b"".join(parts)
        if 14 + len(data) > pdu:
            return _header(_ACK, ref, b"", b"", 0x8500)
        return _header(_ACK_DATA, ref, bytes([_READ, len(specs)]), data)

    def _write(self, ref: int, specs: list[bytes], data: bytes) -> bytes:
        codes = []
        pos = 0
        for spec in specs:
            if pos + 4 > len(data):
                codes.append(0x07)
                continue
            transport, length = data[pos + 1], struct.unpack(">H", data[pos + 2:pos + 4])[0]
            size = (length + 7) // 8 if transport in (0x03, 0x04, 0x05) else length
            value = data[pos + 4:pos + 4 + size]
            pos += 4 + size + (size % 2)
            label, memory, start, want, bit, error = self._locate(spec)
            if memory is None:
                codes.append(error)
                continue
            if len(value) != want:
                codes.append(0x07)
                continue
            if bit >= 0:
                mask = 1 << bit
                memory[start] = (memory[start] | mask) if value[0] else (memory[start] & ~mask)
            else:
                memory[start:start + want] = value
            self.writes.append((label, start, bytes(value)))
            codes.append(0xFF)
        if any(label == "DB2" for label, _, _ in self.writes[-len(specs):]):
            self._apply_setpoints()
        return _header(_ACK_DATA, ref, bytes([_WRITE, len(specs)]), bytes(codes))

    def _userdata(self, ref: int, param: bytes, data: bytes) -> bytes:
        group, sub = param[5] & 0x0F if len(param) > 6 else 0, param[6] if len(param) > 6 else 0
        if group != 4 or sub != 1 or len(data) < 8:
            out_param = bytes([0, 1, 0x12, 8, 0x12, 0x80 | group, sub, 0, 0, 0, 0x81, 0x04])
            return _header(_USERDATA, ref, out_param, bytes([0x0A, 0, 0, 0]))
        szl_id, index = struct.unpack(">HH", data[4:8])
        body = self._szl(szl_id)
        out_param = bytes([0, 1, 0x12, 8, 0x12, 0x84, 1, 0, 0, 0, 0, 0])
        if body is None:
            return _header(_USERDATA, ref, out_param, bytes([0x0A, 0, 0, 0]))
        payload = struct.pack(">HH", szl_id, index) + body
        return _header(_USERDATA, ref, out_param,
                       bytes([0xFF, 0x09]) + struct.pack(">H", len(payload)) + payload)

    def _szl(self, szl_id: int) -> bytes | None:
        p = self.profile
        if szl_id == 0x0011:  # module identification: order number and firmware
            order = p.order_number.encode().ljust(20, b" ")
            records = [struct.pack(">H", 1) + order + b"\x00\x00\x00\x00\x00\x00",
                       struct.pack(">H", 7) + b"\x20" * 20 + b"\x00\x00V"
                       + bytes(p.firmware)]
            return struct.pack(">HH", 28, len(records)) + b"".join(records)
        if szl_id == 0x001C:  # component identification: names
            texts = {1: b"chenxing-hil", 2: p.module_name.encode(), 3: b"injection moulding",
                     4: b"Original Siemens Equipment", 5: b"S C-HIL00000001",
                     7: p.module_type.encode()}
            records = [struct.pack(">H", i) + t.ljust(32, b"\0") for i, t in texts.items()]
            return struct.pack(">HH", 34, len(records)) + b"".join(records)
        return None


def _tpkt(payload: bytes) -> bytes:
    return struct.pack(">BBH", 3, 0, len(payload) + 4) + payload


def _header(kind: int, ref: int, param: bytes, data: bytes, error: int = 0) -> bytes:
    """An S7 header and its sections; a refused job is an ACK (type 2) with the error class
    and code and nothing else: 19 bytes with TPKT and COTP, as an S7-1200 sends for 0x8104."""
    if kind == _USERDATA:
        return struct.pack(">BBHHHH", 0x32, kind, 0, ref, len(param), len(data)) + param + data
    return struct.pack(">BBHHHHH", 0x32, kind, 0, ref, len(param), len(data), error) + param + data


def _cotp_params(raw: bytes) -> dict[int, bytes]:
    params: dict[int, bytes] = {}
    pos = 0
    while pos + 2 <= len(raw):
        code, size = raw[pos], raw[pos + 1]
        params[code] = raw[pos + 2:pos + 2 + size]
        pos += 2 + size
    return params


async def _read_tpkt(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readexactly(4)
    except asyncio.IncompleteReadError:
        return None
    if head[0] != 3:
        return None
    length = struct.unpack(">H", head[2:4])[0]
    if length < 7:
        return None
    return await reader.readexactly(length - 4)

