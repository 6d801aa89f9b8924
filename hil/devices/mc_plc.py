"""Simulated MELSEC PLC on the MC protocol (SLMP), 3E and 4E binary frames, TCP and UDP.

An injection-moulding machine's CPU: device memory (D, W, R, ZR, SD, TN, CN, M, X,
Y, B, L, SM, F, V, SB, SW) whose process devices are refreshed from
:class:`~hil.process.injection_moulding.InjectionMouldingModel` when a request
arrives, so a client reading at ``t`` sees the model at ``t``. The device map is
:data:`PROCESS_MAP` (hil/README.md). Setpoint writes (D200 hold time, D202 melt
setpoint, D210 machine mode) go to the model.

This is an implementation of its own, written from the SLMP reference manual with
``struct``; it shares no code with the driver (``drivers/mc``), so the two check
each other. Commands: Read CPU model (0101), batch read and write (0401, 1401) in
word and bit units, random read (0403), with the Q/L device specification
(subcommands 0000/0001) and the iQ-R one (0002/0003). Limits as a CPU enforces
them: 960 words per batch, 7168 bits (3584 on iQ-F), 192 random points (96 with
0002); a device past its range answers C056H, an unknown device C05CH, an unknown
command C059H.

Faults for tests and HIL scenarios: answer an end code, answer late, answer garbage
or half a frame, stay silent, drop the connections, stop and restart on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from hil.devices.lifecycle import SimulatedDevice
from hil.process.injection_moulding import MACHINE_MODES, CyclePhase, InjectionMouldingModel

__all__ = ["MODELS", "PROCESS_MAP", "McPlcSimulator", "mc_tag_configs"]

log = logging.getLogger(__name__)

Series = Literal["q", "iq-r", "iq-f"]

#: (CPU model name, model code) each series answers to Read CPU model
MODELS: dict[str, tuple[str, int]] = {
    "q": ("Q03UDVCPU", 0x0366),
    "iq-r": ("R04CPU", 0x4800),
    "iq-f": ("FX5U-32MT/ES", 0x4A29),
}

# device code -> (name, bit device, points); sizes of a mid-size CPU's default assignment
_DEVICES: dict[int, tuple[str, bool, int]] = {
    0x91: ("SM", True, 4096), 0xA9: ("SD", False, 4096),
    0x9C: ("X", True, 0x2000), 0x9D: ("Y", True, 0x2000),
    0x90: ("M", True, 8192), 0x92: ("L", True, 8192), 0x93: ("F", True, 2048),
    0x94: ("V", True, 2048), 0xA0: ("B", True, 0x2000), 0xA1: ("SB", True, 0x800),
    0xA8: ("D", False, 12288), 0xB4: ("W", False, 0x2000), 0xB5: ("SW", False, 0x800),
    0xC2: ("TN", False, 1024), 0xC5: ("CN", False, 1024), 0xAF: ("R", False, 32768),
    0xB0: ("ZR", False, 65536),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ProcessDevice:
    """One entry of the process map: ``device`` ``number`` (wire number) holds ``what``."""

    name: str
    device: str
    number: int
    kind: str  # float32, int32, int16, string8 (8 words), bool
    unit: str = ""
    writable: bool = False
    description: str = ""


# fmt: off
#: where the machine's values live (wire numbers: X/Y 16 is X20 on iQ-F, X10 on Q and iQ-R)
PROCESS_MAP: tuple[ProcessDevice, ...] = (
    ProcessDevice("melt_temp", "D", 100, "float32", "degC", description="melt temperature"),
    ProcessDevice("mould_temp", "D", 102, "float32", "degC", description="mould temperature"),
    ProcessDevice("pressure", "D", 104, "float32", "bar", description="injection pressure"),
    ProcessDevice("cycle_time", "D", 106, "float32", "s", description="last cycle's duration"),
    ProcessDevice("parts", "D", 108, "int32", description="part counter"),
    ProcessDevice("phase", "D", 110, "int16", description="1 close .. 6 eject"),
    ProcessDevice("zone1_temp", "D", 112, "int16", "0.1 degC", description="barrel zone 1 x10"),
    ProcessDevice("zone2_temp", "D", 113, "int16", "0.1 degC", description="barrel zone 2 x10"),
    ProcessDevice("zone3_temp", "D", 114, "int16", "0.1 degC", description="barrel zone 3 x10"),
    ProcessDevice("zone4_temp", "D", 115, "int16", "0.1 degC", description="barrel zone 4 x10"),
    ProcessDevice("state", "D", 120, "string8", description="machine state text, 16 chars"),
    ProcessDevice("hold_time", "D", 200, "float32", "s", True, "hold time setpoint 0.1..30"),
    ProcessDevice("melt_setpoint", "D", 202, "float32", "degC", True,
                  "melt temperature setpoint 100..350"),
    ProcessDevice("mode", "D", 210, "int16", writable=True,
                  description="0 production, 1 idle, 2 setup, 3 stopped"),
    ProcessDevice("parts_link", "W", 0, "int32", description="part counter on the link"),
    ProcessDevice("recipe", "R", 0, "string8", writable=True, description="recipe name"),
    ProcessDevice("recipe_no", "ZR", 0, "int16", writable=True, description="recipe number"),
    ProcessDevice("cycle_timer", "TN", 0, "int16", "0.1 s",
                  description="model time since the cycle started x10"),
    ProcessDevice("shot_counter", "CN", 0, "int16", description="parts modulo 32768"),
    ProcessDevice("cpu_state", "SD", 203, "int16", description="0: RUN"),
    ProcessDevice("producing", "M", 0, "bool", description="mode is production"),
    ProcessDevice("heaters_on", "M", 1, "bool", description="mode is not stopped"),
    ProcessDevice("mould_closed", "X", 0, "bool", description="inject, hold or cool"),
    ProcessDevice("gate_closed", "X", 1, "bool", description="safety gate (open in setup)"),
    ProcessDevice("cycle_start", "X", 16, "bool", description="during the close phase"),
    ProcessDevice("inject_valve", "Y", 1, "bool", description="during inject"),
    ProcessDevice("heater_contactor", "Y", 16, "bool", description="heaters on"),
    ProcessDevice("temp_alarm", "B", 0, "bool", description="melt 10 degC off setpoint"),
    ProcessDevice("first_part", "L", 0, "bool", description="latched: a part was made"),
    ProcessDevice("always_on", "SM", 400, "bool", description="SM400, always ON"),
)
# fmt: on
_BY_NAME = {p.name: p for p in PROCESS_MAP}


def _xy_text(number: int, series: Series) -> str:
    return f"{number:o}" if series == "iq-f" else f"{number:X}"


def mc_tag_configs(series: Series, *names: str) -> list[dict[str, object]]:
    """Gateway tag configs for entries of :data:`PROCESS_MAP` (all when none are named), with
    the addresses written in ``series``' number bases: one source for tests and scenarios."""
    entries = [_BY_NAME[n] for n in names] if names else list(PROCESS_MAP)
    tags: list[dict[str, object]] = []
    for entry in entries:
        number = (_xy_text(entry.number, series) if entry.device in ("X", "Y")
                  else f"{entry.number:X}" if entry.device in ("W", "B")
                  else str(entry.number))
        tag: dict[str, object] = {"name": entry.name, "address": f"{entry.device}{number}"}
        if entry.kind == "string8":
            tag |= {"type": "string", "length": 8}
        else:
            tag["type"] = entry.kind
        if entry.unit and not entry.unit.startswith("0.1"):
            tag["unit"] = entry.unit
        if entry.unit.startswith("0.1"):
            tag |= {"scale": 0.1, "unit": entry.unit.removeprefix("0.1 ")}
        tags.append(tag)
    return tags


