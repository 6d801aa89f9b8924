"""The systemd side of sd_notify(3) for tests: a real unix datagram socket that a gateway
(a process or this one) is told about with ``NOTIFY_SOCKET``, recording every message, and
systemd's watchdog rule: it fires when ``WatchdogSec`` passes without a ``WATCHDOG=1``."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType


@dataclass(frozen=True, slots=True)
class Notification:
    at: float  # time.monotonic() of arrival
    fields: dict[str, str]


class NotifyPeer:
    """Bind on enter, receive in a thread until exit. ``watchdog_s``: systemd's WatchdogSec."""

    def __init__(self, watchdog_s: float | None = None) -> None:
        self.watchdog_s = watchdog_s
        # a short path: sun_path holds 108 bytes, pytest's tmp_path may be longer
        self._dir = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))
        self.path = self._dir / "notify"
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.settimeout(0.02)
        self._lock = threading.Lock()
        self._messages: list[Notification] = []
        #: set when the watchdog fired; ``fired_at`` says when (monotonic)
        self.fired = threading.Event()
        self.fired_at: float | None = None
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="notify-peer", daemon=True)

    def environment(self) -> dict[str, str]:
        env = {"NOTIFY_SOCKET": str(self.path)}
        if self.watchdog_s is not None:
            env["WATCHDOG_USEC"] = str(int(self.watchdog_s * 1e6))
        return env

    def __enter__(self) -> NotifyPeer:
        self._socket.bind(str(self.path))
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._closing.set()
        self._thread.join(10)
        self._socket.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _receive(self) -> None:
        last_ping: float | None = None
        while not self._closing.is_set():
            try:
                data = self._socket.recv(4096)
            except TimeoutError:
                data = b""
            now = time.monotonic()
            if data:
                fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
                with self._lock:
                    self._messages.append(Notification(now, fields))
                if fields.get("WATCHDOG") == "1":
                    last_ping = now
            if (self.watchdog_s is not None and last_ping is not None
                    and now - last_ping > self.watchdog_s and not self.fired.is_set()):
                self.fired_at = now
                self.fired.set()

    def messages(self) -> list[Notification]:
        with self._lock:
            return list(self._messages)

    def with_field(self, key: str, value: str | None = None,
                   after: float = 0.0) -> list[Notification]:
        """The messages since ``after`` (monotonic) holding ``key`` (equal to ``value``)."""
        return [m for m in self.messages() if m.at > after and key in m.fields
                and (value is None or m.fields[key] == value)]
