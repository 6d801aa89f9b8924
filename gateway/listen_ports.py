"""The TCP ports one runtime listens on for devices that dial in (4G DTUs).

A DTU is a modem that connects to the gateway, not the other way round; several
DTUs dial in to one port and are told apart by what they send first. The runtime
that builds the drivers (the gateway, ``check``) owns one :class:`ListenPorts` and
hands it to every driver of such devices; there is no registry at module level.
A driver *claims* its port when it connects and *releases* the lease when it
closes; the first claim makes the port's listener, later claims of the same
protocol get it.

A port outlives its last lease by :attr:`ListenPorts.linger` seconds: a driver
that lost its connection closes and connects again after a backoff, and its
DTU's new connection, which may already have come in, must still be there.
:meth:`ListenPorts.close` closes every port at once (the runtime stops).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar, cast

from gateway.errors import PortConflict

__all__ = ["ListenLease", "ListenPorts", "ListenUse"]


@dataclass(frozen=True, slots=True)
class ListenUse:
    """Who claims a listening port, speaking what, on which address."""

    device: str
    protocol: str
    host: str


class Listener(Protocol):
    """What the registry needs of a port's shared object: closing it."""

    def close(self) -> None: ...


L = TypeVar("L", bound=Listener)


@dataclass(eq=False)
class _Port:
    port: int
    use: ListenUse
    listener: Listener
    users: list[str] = field(default_factory=list)
    closing: asyncio.TimerHandle | None = None


class ListenLease(Generic[L]):
    """One device's claim on a listening port; :meth:`release` gives it back (once)."""

    def __init__(self, ports: ListenPorts, entry: _Port, device: str) -> None:
        self.listener = cast(L, entry.listener)
        self.port = entry.port
        self._ports = ports
        self._entry: _Port | None = entry
        self._device = device

    def release(self) -> None:
        entry, self._entry = self._entry, None
        if entry is not None:
            self._ports._release(entry, self._device)


class ListenPorts:
    """The listening ports in use by the devices of one runtime, by port number."""

    def __init__(self, linger: float = 60.0) -> None:
        #: seconds a port stays open after its last lease was released
        self.linger = linger
        self._ports: dict[int, _Port] = {}

    def claim(self, port: int, use: ListenUse, make: Callable[[], L]) -> ListenLease[L]:
        """A lease on ``port``'s listener, made with ``make()`` by the first claim; raise
        :class:`PortConflict` when another protocol or another address holds the port."""
        entry = self._ports.get(port)
        if entry is None:
            entry = _Port(port, use, make())
            self._ports[port] = entry
        else:
            held = entry.use
            if held.protocol != use.protocol:
                raise PortConflict(
                    f"listening port {port} is used by {_devices(entry, held)} "
                    f"({held.protocol}); device {use.device!r} ({use.protocol}) cannot share it")
            if held.host != use.host:
                raise PortConflict(
                    f"listening port {port} is opened on {held.host} for {_devices(entry, held)}; "
                    f"device {use.device!r} asks for {use.host}: the devices of one port give "
                    "the same listen_host")
        if entry.closing is not None:
            entry.closing.cancel()
            entry.closing = None
        entry.users.append(use.device)
        return ListenLease(self, entry, use.device)

    def users(self, port: int) -> list[str]:
        """The devices holding a lease on ``port``."""
        entry = self._ports.get(port)
        return list(entry.users) if entry is not None else []

    def close(self) -> None:
        """Close every port now (the runtime stops)."""
        entries, self._ports = list(self._ports.values()), {}
        for entry in entries:
            if entry.closing is not None:
                entry.closing.cancel()
            entry.listener.close()

    def _release(self, entry: _Port, device: str) -> None:
        entry.users.remove(device)
        if entry.users or self._ports.get(entry.port) is not entry:
            return
        loop = None
        with contextlib.suppress(RuntimeError):
            loop = asyncio.get_running_loop()
        if loop is None or self.linger <= 0:
            self._close(entry)
            return
        entry.closing = loop.call_later(self.linger, self._close, entry)

    def _close(self, entry: _Port) -> None:
        if entry.users:
            return
        if self._ports.get(entry.port) is entry:
            del self._ports[entry.port]
        entry.listener.close()


def _devices(entry: _Port, held: ListenUse) -> str:
    names = list(dict.fromkeys(entry.users)) or [held.device]
    if len(names) == 1:
        return f"device {names[0]!r}"
    return "devices " + ", ".join(repr(n) for n in names)