class _EndCode(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"end code {code:04X}")
        self.code = code


class McMemory:
    """Device memory: a word array per word device, a bit array per bit device."""

    def __init__(self) -> None:
        self.words: dict[str, np.ndarray] = {}
        self.bits: dict[str, np.ndarray] = {}
        for name, bit, points in _DEVICES.values():
            if bit:
                self.bits[name] = np.zeros(points, dtype=np.uint8)
            else:
                self.words[name] = np.zeros(points, dtype=np.uint16)

    def read_words(self, code: int, head: int, points: int) -> bytes:
        name, bit, size = self._device(code)
        if bit:  # word units on a bit device: 16 bits a word, the lowest number in bit 0
            self._span(head, points * 16, size)
            chunk = self.bits[name][head:head + points * 16].reshape(points, 16).astype(np.uint16)
            words = (chunk << np.arange(16, dtype=np.uint16)).sum(axis=1).astype("<u2")
            return words.tobytes()
        self._span(head, points, size)
        return self.words[name][head:head + points].astype("<u2").tobytes()

    def read_bits(self, code: int, head: int, points: int) -> bytes:
        name, bit, size = self._device(code)
        if not bit:
            raise _EndCode(0xC05C)  # bit units on a word device
        self._span(head, points, size)
        values = [*self.bits[name][head:head + points].tolist(), 0]
        return bytes((values[i] << 4) | values[i + 1] for i in range(0, points, 2))

    def write_words(self, code: int, head: int, data: bytes) -> None:
        name, bit, size = self._device(code)
        words = np.frombuffer(data, dtype="<u2")
        if bit:
            self._span(head, len(words) * 16, size)
            bits = ((words[:, None] >> np.arange(16)) & 1).astype(np.uint8).reshape(-1)
            self.bits[name][head:head + len(bits)] = bits
            return
        self._span(head, len(words), size)
        self.words[name][head:head + len(words)] = words

    def write_bits(self, code: int, head: int, points: int, data: bytes) -> None:
        name, bit, size = self._device(code)
        if not bit:
            raise _EndCode(0xC05C)
        self._span(head, points, size)
        for i in range(points):
            nibble = data[i // 2] >> 4 if i % 2 == 0 else data[i // 2] & 0x0F
            if nibble > 1:
                raise _EndCode(0xC060)
            self.bits[name][head + i] = nibble

    @staticmethod
    def _device(code: int) -> tuple[str, bool, int]:
        if code not in _DEVICES:
            raise _EndCode(0xC05C)
        return _DEVICES[code]

    @staticmethod
    def _span(head: int, points: int, size: int) -> None:
        if head + points > size:
            raise _EndCode(0xC056)

    # engineering values at wire numbers (the simulator side)
    def set_float(self, device: str, number: int, value: float) -> None:
        lo, hi = struct.unpack("<HH", struct.pack("<f", value))
        self.words[device][number:number + 2] = (lo, hi)

    def get_float(self, device: str, number: int) -> float:
        lo, hi = (int(w) for w in self.words[device][number:number + 2])
        return float(struct.unpack("<f", struct.pack("<HH", lo, hi))[0])

    def set_int(self, device: str, number: int, value: int, words: int) -> None:
        raw = (value & ((1 << (16 * words)) - 1)).to_bytes(2 * words, "little")
        self.words[device][number:number + words] = np.frombuffer(raw, "<u2")

    def get_int(self, device: str, number: int, words: int) -> int:
        raw = self.words[device][number:number + words].astype("<u2").tobytes()
        return int.from_bytes(raw, "little", signed=True)

    def set_text(self, device: str, number: int, text: str, words: int) -> None:
        raw = text.encode("ascii", errors="replace")[: 2 * words].ljust(2 * words, b"\0")
        self.words[device][number:number + words] = np.frombuffer(raw, "<u2")

    def get_text(self, device: str, number: int, words: int) -> str:
        raw = self.words[device][number:number + words].astype("<u2").tobytes()
        return raw.split(b"\0", 1)[0].decode("ascii", errors="replace")


@dataclass(frozen=True, slots=True)
class _Request:
    kind: str  # "3e" / "4e"
    serial: int
    route: bytes  # network, station, module I/O (2), multidrop: echoed
    command: int
    subcommand: int
    data: bytes


class McPlcSimulator(SimulatedDevice):
    """A simulated MELSEC CPU answering SLMP binary frames on TCP and UDP (the same port).

    Args:
        model: the machine; default a seeded :class:`InjectionMouldingModel`.
        series: ``q``, ``iq-r`` or ``iq-f``: its model name and its limits.
        host, port: where to listen; port 0 picks one free for TCP and UDP at the first
            :meth:`start` and keeps it for restarts.
        transports: ``tcp``, ``udp`` or both.
        clock: wall clock the model is evaluated at.
        process: false: a plain memory CPU (tests load images into :attr:`memory`); the
            model neither fills devices nor takes setpoints.
    """

    def __init__(
        self,
        model: InjectionMouldingModel | None = None,
        *,
        series: Series = "q",
        host: str = "127.0.0.1",
        port: int = 0,
        transports: tuple[str, ...] = ("tcp", "udp"),
        clock: Callable[[], float] = time.time,
        seed: int = 0,
        process: bool = True,
    ) -> None:
        if series not in MODELS:
            raise ValueError(f"series must be one of {', '.join(MODELS)}")
        self.model = model if model is not None else InjectionMouldingModel(seed=0)
        self.series: Series = series
        self.host = host
        self._port: int | None = port or None
        self.transports = tuple(transports)
        self._clock = clock
        self.process = process
        self.memory = McMemory()
        self._server: asyncio.Server | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._streams: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._rng = random.Random(seed)
        # faults
        self.end_code: int | None = None
        """Answer every request with this end code (error information included)."""
        self.response_delay = 0.0
        """Seconds before every answer."""
        self.garbage_answers = 0
        """The next N answers are random bytes instead."""
        self.half_answers = 0
        """The next N answers stop half way (TCP: the rest never comes; UDP: a short datagram)."""
        self.silent = False
        """Requests are received and never answered."""
        self.refused_commands: set[int] = set()
        """Commands answered C059H (not supported), as a CPU or module without them."""
        self.request_count = 0
        """Requests that were whole frames (answered or not)."""
        self.commands: list[tuple[int, int]] = []
        """(command, subcommand) of every request, in order."""
        if process:
            self._memory_init()

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("port not known yet: start() the simulator first")
        return self._port

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None or self._udp is not None

    async def start(self) -> None:
        if self.running:
            return
        for _ in range(20):  # port 0: a TCP port whose UDP twin is also free
            try:
                await self._listen(self._port or 0)
                return
            except OSError:
                await self._close_listeners()
                if self._port is not None:
                    raise
        raise OSError(f"no free port on {self.host} for both TCP and UDP")

    async def _listen(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        if "tcp" in self.transports:
            self._server = await asyncio.start_server(self._serve_stream, self.host, port,
                                                      reuse_address=True)
            port = self._server.sockets[0].getsockname()[1]
        if "udp" in self.transports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind((self.host, port))
            except OSError:
                sock.close()
                raise
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpServer(self), sock=sock)
            self._udp = transport
            port = sock.getsockname()[1]
        self._port = port
        log.info("MC PLC (%s, %s) listening on %s:%d %s", self.series, MODELS[self.series][0],
                 self.host, port, "+".join(self.transports))

    async def _close_listeners(self) -> None:
        server, self._server = self._server, None
        udp, self._udp = self._udp, None
        if udp is not None:
            udp.close()
        if server is not None:
            server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 2.0)

    async def stop(self) -> None:
        """Stop listening and close every connection (the memory is kept)."""
        self.drop_connections()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        for task in handlers:
            with contextlib.suppress(BaseException):
                await task
        await self._close_listeners()

    async def restart(self, downtime_s: float = 0.0) -> None:
        await self.stop()
        if downtime_s > 0:
            await asyncio.sleep(downtime_s)
        await self.start()

    def drop_connections(self) -> int:
        """Abort every TCP connection now; the listener stays. Returns how many."""
        dropped = 0
        for writer in list(self._streams):
            writer.transport.abort()
            dropped += 1
        self._streams.clear()
        return dropped

    @property
    def connection_count(self) -> int:
        return len(self._streams)

    def clear_faults(self) -> None:
        self.end_code = None
        self.response_delay = 0.0
        self.garbage_answers = self.half_answers = 0
        self.silent = False

    # -- engineering values -------------------------------------------------------------

    def load(self, image: dict[str, dict[int, int]]) -> None:
        """Put a memory image into the devices: ``{device: {wire number: word or bit}}``."""
        for device, cells in image.items():
            store = self.memory.bits.get(device)
            if store is None:
                store = self.memory.words[device]
            for number, value in cells.items():
                store[number] = value

    def get_value(self, name: str) -> float | int | str | bool:
        """What the CPU holds for an entry of :data:`PROCESS_MAP`."""
        entry = _BY_NAME[name]
        mem = self.memory
        if entry.kind == "float32":
            return mem.get_float(entry.device, entry.number)
        if entry.kind == "int32":
            return mem.get_int(entry.device, entry.number, 2)
        if entry.kind == "int16":
            return mem.get_int(entry.device, entry.number, 1)
        if entry.kind == "string8":
            return mem.get_text(entry.device, entry.number, 8)
        return bool(mem.bits[entry.device][entry.number])

    def _memory_init(self) -> None:
        mem = self.memory
        mem.set_text("R", 0, "ABS-BLACK-01", 8)
        mem.set_int("ZR", 0, 17, 1)
        mem.bits["SM"][400] = 1
        self._setpoints_to_memory()

    def _setpoints_to_memory(self) -> None:
        mem, model = self.memory, self.model
        mem.set_float("D", 200, model.hold_time)
        mem.set_float("D", 202, model.melt_setpoint)
        mem.set_int("D", 210, MACHINE_MODES.index(model.mode), 1)

    def _refresh(self) -> None:
        """Process devices from the model at this instant."""
        if not self.process:
            return
        now = self._clock()
        r = self.model.state_at(now)
        mem = self.memory
        mem.set_float("D", 100, r.melt_temp_c)
        mem.set_float("D", 102, r.mould_temp_c)
        mem.set_float("D", 104, r.injection_pressure_bar)
        mem.set_float("D", 106, r.cycle_time_s)
        mem.set_int("D", 108, r.part_count, 2)
        mem.set_int("D", 110, int(r.phase), 1)
        for i, zone in enumerate(r.zone_temps_c[:4]):
            mem.set_int("D", 112 + i, round(zone * 10), 1)
        mem.set_text("D", 120, r.state, 8)
        mem.set_int("W", 0, r.part_count, 2)
        elapsed = max(0.0, (now - r.cycle_start) * self.model.time_scale)
        mem.set_int("TN", 0, min(32767, round(elapsed * 10)), 1)
        mem.set_int("CN", 0, r.part_count % 32768, 1)
        producing = self.model.mode == "production"
        bits = mem.bits
        bits["M"][0] = producing
        bits["M"][1] = self.model.mode != "stopped"
        bits["X"][0] = producing and r.phase in (CyclePhase.INJECT, CyclePhase.HOLD,
                                                 CyclePhase.COOL)
        bits["X"][1] = self.model.mode != "setup"
        bits["X"][16] = producing and r.phase is CyclePhase.CLOSE
        bits["Y"][1] = producing and r.phase is CyclePhase.INJECT
        bits["Y"][16] = self.model.mode != "stopped"
        bits["B"][0] = abs(r.melt_temp_c - r.melt_setpoint_c) > 10.0
        if r.part_count > 0:
            bits["L"][0] = 1
        bits["SM"][400] = 1
        bits["SM"][412] = int(now * 2) % 2  # 1 s clock
        local = dt.datetime.fromtimestamp(now)
        mem.words["SD"][210:217] = (local.year, local.month, local.day, local.hour,
                                    local.minute, local.second, local.isoweekday() % 7)
        self._setpoints_to_memory()

    def _apply_setpoints(self) -> None:
        """Setpoint devices written by a client: to the model (a value it refuses stays out:
        the next refresh shows the model's setpoint again)."""
        if not self.process:
            return
        mem, model = self.memory, self.model
        with contextlib.suppress(ValueError):
            hold = mem.get_float("D", 200)
            if math.isfinite(hold) and hold != model.hold_time:
                model.set_hold_time(hold)
        with contextlib.suppress(ValueError):
            melt = mem.get_float("D", 202)
            if math.isfinite(melt) and melt != model.melt_setpoint:
                model.set_melt_setpoint(melt)
        mode = mem.get_int("D", 210, 1)
        if 0 <= mode < len(MACHINE_MODES) and MACHINE_MODES[mode] != model.mode:
            model.set_mode(MACHINE_MODES[mode])
        self._setpoints_to_memory()

    # -- frames -------------------------------------------------------------------------

    @staticmethod
    def parse_header(data: bytes) -> tuple[str, int] | None:
        """(frame kind, header bytes) from the first two bytes; None: not a request."""
        if data[:2] == b"\x50\x00":
            return "3e", 9
        if data[:2] == b"\x54\x00":
            return "4e", 13
        return None

    @staticmethod
    def request_of(frame: bytes) -> _Request | None:
        """A whole request frame split into its fields (None when it is not one)."""
        if frame[:2] == b"\x50\x00":
            kind, serial, rest = "3e", 0, frame[2:]
        elif frame[:2] == b"\x54\x00" and len(frame) >= 6:
            kind, serial, rest = "4e", struct.unpack_from("<H", frame, 2)[0], frame[6:]
        else:
            return None
        if len(rest) < 13:
            return None
        route = rest[:5]
        (length,) = struct.unpack_from("<H", rest, 5)
        if length != len(rest) - 7:
            return None
        _timer, command, subcommand = struct.unpack_from("<HHH", rest, 7)
        return _Request(kind, serial, route, command, subcommand, rest[13:])

    def answer(self, request: _Request, end_code: int, data: bytes = b"") -> bytes:
        if end_code:  # error information: the route and the command that failed
            data = request.route + struct.pack("<HH", request.command, request.subcommand)
        body = request.route + struct.pack("<HH", len(data) + 2, end_code) + data
        if request.kind == "3e":
            return b"\xd0\x00" + body
        return b"\xd4\x00" + struct.pack("<H", request.serial) + b"\x00\x00" + body

    def handle(self, request: _Request) -> bytes:
        """The answer to one request (no faults applied)."""
        self.request_count += 1
        self.commands.append((request.command, request.subcommand))
        if self.end_code is not None:
            return self.answer(request, self.end_code)
        if request.command in self.refused_commands:
            return self.answer(request, 0xC059)
        try:
            data = self._execute(request)
        except _EndCode as exc:
            return self.answer(request, exc.code)
        except (struct.error, IndexError, ValueError):
            return self.answer(request, 0xC061)  # data shorter or longer than it says
        return self.answer(request, 0, data)

    def _execute(self, request: _Request) -> bytes:
        cmd, sub, data = request.command, request.subcommand, request.data
        if cmd == 0x0101 and sub == 0x0000:
            name, code = MODELS[self.series]
            return name.ljust(16).encode("ascii") + struct.pack("<H", code)
        if cmd not in (0x0401, 0x1401, 0x0403) or sub not in (0, 1, 2, 3):
            raise _EndCode(0xC059)
        long = sub in (2, 3)
        spec = 6 if long else 4

        def device(at: int) -> tuple[int, int]:
            if long:
                number, code = struct.unpack_from("<IH", data, at)
            else:
                number = int.from_bytes(data[at:at + 3], "little")
                code = data[at + 3]
            return code, number

        if cmd == 0x0403:
            if sub not in (0, 2):
                raise _EndCode(0xC059)
            n_words, n_dwords = data[0], data[1]
            limit = 96 if long else 192
            if not 1 <= n_words + n_dwords <= limit:
                raise _EndCode(0xC054)
            if len(data) != 2 + spec * (n_words + n_dwords):
                raise _EndCode(0xC061)
            self._refresh()
            out = b"".join(self.memory.read_words(*device(2 + spec * i), 1)
                           for i in range(n_words))
            out += b"".join(self.memory.read_words(*device(2 + spec * (n_words + i)), 2)
                            for i in range(n_dwords))
            return out
        code, head = device(0)
        (points,) = struct.unpack_from("<H", data, spec)
        bits = sub in (1, 3)
        bit_limit = 3584 if self.series == "iq-f" else 7168
        if bits and not 1 <= points <= bit_limit:
            raise _EndCode(0xC051)
        if not bits and not 1 <= points <= 960:
            raise _EndCode(0xC052)
        payload = data[spec + 2:]
        if cmd == 0x0401:
            if payload:
                raise _EndCode(0xC061)
            self._refresh()
            if bits:
                return self.memory.read_bits(code, head, points)
            return self.memory.read_words(code, head, points)
        expected = (points + 1) // 2 if bits else 2 * points
        if len(payload) != expected:
            raise _EndCode(0xC061)
        if bits:
            self.memory.write_bits(code, head, points, payload)
        else:
            self.memory.write_words(code, head, payload)
        self._apply_setpoints()
        return b""

    def faulty(self, answer: bytes) -> bytes | None:
        """The bytes actually sent for ``answer`` under the current faults (None: nothing)."""
        if self.silent:
            return None
        if self.garbage_answers > 0:
            self.garbage_answers -= 1
            return bytes(self._rng.randrange(256) for _ in range(self._rng.randrange(1, 40)))
        if self.half_answers > 0:
            self.half_answers -= 1
            return answer[: max(1, len(answer) // 2)]
        return answer

    # -- TCP ----------------------------------------------------------------------------

    async def _serve_stream(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self._streams.add(writer)
        try:
            while True:
                head = await reader.readexactly(2)
                parsed = self.parse_header(head)
                if parsed is None:
                    log.debug("MC PLC: not a request (%s): closing", head.hex(" "))
                    return
                _kind, size = parsed
                rest = await reader.readexactly(size - 2)
                length = struct.unpack_from("<H", rest, size - 4)[0]
                frame = head + rest + await reader.readexactly(length)
                request = self.request_of(frame)
                if request is None:
                    return
                answer = self.handle(request)
                if self.response_delay:
                    await asyncio.sleep(self.response_delay)
                sent = self.faulty(answer)
                if sent is not None:
                    writer.write(sent)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except asyncio.CancelledError:  # stop(): end quietly (on 3.11 the stream's own
            pass  # callback would log a cancelled handler as an error)
        finally:
            self._streams.discard(writer)
            writer.close()
            if task is not None:
                self._handlers.discard(task)

    # -- UDP ----------------------------------------------------------------------------

    async def _answer_datagram(self, transport: asyncio.DatagramTransport, data: bytes,
                               addr: tuple[str, int]) -> None:
        request = self.request_of(data)
        if request is None:
            return  # not a request: a CPU drops it
        answer = self.handle(request)
        if self.response_delay:
            await asyncio.sleep(self.response_delay)
        sent = self.faulty(answer)
        if sent is not None and not transport.is_closing():
            transport.sendto(sent, addr)


class _UdpServer(asyncio.DatagramProtocol):
    def __init__(self, plc: McPlcSimulator) -> None:
        self.plc = plc
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint's

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is None:
            return
        plc = self.plc
        if plc.response_delay:
            task = asyncio.ensure_future(plc._answer_datagram(self.transport, data, addr))
            plc._handlers.add(task)
            task.add_done_callback(plc._handlers.discard)
            return
        request = plc.request_of(data)
        if request is None:
            return
        sent = plc.faulty(plc.handle(request))
        if sent is not None:
            self.transport.sendto(sent, addr)
