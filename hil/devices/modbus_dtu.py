"""A simulated 4G DTU with a Modbus RTU energy meter on its RS-485 port.

A DTU is a modem that dials a server (here: the gateway), sends its registration
packet, then passes bytes both ways between the TCP connection and its serial
port, and sends a heartbeat packet now and then. :class:`DtuSimulator` does that
on real sockets: it dials ``gateway_host:gateway_port``, registers, and relays
the gateway's requests to a :class:`~hil.devices.modbus_meter.ModbusMeterSimulator`
speaking RTU frames over TCP (``transport="rtu_over_tcp"``, the stand-in for the
meter on the DTU's line, fed by the energy-meter process model), and the meter's
answers back. Other unit ids get no answer, as on an RS-485 line.

The DTU's own behaviour and faults, settable while it runs:

- ``registration``: the registration packet (bytes) sent first on each connection
  (``None``: none), ``register_delay`` seconds after connecting;
  ``registration_with_data``: the packet before every answer too (a DTU mode);
- ``heartbeat``, ``heartbeat_interval``: the heartbeat and how often it goes (``None``:
  none); :meth:`send_heartbeat`: one now, between answers;
- ``heartbeat_inside_answers``: the next N answers are cut in two with the heartbeat
  between the halves (two TCP segments apart);
- ``garbage_before_answers``: the next N answers come after a few random bytes;
- ``half_answers``: the next N answers stop halfway (the rest is lost);
- ``silent``: requests get no answer;
- :meth:`redial`: the DTU dials again and registers on a new connection; the old one is
  left open and dead (as after a 4G drop without a FIN), or closed;
- :meth:`hang_up`: the DTU closes its connection and dials again after ``redial_delay``.

Counters: ``connections`` (dialled), ``requests`` (relayed to the meter), ``answers``
(relayed back), ``heartbeats`` sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from hil.devices.lifecycle import SimulatedDevice
from hil.devices.modbus_meter import ModbusMeterSimulator

__all__ = ["DtuSimulator"]

log = logging.getLogger(__name__)

#: a gap between two writes, so that they arrive as two TCP segments
_SEGMENT_GAP = 0.005


class DtuSimulator(SimulatedDevice):
    """A 4G DTU dialling the gateway, with ``meter`` on its serial port (started and
    stopped with the DTU when ``own_meter``: by default when the DTU made it).

    Args:
        gateway_host, gateway_port: where the DTU dials (the gateway's listen port).
        meter: the meter on its line, speaking RTU frames over TCP; default a new
            :class:`ModbusMeterSimulator` (unit 1, seeded process model).
        registration, heartbeat: the packets (bytes); ``None``: the DTU sends none.
        heartbeat_interval: seconds between heartbeats.
        redial_delay: seconds before dialling again after a connection failed or closed.
        seed: for the garbage bytes.
        line: host and port of another RTU-over-TCP server to relay to instead of the
            meter's (a bank of registers, for benchmarks).
    """

    def __init__(self, gateway_host: str, gateway_port: int, *,
                 meter: ModbusMeterSimulator | None = None,
                 registration: bytes | None = b"DTU-0001", heartbeat: bytes | None = b"HB",
                 heartbeat_interval: float = 30.0, redial_delay: float = 0.2,
                 seed: int = 0, own_meter: bool | None = None,
                 line: tuple[str, int] | None = None) -> None:
        self.gateway_host = gateway_host
        self.gateway_port = gateway_port
        self.own_meter = meter is None if own_meter is None else own_meter
        self.meter = meter or ModbusMeterSimulator(transport="rtu_over_tcp")
        if self.meter.transport != "rtu_over_tcp":
            raise ValueError("the meter behind a DTU speaks RTU frames over TCP "
                             "(transport='rtu_over_tcp')")
        #: where the serial side's bytes go: the meter, or ``line``
        self.line = line
        self.registration = registration
        self.heartbeat = heartbeat
        self.heartbeat_interval = heartbeat_interval
        self.redial_delay = redial_delay
        self.register_delay = 0.0
        self.registration_with_data = False
        self.heartbeat_inside_answers = 0
        self.garbage_before_answers = 0
        self.half_answers = 0
        self.silent = False
        self.connections = 0
        self.requests = 0
        self.answers = 0
        self.heartbeats = 0
        self._rng = random.Random(seed)
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._redial = asyncio.Event()
        self._leave_open = True
        self._abandoned: list[asyncio.StreamWriter] = []
        #: set while the DTU has a registered connection
        self.online = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            return
        if self.own_meter:
            await self.meter.start()
        self._task = asyncio.create_task(self._dial_loop(), name="dtu-sim")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for writer in self._abandoned:
            writer.close()
        self._abandoned.clear()
        if self.own_meter:
            await self.meter.stop()

    def redial(self, leave_old_open: bool = True) -> None:
        """Dial again now and register on the new connection; the old connection is left
        open but dead (a 4G link that dropped without a FIN), or closed."""
        self._leave_open = leave_old_open
        self._redial.set()

    def hang_up(self) -> None:
        """Close the connection now; the DTU dials again after ``redial_delay``."""
        self._leave_open = False
        self._redial.set()

    def send_heartbeat(self) -> None:
        """Send the heartbeat now (between answers)."""
        writer = self._writer
        if writer is not None and self.heartbeat is not None and not writer.is_closing():
            writer.write(self.heartbeat)
            self.heartbeats += 1

    # -- the connection ---------------------------------------------------------------------

    async def _dial_loop(self) -> None:
        while True:
            try:
                reader, writer = await asyncio.open_connection(self.gateway_host,
                                                               self.gateway_port)
            except OSError:
                await asyncio.sleep(self.redial_delay)
                continue
            self.connections += 1
            self._redial.clear()
            try:
                await self._serve(reader, writer)
            except (OSError, ConnectionError) as exc:
                log.debug("DTU: connection ended: %s", exc)
            finally:
                self.online.clear()
                self._writer = None
                if self._leave_open and self._redial.is_set():
                    self._abandoned.append(writer)  # half-dead: never read, never closed
                else:
                    writer.close()
                self._leave_open = True
            if not self._redial.is_set():
                await asyncio.sleep(self.redial_delay)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.register_delay:
            await asyncio.sleep(self.register_delay)
        if self.registration is not None:
            writer.write(self.registration)
        self._writer = writer
        self.online.set()
        log.info("DTU: connected to %s:%d", self.gateway_host, self.gateway_port)
        line = _SerialSide(self)
        beats = asyncio.create_task(self._heartbeats(writer))
        redial = asyncio.create_task(self._redial.wait())
        try:
            while True:
                read = asyncio.create_task(reader.read(4096))
                done, _ = await asyncio.wait({read, redial}, return_when=asyncio.FIRST_COMPLETED)
                if redial in done:
                    read.cancel()
                    return
                request = read.result()
                if not request:
                    return  # the gateway closed the connection
                if not self.silent:
                    await line.send(request, writer)
        finally:
            beats.cancel()
            redial.cancel()
            line.close()

    async def _heartbeats(self, writer: asyncio.StreamWriter) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            if self.heartbeat is not None and not writer.is_closing():
                writer.write(self.heartbeat)
                self.heartbeats += 1

    async def _answer(self, answer: bytes, writer: asyncio.StreamWriter) -> None:
        self.answers += 1
        if self.registration_with_data and self.registration is not None:
            answer = self.registration + answer
        if self.garbage_before_answers > 0:
            self.garbage_before_answers -= 1
            answer = bytes(self._rng.randrange(256) for _ in range(5)) + answer
        if self.half_answers > 0:
            self.half_answers -= 1
            writer.write(answer[: len(answer) // 2])
            return
        if self.heartbeat_inside_answers > 0 and self.heartbeat is not None and len(answer) > 2:
            self.heartbeat_inside_answers -= 1
            cut = len(answer) // 2
            writer.write(answer[:cut])
            await writer.drain()
            await asyncio.sleep(_SEGMENT_GAP)
            writer.write(self.heartbeat)
            self.heartbeats += 1
            await writer.drain()
            await asyncio.sleep(_SEGMENT_GAP)
            writer.write(answer[cut:])
            return
        writer.write(answer)


class _SerialSide:
    """The DTU's serial port: a connection to the meter, bytes to it as they come, and
    whatever it answers relayed back (with the DTU's faults) by a task of its own."""

    def __init__(self, dtu: DtuSimulator) -> None:
        self._dtu = dtu
        self._writer: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None

    async def send(self, request: bytes, gateway: asyncio.StreamWriter) -> None:
        if self._writer is None or self._writer.is_closing():
            self.close()
            meter = self._dtu.meter
            host, port = self._dtu.line or (meter.host, meter.port)
            try:
                reader, self._writer = await asyncio.open_connection(host, port)
            except OSError:
                return  # the meter is away: silence on the line
            self._pump = asyncio.create_task(self._answers(reader, gateway))
        self._dtu.requests += 1
        self._writer.write(request)

    async def _answers(self, reader: asyncio.StreamReader, gateway: asyncio.StreamWriter
                       ) -> None:
        with contextlib.suppress(OSError):
            while True:
                answer = await reader.read(4096)
                if not answer:
                    return
                if not gateway.is_closing():
                    await self._dtu._answer(answer, gateway)

    def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
