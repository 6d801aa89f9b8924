"""The last WARNING and ERROR log records, kept in memory for the status page.

A :class:`RecentErrors` is a ``logging.Handler`` owned by one gateway instance and
attached to the root logger while that gateway runs. It keeps a bounded ring, so a
device that fails every poll cannot grow it; a record equal to the previous one
(same logger, level and message) only bumps that entry's count and time. It sees every
record of the process (simulators in ``demo``, other gateways in a test process too).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass


@dataclass(slots=True)
class RecentRecord:
    ts_ns: int
    level: str
    logger: str
    message: str
    count: int = 1

    def as_dict(self) -> dict[str, object]:
        return {"ts_ms": self.ts_ns // 1_000_000, "level": self.level, "logger": self.logger,
                "message": self.message, "count": self.count}


class RecentErrors(logging.Handler):
    """A bounded ring of recent WARNING+ records (thread-safe: drivers log from threads)."""

    def __init__(self, capacity: int = 100, level: int = logging.WARNING) -> None:
        super().__init__(level)
        self._ring: deque[RecentRecord] = deque(maxlen=capacity)
        self.total = 0  # records seen, repeats included

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                message = f"{message}: {type(exc).__name__}: {exc}"
        except Exception:  # a bad format string must not break logging
            message = str(record.msg)
        ts_ns = int(record.created * 1e9)
        self.total += 1
        last = self._ring[-1] if self._ring else None
        if (last is not None and last.logger == record.name and last.level == record.levelname
                and last.message == message):
            last.count += 1
            last.ts_ns = ts_ns
            return
        self._ring.append(RecentRecord(ts_ns, record.levelname, record.name, message))

    def snapshot(self) -> list[dict[str, object]]:
        """Newest first."""
        self.acquire()  # emit() runs under the same lock (Handler.handle)
        try:
            return [r.as_dict() for r in reversed(self._ring)]
        finally:
            self.release()
