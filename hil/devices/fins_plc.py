"""A simulated Omron PLC speaking FINS over TCP (with the node-address handshake) and UDP.

It answers MEMORY AREA READ (01 01), MEMORY AREA WRITE (01 02), MULTIPLE MEMORY AREA
READ (01 04) and CONTROLLER DATA READ (05 01) on the areas CIO, W, H, A, D and the EM
banks of :mod:`drivers.fins.address`, word and bit access, with the end codes a CJ2 CPU
gives (11 01 no such area, 11 03 address range error, 11 04 range exceeded, 21 01
read-only, 10 01..10 04 format errors, 04 01 undefined command). The FINS frames are
built and read with the driver's own :mod:`drivers.fins.frames` (bytes and end codes;
the frames are checked against the independent ``fins`` package in the tests).

Memory fed by the injection-moulding process model (:mod:`hil.process.injection_moulding`),
refreshed when a command arrives (so a read at time ``t`` sees the model at ``t``):

| address | type | value |
| --- | --- | --- |
| ``D0`` | float32 (low word first) | melt temperature, degC |
| ``D2`` | float32 | mould temperature, degC |
| ``D4`` | float32 | injection pressure, bar |
| ``D6`` | float32 | last cycle time, s |
| ``D8`` | uint32 | part count |
| ``D10`` | uint16 | cycle phase (1 close .. 6 eject) |
| ``D20`` .. ``D27`` | string, 16 characters | machine state (``INJECTING`` ...) |
| ``D30`` | float32, read/write | melt temperature setpoint (100..350, applied to the model) |
| ``D32`` | float32, read/write | hold time, s (0.1..30, applied from the next hold) |
| ``CIO0.00`` | bit | running (production mode) |
| ``CIO0.01`` | bit | injecting |
| ``W0.00`` | bit | melt below its setpoint by more than 10 degC |
| ``H0`` | uint32 | part count (retained) |
| ``E0_0`` .. ``E0_7`` | 4 x float32 | barrel zone temperatures, feed to nozzle |

Everything else is zero and writable (A0..A447 read-only), so tests can lay out any
memory image with :meth:`FinsPlcSimulator.set_words` and write through the driver.

Node numbers: the PLC is node ``node`` (default 1, as 192.168.250.1). Over TCP it
assigns each client a node from 239 up (or the one the client asks for, when free) and
answers only frames addressed to itself from that node. Over UDP it answers any frame
addressed to its node, to the address and port the frame came from (Omron's
"automatic generation, dynamic" address conversion).

Faults, settable while it runs: ``end_code`` (every memory command answered with it),
``response_delay`` (seconds), ``garbage`` (random bytes instead of an answer; over TCP
without a FINS/TCP header), ``half_frames`` (half of each answer, then nothing),
``silent`` (no answers), :meth:`drop_connections` and :meth:`restart` (a power cycle:
TCP and UDP gone for the downtime).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable

import numpy as np

from drivers.fins.address import AREA_BY_CODE, AREAS, Area, parse_address
from drivers.fins.frames import (
    CONTROLLER_DATA_READ,
    MEMORY_AREA_READ,
    MEMORY_AREA_WRITE,
    MULTIPLE_MEMORY_AREA_READ,
    TCP_FRAME,
    TCP_HEADER_SIZE,
    TCP_NODE_ADDRESS_REQUEST,
    TCP_NODE_ADDRESS_RESPONSE,
    Frame,
    parse_frame,
    parse_tcp_header,
    response_frame,
    tcp_message,
)
from gateway.errors import FinsFrameError
from hil.devices.lifecycle import SimulatedDevice
from hil.netutil import free_port
from hil.process.injection_moulding import CyclePhase, InjectionMouldingModel

__all__ = ["PLC_TAGS", "FinsPlcSimulator"]

log = logging.getLogger(__name__)

#: the process values' addresses and types (the table above), as gateway tag configs
PLC_TAGS: list[dict[str, object]] = [
    {"name": "melt_temp", "address": "D0", "type": "float32", "unit": "degC"},
    {"name": "mould_temp", "address": "D2", "type": "float32", "unit": "degC"},
    {"name": "injection_pressure", "address": "D4", "type": "float32", "unit": "bar"},
    {"name": "cycle_time", "address": "D6", "type": "float32", "unit": "s"},
    {"name": "part_count", "address": "D8", "type": "uint32"},
    {"name": "phase", "address": "D10", "type": "uint16"},
    {"name": "state", "address": "D20", "type": "string", "length": 8},
    {"name": "melt_setpoint", "address": "D30", "type": "float32", "unit": "degC"},
    {"name": "hold_time", "address": "D32", "type": "float32", "unit": "s"},
    {"name": "running", "address": "CIO0.00", "type": "bool"},
    {"name": "injecting", "address": "CIO0.01", "type": "bool"},
    {"name": "melt_cold", "address": "W0.00", "type": "bool"},
    {"name": "part_count_retained", "address": "H0", "type": "uint32"},
    {"name": "zone_1", "address": "E0_0", "type": "float32", "unit": "degC"},
    {"name": "zone_2", "address": "E0_2", "type": "float32", "unit": "degC"},
    {"name": "zone_3", "address": "E0_4", "type": "float32", "unit": "degC"},
    {"name": "zone_4", "address": "E0_6", "type": "float32", "unit": "degC"},
]
_SETPOINT_WORDS = {30: "melt_setpoint", 32: "hold_time"}
#: nodes given to TCP clients that ask for none (0)
_FIRST_CLIENT_NODE = 239


def _float_words(value: float) -> list[int]:
    """A float32 as Omron stores it: low word first."""
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    return [low, high]


def _u32_words(value: int) -> list[int]:
    value &= 0xFFFFFFFF
    return [value & 0xFFFF, value >> 16]


class _Refused(Exception):
    def __init__(self, end_code: int) -> None:
        self.end_code = end_code


class FinsPlcSimulator(SimulatedDevice):
    """An Omron CJ2-like PLC on FINS/TCP and FINS/UDP (the same port number for both).

    Args:
        model: the process model feeding the memory (None: memory only, for tests).
        host, port: where to listen; port 0 picks one free for both TCP and UDP and
            keeps it across :meth:`restart`.
        node: the PLC's FINS node.
        tcp, udp: which transports to serve.
        model_name: what CONTROLLER DATA READ answers.
    """

    def __init__(
        self,
        model: InjectionMouldingModel | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        node: int = 1,
        tcp: bool = True,
        udp: bool = True,
        model_name: str = "CJ2M-CPU33",
        seed: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.model = model
        self.host = host
        self.port = port
        self.node = node
        self.serve_tcp = tcp
        self.serve_udp = udp
        self.model_name = model_name
        self._clock = clock
        self._rng = random.Random(seed)
        self.memory: dict[str, np.ndarray] = {
            name: np.zeros(area.words, dtype=np.uint16) for name, area in AREAS.items()}
        # faults
        self.end_code: int | None = None
        self.response_delay = 0.0
        self.garbage = False
        self.half_frames = False
        self.silent = False
        # what happened
        self.commands: Counter[int] = Counter()
        """Commands answered (or meant to be), by command code."""
        self.misaddressed = 0
        self.writes: list[tuple[str, list[int]]] = []
        self._tcp_server: asyncio.Server | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._connections: dict[asyncio.StreamWriter, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- memory ----------------------------------------------------------------------

    def set_words(self, address: str, words: list[int]) -> None:
        """Lay ``words`` into memory from ``address`` (``D100``, ``E1_0``)."""
        where = parse_address(address)
        self.memory[where.area.name][where.word:where.word + len(words)] = words

    def words(self, address: str, count: int) -> list[int]:
        where = parse_address(address)
        return [int(w) for w in self.memory[where.area.name][where.word:where.word + count]]

    def bit(self, address: str) -> bool:
        where = parse_address(address)
        return bool((int(self.memory[where.area.name][where.word]) >> (where.bit or 0)) & 1)

    def float_at(self, address: str) -> float:
        low, high = self.words(address, 2)
        return float(struct.unpack(">f", struct.pack(">HH", high, low))[0])

    def refresh(self) -> None:
        """Copy the process model's state at the current time into memory."""
        if self.model is None:
            return
        r = self.model.state_at(self._clock())
        d = self.memory["D"]
        for word, value in ((0, r.melt_temp_c), (2, r.mould_temp_c),
                            (4, r.injection_pressure_bar), (6, r.cycle_time_s),
                            (30, r.melt_setpoint_c), (32, r.hold_time_s)):
            d[word:word + 2] = _float_words(value)
        d[8:10] = _u32_words(r.part_count)
        d[10] = int(r.phase)
        state = r.state.encode("ascii")[:16].ljust(16, b"\0")
        d[20:28] = np.frombuffer(state, dtype=">u2")
        running = self.model.mode == "production"
        injecting = running and r.phase is CyclePhase.INJECT
        cio = int(self.memory["CIO"][0]) & ~0x3
        self.memory["CIO"][0] = cio | int(running) | int(injecting) << 1
        cold = r.melt_temp_c < r.melt_setpoint_c - 10.0
        self.memory["W"][0] = (int(self.memory["W"][0]) & ~0x1) | int(cold)
        self.memory["H"][0:2] = _u32_words(r.part_count)
        em = self.memory["E0_"]
        for i, zone in enumerate(r.zone_temps_c[:4]):
            em[2 * i:2 * i + 2] = _float_words(zone)

    def _written(self, area: Area, word: int, count: int) -> None:
        """A client wrote words: apply setpoints to the model."""
        self.writes.append((f"{area.name}{word}", self.words(f"{area.name}{word}", count)))
        if self.model is None or area.name != "D":
            return
        for start, name in _SETPOINT_WORDS.items():
            if word < start + 2 and start < word + count:
                value = self.float_at(f"D{start}")
                try:
                    if name == "melt_setpoint":
                        self.model.set_melt_setpoint(value)
                    else:
                        self.model.set_hold_time(value)
                except ValueError as exc:
                    log.info("fins-plc: %s %r not applied: %s", name, value, exc)

    # -- commands --------------------------------------------------------------------

    def answer(self, command: Frame) -> bytes:
        """The response frame to one command frame (no faults applied)."""
        self.commands[command.code] += 1
        flags = 0
        try:
            if self.end_code is not None and command.code != CONTROLLER_DATA_READ:
                if self.end_code & 0x7F3F:
                    raise _Refused(self.end_code)
                flags = self.end_code  # a success with the PLC's error flags
            self.refresh()
            text = self._execute(command.code, command.text)
        except _Refused as refused:
            return response_frame(command, refused.end_code)
        return response_frame(command, flags, text)

    def _execute(self, code: int, text: bytes) -> bytes:
        if code == MEMORY_AREA_READ:
            return self._read(text)
        if code == MEMORY_AREA_WRITE:
            self._write(text)
            return b""
        if code == MULTIPLE_MEMORY_AREA_READ:
            return self._multiple_read(text)
        if code == CONTROLLER_DATA_READ:
            return self._controller_data()
        raise _Refused(0x0401)

    @staticmethod
    def _area(code: int) -> tuple[Area, bool]:
        found = AREA_BY_CODE.get(code)
        if found is None:
            raise _Refused(0x1101)
        return found

    def _span(self, text: bytes) -> tuple[Area, bool, int, int, int]:
        if len(text) < 6:
            raise _Refused(0x1002)
        area, is_bit = self._area(text[0])
        word, bit, count = int.from_bytes(text[1:3], "big"), text[3], int.from_bytes(text[4:6],
                                                                                       "big")
        words = len(self.memory[area.name])  # this CPU's size of the area
        if bit > 15 or (bit and not is_bit) or word >= words:
            raise _Refused(0x1103)
        if count == 0:
            raise _Refused(0x1103)
        end = word * 16 + bit + count if is_bit else word + count
        if end > (words * 16 if is_bit else words):
            raise _Refused(0x1104)
        if count > 999:
            raise _Refused(0x110B)
        return area, is_bit, word, bit, count

    def _read(self, text: bytes) -> bytes:
        if len(text) != 6:
            raise _Refused(0x1001 if len(text) > 6 else 0x1002)
        area, is_bit, word, bit, count = self._span(text)
        memory = self.memory[area.name]
        if is_bit:
            positions = np.arange(word * 16 + bit, word * 16 + bit + count)
            values = (memory[positions // 16] >> (positions % 16)) & 1
            return values.astype(np.uint8).tobytes()
        return memory[word:word + count].astype(">u2").tobytes()

    def _write(self, text: bytes) -> None:
        area, is_bit, word, bit, count = self._span(text)
        data = text[6:]
        size = count if is_bit else 2 * count
        if len(data) != size:
            raise _Refused(0x1001 if len(data) > size else 0x1002)
        if word < area.read_only_below:
            raise _Refused(0x2101)
        memory = self.memory[area.name]
        if is_bit:
            if any(b > 1 for b in data):
                raise _Refused(0x110C)
            for i, value in enumerate(data):
                position = word * 16 + bit + i
                w, b = divmod(position, 16)
                memory[w] = (int(memory[w]) & ~(1 << b)) | (value << b)
            self.writes.append((f"{area.name}{word}.{bit:02d}", list(data)))
            return
        memory[word:word + count] = np.frombuffer(data, dtype=">u2")
        self._written(area, word, count)

    def _multiple_read(self, text: bytes) -> bytes:
        if not text or len(text) % 4:
            raise _Refused(0x1003)
        if len(text) // 4 > 167:
            raise _Refused(0x1001)
        out = bytearray()
        for pos in range(0, len(text), 4):
            area, is_bit = self._area(text[pos])
            word, bit = int.from_bytes(text[pos + 1:pos + 3], "big"), text[pos + 3]
            if word >= len(self.memory[area.name]) or bit > 15 or (bit and not is_bit):
                raise _Refused(0x1103)
            value = int(self.memory[area.name][word])
            out.append(text[pos])
            if is_bit:
                out.append((value >> bit) & 1)
            else:
                out += value.to_bytes(2, "big")
        return bytes(out)

    def _controller_data(self) -> bytes:
        model = self.model_name.encode("ascii")[:20].ljust(20, b" ")
        version = b"02.00".ljust(20, b" ")
        area_data = bytearray(12)
        area_data[3:5] = (32768).to_bytes(2, "big")  # DM words
        area_data[6] = 1  # EM banks (non-file)
        return model + version + bytes(40) + bytes(area_data)

    # -- faults ----------------------------------------------------------------------

    def _garbled(self) -> bytes:
        return bytes(self._rng.randrange(256) for _ in range(self._rng.randrange(5, 40)))

    # -- UDP -------------------------------------------------------------------------

    def _on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        task = asyncio.get_running_loop().create_task(self._udp_answer(data, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _udp_answer(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            command = parse_frame(data)
        except FinsFrameError:
            return  # a PLC drops what is no FINS frame
        if command.is_response or command.da1 not in (self.node, 0):
            self.misaddressed += 1
            return
        reply = self.answer(command)
        if self.silent:
            return
        if self.response_delay:
            await asyncio.sleep(self.response_delay)
        if self.garbage:
            reply = self._garbled()
        elif self.half_frames:
            reply = reply[: max(1, len(reply) // 2)]
        if self._udp is not None and not self._udp.is_closing():
            self._udp.sendto(reply, addr)

    # -- TCP -------------------------------------------------------------------------

    async def _on_connection(self, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
        try:
            header = parse_tcp_header(await reader.readexactly(TCP_HEADER_SIZE))
            payload = await reader.readexactly(header.payload_size)
            if header.command != TCP_NODE_ADDRESS_REQUEST or len(payload) != 4:
                writer.write(tcp_message(TCP_NODE_ADDRESS_RESPONSE, bytes(8), error=0x03))
                return
            client = self._assign(int.from_bytes(payload, "big"))
            if isinstance(client, str):
                error = {"range": 0x23, "taken": 0x21, "full": 0x25, "own": 0x24}[client]
                writer.write(tcp_message(TCP_NODE_ADDRESS_RESPONSE, bytes(8), error=error))
                return
            self._connections[writer] = client
            writer.write(tcp_message(TCP_NODE_ADDRESS_RESPONSE,
                                     client.to_bytes(4, "big") + self.node.to_bytes(4, "big")))
            while True:
                header = parse_tcp_header(await reader.readexactly(TCP_HEADER_SIZE))
                payload = await reader.readexactly(header.payload_size)
                if header.command != TCP_FRAME:
                    writer.write(tcp_message(3, b"", error=0x03))
                    continue
                await self._tcp_answer(payload, client, writer)
        except FinsFrameError:
            writer.write(tcp_message(TCP_NODE_ADDRESS_RESPONSE, bytes(8), error=0x01))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._connections.pop(writer, None)
            with contextlib.suppress(Exception):
                writer.close()

    def _assign(self, asked: int) -> int | str:
        taken = set(self._connections.values())
        if asked == 0:
            free = [n for n in range(_FIRST_CLIENT_NODE, 255) if n not in taken | {self.node}]
            return free[0] if free else "full"
        if not 1 <= asked <= 254:
            return "range"
        if asked == self.node:
            return "own"
        return "taken" if asked in taken else asked

    async def _tcp_answer(self, payload: bytes, client: int,
                          writer: asyncio.StreamWriter) -> None:
        try:
            command = parse_frame(payload)
        except FinsFrameError:
            return
        if command.is_response or command.da1 not in (self.node, 0) or command.sa1 != client:
            self.misaddressed += 1
            return
        reply = self.answer(command)
        if self.silent:
            return
        if self.response_delay:
            await asyncio.sleep(self.response_delay)
        message = tcp_message(TCP_FRAME, reply)
        if self.garbage:
            message = self._garbled()
        elif self.half_frames:
            message = message[: len(message) // 2]
        writer.write(message)
        await writer.drain()

    # -- lifecycle -------------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen on TCP and UDP (the same port; port 0 picks one free for both)."""
        if self._tcp_server is not None or self._udp is not None:
            return
        loop = asyncio.get_running_loop()
        for _ in range(20):
            port = self.port or free_port(self.host, udp=True)
            try:
                if self.serve_tcp:
                    self._tcp_server = await asyncio.start_server(
                        self._on_connection, self.host, port, reuse_address=True)
                if self.serve_udp:
                    self._udp, _ = await loop.create_datagram_endpoint(
                        lambda: _UdpProtocol(self._on_datagram), local_addr=(self.host, port),
                        family=socket.AF_INET)
            except OSError:
                await self._close_servers()
                if self.port:
                    raise
                continue
            self.port = port
            log.info("fins-plc listening on %s (TCP %s, UDP %s, node %d)", self.address,
                     "on" if self.serve_tcp else "off", "on" if self.serve_udp else "off",
                     self.node)
            return
        raise OSError(f"no free TCP and UDP port pair on {self.host}")

    async def _close_servers(self) -> None:
        server, self._tcp_server = self._tcp_server, None
        udp, self._udp = self._udp, None
        if udp is not None:
            udp.close()
        self.drop_connections()
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
        for task in list(self._tasks):
            task.cancel()

    async def stop(self) -> None:
        await self._close_servers()

    async def restart(self, downtime_s: float = 0.0) -> None:
        """A power cycle: both transports gone for ``downtime_s``, memory kept."""
        await self.stop()
        if downtime_s > 0:
            await asyncio.sleep(downtime_s)
        await self.start()

    def drop_connections(self) -> int:
        """Abort every TCP client connection now; return how many."""
        dropped = 0
        for writer in list(self._connections):
            writer.transport.abort()
            dropped += 1
        self._connections.clear()
        return dropped

    @property
    def clients(self) -> dict[int, str]:
        """Connected TCP clients: node -> peer address."""
        return {node: str(w.get_extra_info("peername")) for w, node in self._connections.items()}


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, tuple[str, int]], None]) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.on_datagram(data, addr)
