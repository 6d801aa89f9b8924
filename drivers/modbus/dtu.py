"""The gateway's side of 4G DTUs: a listening port, registration, one connection per DTU.

A DTU (data transfer unit: a 4G modem with an RS-485 port) dials in to the
gateway, sends its registration packet, then passes the gateway's Modbus RTU
requests to the meters on its line and their answers back, with a heartbeat
now and then. :class:`DtuListener` is one listening port, shared by the DTU
devices that name it (kept in the runtime's
:class:`~gateway.listen_ports.ListenPorts`); each device has a
:class:`DtuSlot` on it, found by its registration packet.

On each new connection the listener reads the first bytes until they are one
slot's registration packet (:func:`~drivers.modbus.rtu_framing.identify`):

- a match: the connection becomes the slot's, and a connection the DTU had
  before is closed (a DTU that redials after its 4G link dropped replaces its
  old, often half-open, connection). The device's driver picks it up.
- no device's packet: the DTU is refused (the connection closed), logged once
  per packet at WARNING, counted (in the first ``register_timeout`` after the port
  opened, when not every device may have enrolled yet, only at the timeout);
- nothing that identifies it within ``register_timeout`` (the longest of the
  devices on the port): dropped, logged once per address, counted.

A driver whose connection broke closes and connects again after the runner's
backoff; its slot and the port stay meanwhile (:data:`LINGER` seconds), so a
connection that came in during the backoff is waiting for it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass, field

from drivers.modbus.config import MAX_PACKET_BYTES, ModbusDtuDeviceConfig, PacketConfig
from drivers.modbus.rtu_framing import Packets, identify
from drivers.modbus.rtu_stream import RtuStream
from gateway.errors import ConnectionLost, DeviceUnreachable

__all__ = ["LINGER", "DtuListener", "DtuSlot", "ListenerCounts", "packets_of"]

log = logging.getLogger(__name__)

#: seconds a slot (and, in ListenPorts, the port) outlives its driver's close
LINGER = 60.0
#: registration packets and addresses remembered for "logged once"
_LOGGED_ONCE = 256


def packets_of(*packets: PacketConfig | None) -> Packets:
    """The :class:`Packets` to drop from a stream, from the configured packets."""
    literals: list[bytes] = []
    patterns: list[re.Pattern[bytes]] = []
    for packet in packets:
        if packet is None:
            continue
        literal = packet.literal()
        if literal is not None:
            literals.append(literal)
        else:
            patterns.append(packet.compiled_pattern())
    return Packets(literals, patterns)


def _registration(packet: PacketConfig) -> bytes | re.Pattern[bytes]:
    literal = packet.literal()
    return literal if literal is not None else packet.compiled_pattern()


@dataclass(slots=True)
class ListenerCounts:
    """What happened on a listening port: connections accepted, registered (incl. the
    ones that replaced an earlier connection of their DTU), refused (unknown DTU),
    dropped unregistered."""

    accepted: int = 0
    registered: int = 0
    replaced: int = 0
    refused: int = 0
    unregistered: int = 0


class DtuSlot:
    """One DTU device's place on a listener: its packets and its current connection."""

    def __init__(self, config: ModbusDtuDeviceConfig) -> None:
        self.device = config.name
        self.config = config
        self.registration = _registration(config.registration_packet)
        #: what is dropped from the stream: the registration packet again, the heartbeat
        self.packets = packets_of(config.registration_packet, config.heartbeat_packet)
        self.stream: RtuStream | None = None
        #: times the DTU registered, and when it last did (time.time())
        self.registrations = 0
        self.registered_at: float | None = None
        self._arrived = asyncio.Event()
        self.forget: asyncio.TimerHandle | None = None

    def describe(self) -> str:
        return f"DTU {self.config.registration_packet.describe()}"

    def offer(self, stream: RtuStream) -> bool:
        """Make ``stream`` the slot's connection; True when it replaced an open one."""
        old, self.stream = self.stream, stream
        stream.packets = self.packets
        self.registrations += 1
        self.registered_at = time.time()
        self._arrived.set()
        replaced = old is not None and old is not stream and old.open
        if replaced:
            assert old is not None
            log.info("%s: %s registered again from %s: the new connection replaces the one "
                     "from %s", self.device, self.describe(), stream.peer, old.peer)
            old.close(f"{self.describe()} dialled in again from {stream.peer}: its new "
                      f"connection replaces the one from {old.peer}")
        else:
            log.info("%s: %s registered from %s", self.device, self.describe(), stream.peer)
        return replaced

    async def wait(self, timeout: float, where: str) -> RtuStream:
        """The slot's open connection, waiting up to ``timeout`` s for the DTU to dial in
        and register; :class:`DeviceUnreachable` when it does not."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            stream = self.stream
            if stream is not None and stream.open:
                return stream
            self._arrived.clear()
            left = deadline - loop.time()
            if left <= 0:
                raise DeviceUnreachable(
                    f"{self.describe()} has not dialled in to {where} and registered within "
                    f"{timeout:g} s (still listening for it)")
            try:
                async with asyncio.timeout(left):
                    await self._arrived.wait()
            except TimeoutError:
                continue


@dataclass(eq=False)
class DtuListener:
    """One listening TCP port shared by the DTU devices that name it."""

    host: str
    port: int
    slots: dict[str, DtuSlot] = field(default_factory=dict)
    counts: ListenerCounts = field(default_factory=ListenerCounts)
    _server: asyncio.Server | None = None
    _starting: asyncio.Lock = field(default_factory=asyncio.Lock)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _pending: set[RtuStream] = field(default_factory=set)
    _logged: set[bytes | str] = field(default_factory=set)
    _closed: bool = False
    _started_at: float = 0.0

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen (once; again after a failed start). :class:`DeviceUnreachable` when the
        port cannot be opened."""
        async with self._starting:
            if self._server is not None:
                return
            loop = asyncio.get_running_loop()
            self._closed = False
            try:
                self._server = await loop.create_server(self._accept, self.host, self.port,
                                                        reuse_address=True)
            except OSError as exc:
                raise DeviceUnreachable(f"cannot listen for DTUs on {self.where}: "
                                        f"{exc.strerror or exc}") from None
            self._started_at = loop.time()
            log.info("listening for DTUs on %s", self.where)

    def close(self) -> None:
        """Stop listening and close every connection (the runtime's ListenPorts calls it)."""
        self._closed = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        for stream in list(self._pending):
            stream.close()
        for slot in self.slots.values():
            if slot.forget is not None:
                slot.forget.cancel()
            if slot.stream is not None:
                slot.stream.close()
        self.slots.clear()

    # -- devices ------------------------------------------------------------------------

    def enrol(self, config: ModbusDtuDeviceConfig) -> DtuSlot:
        """The device's slot (the one it had, when it reconnects); :class:`DeviceUnreachable`
        when another device on the port expects the same registration packet."""
        for other in self.slots.values():
            if other.device != config.name and \
                    other.config.registration_packet == config.registration_packet:
                raise DeviceUnreachable(
                    f"devices {other.device!r} and {config.name!r} both expect the DTU "
                    f"registration packet {config.registration_packet.describe()} on "
                    f"{self.where}: give each DTU a packet of its own")
        slot = self.slots.get(config.name)
        if slot is None or slot.config != config:
            old = slot
            slot = DtuSlot(config)
            if old is not None and old.stream is not None:
                old.stream.close()  # another config: the DTU registers afresh
            self.slots[config.name] = slot
        if slot.forget is not None:
            slot.forget.cancel()
            slot.forget = None
        return slot

    def leave(self, slot: DtuSlot, linger: float = LINGER) -> None:
        """The device's driver closed: forget its slot after ``linger`` s unless it comes
        back (its DTU's connection is kept meanwhile)."""
        if self.slots.get(slot.device) is not slot:
            return
        if slot.forget is not None:
            slot.forget.cancel()
        loop = asyncio.get_running_loop()
        slot.forget = loop.call_later(linger, self._forget, slot)

    def _forget(self, slot: DtuSlot) -> None:
        if self.slots.get(slot.device) is slot:
            del self.slots[slot.device]
            if slot.stream is not None:
                slot.stream.close()

    # -- connections --------------------------------------------------------------------

    def _accept(self) -> RtuStream:
        return RtuStream(Packets(), on_open=self._opened)

    def _opened(self, stream: RtuStream) -> None:
        self.counts.accepted += 1
        if self._closed:
            stream.close()
            return
        self._pending.add(stream)
        task = asyncio.get_running_loop().create_task(self._register(stream),
                                                       name=f"dtu-register:{stream.peer}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _register_timeout(self) -> float:
        return max((s.config.register_timeout for s in self.slots.values()), default=10.0)

    async def _register(self, stream: RtuStream) -> None:
        """Read the connection's first bytes until they say which DTU it is."""
        try:
            try:
                async with asyncio.timeout(self._register_timeout()):
                    while True:
                        if self._try_identify(stream, final=False):
                            return
                        await stream.more()
            except TimeoutError:
                if not self._try_identify(stream, final=True):
                    self._drop_unregistered(stream)
        except ConnectionLost:
            log.debug("DTU port %s: %s closed before it registered", self.where, stream.peer)
        finally:
            self._pending.discard(stream)

    def _try_identify(self, stream: RtuStream, final: bool) -> bool:
        """True when the stream was handed to a slot or refused (done with it)."""
        if final and not stream.buffer:
            return False
        slots = list(self.slots.values())
        found = identify(stream.buffer, [s.registration for s in slots], MAX_PACKET_BYTES,
                         final=final)
        if found.kind == "wait":
            return False
        if found.kind == "unknown":
            age = asyncio.get_running_loop().time() - self._started_at
            if not final and age < self._register_timeout():
                return False  # just started: its device may not have enrolled yet
            self._refuse(stream)
            return True
        slot = slots[found.index]
        stream.take(found.used)
        self.counts.registered += 1
        if slot.offer(stream):
            self.counts.replaced += 1
        return True

    def _refuse(self, stream: RtuStream) -> None:
        packet = bytes(stream.buffer[:MAX_PACKET_BYTES])
        self.counts.refused += 1
        stream.close()
        level = logging.DEBUG
        if packet not in self._logged and len(self._logged) < _LOGGED_ONCE:
            self._logged.add(packet)
            level = logging.WARNING
        log.log(level, "DTU port %s: refused %s: its registration packet %r is no "
                "configured device's (logged once per packet)", self.where, stream.peer,
                packet)

    def _drop_unregistered(self, stream: RtuStream) -> None:
        self.counts.unregistered += 1
        stream.close()
        host = stream.peer.rpartition(":")[0]
        level = logging.DEBUG
        if host not in self._logged and len(self._logged) < _LOGGED_ONCE:
            self._logged.add(host)
            level = logging.WARNING
        log.log(level, "DTU port %s: dropped %s: no registration packet within %g s (logged "
                "once per address)", self.where, stream.peer, self._register_timeout())
