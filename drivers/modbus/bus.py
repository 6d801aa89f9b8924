"""Serial buses shared by the Modbus RTU devices on one port.

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

from pymodbus.client import AsyncModbusSerialClient, ModbusBaseClient

from drivers.modbus.bad_frames import BadFrames, guard_client
from drivers.modbus.config import ModbusRtuDeviceConfig
from drivers.modbus.responses import use_array_responses
from gateway.errors import DeviceUnreachable
from gateway.serial_ports import LineSettings

log = logging.getLogger(__name__)

#: pymodbus's own request timeout is ours plus this, so that ours always fires first
BACKSTOP_SECONDS = 1.0


@dataclass(eq=False)
class Link:
    """One driver's use of a connection: the client, a lock, and a future set when it is lost."""

    client: ModbusBaseClient
    lost: asyncio.Future[None]
    lock: asyncio.Lock
    bus: SerialBus | None = None
    #: bytes received on the connection so far (serial only): a timeout with bytes is "garbled"
    rx: list[int] = field(default_factory=lambda: [0])
    #: frames pymodbus could not decode on the connection (bad_frames.py)
    bad: BadFrames = field(default_factory=BadFrames)


class SerialBus:
    """One serial port, its client and lock, shared by the devices on it.

    Made by the first device's claim on the port (:class:`~gateway.serial_ports.SerialPorts`
    checks that the others agree on the line settings) and closed after the last release.
    """

    def __init__(self, config: ModbusRtuDeviceConfig) -> None:
        self.port = config.port
        self.settings: LineSettings = config.line_settings
        self.lock = asyncio.Lock()
        self.client: AsyncModbusSerialClient | None = None
        self._links: set[Link] = set()
        self._rx = [0]
        self._bad = BadFrames()
        self._ready = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.connected

    async def attach(self, config: ModbusRtuDeviceConfig) -> Link:
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

    async def _open(self, config: ModbusRtuDeviceConfig) -> None:
        self._close_client()
        baudrate, bytesize, parity, stopbits = self.settings
        self._rx = [0]
        rx = self._rx

        def count_bytes(sending: bool, data: bytes) -> bytes:
            if not sending:
                rx[0] += len(data)
            return data

        client = AsyncModbusSerialClient(
            self.port,
            baudrate=baudrate,
            bytesize=bytesize,
            parity=parity,
            stopbits=int(stopbits),
            name=f"rtu:{self.port}",
            timeout=config.timeout + BACKSTOP_SECONDS,
            retries=0,
            reconnect_delay=0,
            trace_packet=count_bytes,
            trace_connect=self._on_connect_change,
        )
        use_array_responses(client)
        # an undecodable frame is dropped; the request then times out with bytes: garbled
        guard_client(client, self._bad, tcp=False)
        errors: list[BaseException] = []
        record_connect_errors(client, errors)
        self._ready.clear()
        try:
            async with asyncio.timeout(config.timeout):
                ok = await client.connect()
                if ok:  # the transport is set up a loop step later: wait for it
                    await self._ready.wait()
        except TimeoutError:
            ok = False
        except BaseException:
            client.close()
            raise
        if not ok or not client.connected:
            client.close()
            reason = f"cannot open serial port {self.port}"
            if errors:
                reason += f": {errors[-1]}"
            raise DeviceUnreachable(reason)
        self.client = client
        log.info("serial bus %s open (%s)", self.port, self.settings)

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


def record_connect_errors(client: object, errors: list[BaseException]) -> None:
    """Keep the OSError of a failed connect, which pymodbus logs and swallows.

    ``client.connect()`` only returns False; the reason (refused, DNS, no such
    port) is the first thing an engineer needs. Wrapping pymodbus's connection
    factory keeps pymodbus's own connect path.
    """
    ctx = getattr(client, "ctx", None)
    create = getattr(ctx, "call_create", None)
    if create is None:
        return

    async def create_recording() -> object:
        try:
            return await create()
        except (OSError, ValueError) as exc:
            errors.append(exc)
            raise

    ctx.call_create = create_recording  # type: ignore[union-attr]
