"""The serial ports of one runtime: each port opened once, shared by the devices on its line.

A serial port can be opened once, and one RS-485 line carries several devices
(Modbus RTU units, MCU nodes with their node ids). The runtime that builds the
drivers (the gateway, ``check --connect``, a standalone firmware session) owns
one :class:`SerialPorts` and hands it to every driver that needs a port; there
is no registry at module or class level. A driver *claims* its port when it
connects and *releases* the lease when it closes. The first claim makes the
line's shared object (a Modbus bus with its client and lock, an MCU node port
with its reader); later claims of the same protocol with the same line settings
get that object; the last release closes it.

A claim that cannot share is refused with :class:`PortConflict`, naming the
devices already on the port and the one asking: another protocol on the line,
other line settings, or a protocol whose device needs the port to itself (a
serial-line instrument). Ports are told apart by their real path, so a
``/dev/serial/by-id/...`` link and the ``/dev/ttyUSB0`` it points to are one port.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, Protocol, TypeVar, cast

from gateway.errors import PortConflict


class LineSettings(NamedTuple):
    """How the bytes go on the wire; every device on one line must agree."""

    baudrate: int
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1

    def __str__(self) -> str:
        return f"{self.baudrate} baud {self.bytesize}{self.parity}{self.stopbits:g}"


@dataclass(frozen=True, slots=True)
class PortUse:
    """Who claims a port, speaking what, at which settings."""

    device: str
    protocol: str
    settings: LineSettings
    #: False: the device needs the port to itself (nothing else may claim it meanwhile)
    shared: bool = True


class SharedPort(Protocol):
    """What the registry needs of a line's shared object: closing it after the last user."""

    def close(self) -> None: ...


P = TypeVar("P", bound=SharedPort)


@dataclass(eq=False)
class _Line:
    path: str
    use: PortUse
    port: SharedPort
    #: one entry per open lease: the device that holds it
    users: list[str] = field(default_factory=list)


class PortLease(Generic[P]):
    """One device's claim on a port; :meth:`release` gives it back (a second call does nothing)."""

    def __init__(self, ports: SerialPorts, key: str, line: _Line, device: str) -> None:
        self.port = cast(P, line.port)
        self.path = line.path
        self._ports = ports
        self._key = key
        self._line: _Line | None = line
        self._device = device

    def release(self) -> None:
        line, self._line = self._line, None
        if line is not None:
            self._ports._release(self._key, line, self._device)


class SerialPorts:
    """The serial ports in use by the devices of one runtime, by real path."""

    def __init__(self) -> None:
        self._lines: dict[str, _Line] = {}

    def claim(self, path: str, use: PortUse, make: Callable[[], P]) -> PortLease[P]:
        """A lease on ``path``'s shared object, made with ``make()`` by the first claim.

        ``make`` may open the port at once (raising what it raises; nothing is then
        held) or leave that to the object's first user. Raise :class:`PortConflict`
        when the devices on the port cannot share it with ``use``.
        """
        key = os.path.realpath(path)
        line = self._lines.get(key)
        if line is None:
            line = _Line(path, use, make())
            self._lines[key] = line
        else:
            self._check_compatible(line, path, use)
        line.users.append(use.device)
        return PortLease(self, key, line, use.device)

    def users(self, path: str) -> list[str]:
        """The devices holding a lease on ``path`` (a device twice: it holds two)."""
        line = self._lines.get(os.path.realpath(path))
        return list(line.users) if line is not None else []

    def paths(self) -> list[str]:
        """The ports in use, as the first device on each named it."""
        return [line.path for line in self._lines.values()]

    def _check_compatible(self, line: _Line, path: str, use: PortUse) -> None:
        held = line.use
        port = path if path == line.path else f"{path} (the port {line.path})"
        devices = _devices(line.users)
        if held.protocol != use.protocol:
            raise PortConflict(
                f"serial port {port} is used by {devices} ({held.protocol}); device "
                f"{use.device!r} ({use.protocol}) cannot share it: the devices on one line "
                "must speak one protocol"
            )
        if not held.shared or not use.shared:
            raise PortConflict(
                f"serial port {port} is used by {devices} ({held.protocol}); device "
                f"{use.device!r} cannot share it: a {use.protocol} device needs the port "
                "to itself"
            )
        if held.settings != use.settings:
            raise PortConflict(
                f"serial port {port} is used by {devices} at {held.settings}; device "
                f"{use.device!r} asks for {use.settings}: the devices on one line must use "
                "the same baudrate, bytesize, parity and stopbits"
            )

    def _release(self, key: str, line: _Line, device: str) -> None:
        line.users.remove(device)
        if line.users:
            return
        if self._lines.get(key) is line:
            del self._lines[key]
        line.port.close()


def _devices(names: list[str]) -> str:
    unique = list(dict.fromkeys(names))
    if len(unique) == 1:
        return f"device {unique[0]!r}"
    return "devices " + ", ".join(repr(n) for n in unique)
