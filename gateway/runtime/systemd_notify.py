"""Telling systemd how the gateway is (sd_notify(3)): READY once it runs, its STATUS,
STOPPING on shutdown, and WATCHDOG pings.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET``, a unix datagram socket; each message
is one datagram of ``KEY=value`` lines (no libsystemd needed). With ``WatchdogSec=`` it also
passes ``WATCHDOG_USEC``: the pings come from a task on the gateway's event loop, every half
of that, so a loop that is stuck (a blocking call, a busy loop) stops them and systemd kills
and restarts the gateway. A thread would keep pinging for a dead loop; hence a task.
Without ``NOTIFY_SOCKET`` (not under systemd) nothing is sent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class SystemdNotifier:
    """The notify socket of this service; ``watchdog_s``: systemd's watchdog timeout, if any."""

    def __init__(self, address: str, watchdog_s: float | None = None) -> None:
        # "@name" is a socket in the abstract namespace (a leading NUL byte on the wire)
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_s = watchdog_s
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._socket.setblocking(False)
        self._failed = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ,
                         pid: int | None = None) -> SystemdNotifier | None:
        """The notifier systemd asked for, or None when not run by systemd as Type=notify.
        The watchdog is this process's only when ``WATCHDOG_PID`` is unset or its pid."""
        address = environ.get("NOTIFY_SOCKET", "")
        if not address.startswith(("/", "@")):
            return None  # unset, or a transport this client does not speak (vsock:)
        watchdog_s: float | None = None
        usec = environ.get("WATCHDOG_USEC", "")
        owner = environ.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and owner in ("", str(pid or os.getpid())):
            watchdog_s = int(usec) / 1e6
        return cls(address, watchdog_s)

    def send(self, *fields: str) -> None:
        """One message of ``KEY=value`` fields; a failure is logged once, never raised (the
        gateway runs on without systemd hearing it)."""
        try:
            self._socket.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            if not self._failed:
                log.warning("systemd notify socket %s: %s (systemd may consider the gateway "
                            "hung)", self.address.replace("\0", "@"), exc)  # fmt: skip
            self._failed = True
        else:
            self._failed = False

    async def supervise(self, started: asyncio.Event, stop: asyncio.Event,
                        status: Callable[[], str]) -> None:
        """Run beside the gateway until cancelled: WATCHDOG pings throughout, READY with
        ``status()`` once ``started`` is set, STOPPING once ``stop`` is."""
        pinger = asyncio.create_task(self._ping(self.watchdog_s / 2)) if self.watchdog_s else None
        try:
            await started.wait()
            self.send("READY=1", f"STATUS={status()}")
            await stop.wait()
            self.send("STOPPING=1", "STATUS=stopping: flushing telemetry to the broker")
            await asyncio.Future()  # keep pinging while the gateway shuts down
        finally:
            if pinger is not None:
                pinger.cancel()

    async def _ping(self, interval: float) -> None:
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(interval)

    def close(self) -> None:
        self._socket.close()
