"""Serial buses shared by the Modbus RTU (or ASCII) devices on one port.

An RS-485 line carries one request at a time, and a serial port can be opened
only once. So every device whose ``port`` is the same shares one
:class:`SerialBus`: one pymodbus serial client and one lock. The runtime's
:class:`~gateway.serial_ports.SerialPorts` keeps the bus: each driver claims it
and *attaches* on ``connect``, *detaches* and releases its claim on ``close``.
The port opens with the first attachment (again after the line was lost) and
closes with the last release. A device that stops answering makes only its own
driver reconnect (detach, attach): the bus stays open for the others.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from drivers.modbus.config import ModbusSerialDeviceConfig
from drivers.modbus.requests import BadFrames
from gateway.serial_ports import LineSettings

if TYPE_CHECKING:  # pymodbus is imported when a bus opens
    from drivers.modbus.pymodbus_adapter import ModbusClient, PymodbusClient, SerialFraming

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Link:
    """One driver's use of a connection: the client, a lock, and a future set when it is lost."""

    client: ModbusClient
    lost: asyncio.Future[None]
    lock: asyncio.Lock
    bus: SerialBus | None = None
    #: bytes received on the connection so far (serial only): a timeout with bytes is "garbled"
    rx: list[int] = field(default_factory=lambda: [0])
    #: frames pymodbus could not decode on the connection (pymodbus_adapter.BadFrames)
    bad: BadFrames = field(default_factory=BadFrames)


class SerialBus:
    """One serial port, its client and lock, shared by the devices on it.

    Made by the first device's claim on the port (:class:`~gateway.serial_ports.SerialPorts`
    checks that the others agree on the line settings) and closed after the last release.
    """

    def __init__(self, config: ModbusSerialDeviceConfig) -> None:
        self.port = config.port
        #: RTU or ASCII: the line carries one (the port registry refuses mixing protocols)
        self.framing: SerialFraming = "ascii" if config.protocol == "modbus_ascii" else "rtu"
        self.settings: LineSettings = config.line_settings
        self.lock = asyncio.Lock()
        self.client: PymodbusClient | None = None
        self._links: set[Link] = set()
        self._rx = [0]
        self._bad = BadFrames()
        self._ready = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.connected

    async def attach(self, config: ModbusSerialDeviceConfig) -> Link:
        """Open the port if needed and return a link for one device."""
        async with self.lock:
            if not self.connected:
                await self._open(config)
            assert self.client is not None
            link = Link(self.client, asyncio.get_running_loop().create_future(), self.lock, self)
            link.rx, link.bad = self._rx, self._bad
            self._links.add(link)
            return link

    def detach(self, link: Link) -> None:
        """Forget ``link`` (the port stays open until the last claim is released)."""
        if not link.lost.done():
            link.lost.set_result(None)
        self._links.discard(link)

    def close(self) -> None:
        """Close the port (the registry calls this after the last device released it)."""
        self._close_client()

    async def _open(self, config: ModbusSerialDeviceConfig) -> None:
        from drivers.modbus.pymodbus_adapter import connect, serial_client

        self._close_client()
        self._rx = [0]
        rx = self._rx

        def count_bytes(n: int) -> None:
            rx[0] += n

        # an undecodable frame is dropped; the request then times out with bytes: garbled
        client = serial_client(self.port, self.settings, f"{self.framing}:{self.port}",
                               config.timeout, self._on_connect_change, self._bad, count_bytes,
                               self.framing)
        self._ready.clear()
        await connect(client, config.timeout, self._unreachable_reason, ready=self._ready)
        self.client = client
        log.info("serial bus %s open (%s)", self.port, self.settings)

    def _unreachable_reason(self, error: BaseException | None, timed_out: bool) -> str:
        reason = f"cannot open serial port {self.port}"
        return f"{reason}: {error}" if error is not None else reason

    def _on_connect_change(self, connected: bool) -> None:
        if connected:
            self._ready.set()
            return
        for link in list(self._links):
            if not link.lost.done():
                link.lost.set_result(None)

    def _close_client(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            for link in list(self._links):
                if not link.lost.done():
                    link.lost.set_result(None)
            try:
                client.close()
            except Exception:
                log.exception("serial bus %s: error while closing", self.port)
