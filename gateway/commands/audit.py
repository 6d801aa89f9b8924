"""The command audit log: JSON lines, append-only, each line fsync'd before it counts.

One line per command (``"event": "cmd"``) and one per write (``"event": "write"``), with
the time, the source topic, the command id, and for writes the tag, value, raw value,
outcome, reason and verification. The file is opened with ``O_APPEND`` and never
rewritten; rotate it with an external tool that copies and truncates (or moves it
away while the gateway is stopped).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from gateway.commands.result import json_safe
from gateway.repeated_log import RepeatedLog
from gateway.types import now_ns

log = logging.getLogger(__name__)


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._lock = threading.Lock()
        self.lines = 0
        self.errors = 0
        # a full disk fails every record: the first, then a summary a minute (no traceback)
        self._failures = RepeatedLog(log, f"cannot write the audit log {path}")

    def record(self, event: str, **fields: Any) -> None:
        """Append one line and fsync it. Errors are logged and counted, never raised."""
        entry = {"ts": now_ns() // 1_000_000, "event": event,
                 **{k: json_safe(v) for k, v in fields.items()}}  # fmt: skip
        line = json.dumps(entry, separators=(",", ":"), default=str, allow_nan=False) + "\n"
        data = line.encode()
        with self._lock:
            try:
                written = 0
                while written < len(data):
                    written += os.write(self._fd, data[written:])
                os.fsync(self._fd)
            except (OSError, ValueError) as exc:
                self.errors += 1
                self._failures.failure(f"{exc}; lines lost so far: {self.errors}",
                                       key=str(exc))  # fmt: skip
                return
            self.lines += 1
            self._failures.recovery(f"audit log {self.path} written again")

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
