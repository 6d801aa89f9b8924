"""The Sparkplug birth/death sequence number (bdSeq), persisted across restarts.

bdSeq starts at 0 and rises by one (mod 256) with every MQTT CONNECT that reached a
broker; the NDEATH registered as the will of that CONNECT and the NBIRTH that follows
carry the same number, so a host pairs them. A failed connection attempt reuses the
number (no broker saw it). The last used number is kept in a small JSON file next to
the data sequence store; an unreadable file restarts at 0 with a warning.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from gateway.durable import replace_durably

log = logging.getLogger(__name__)


class BdSeqStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # next_for_connect runs in paho's thread
        self._last = self._load()  # last bdSeq a broker saw, None before the first
        self._pending = 0 if self._last is None else (self._last + 1) % 256

    def _load(self) -> int | None:
        try:
            value = int(json.loads(self.path.read_text())["last_bdseq"])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, OSError) as exc:
            log.warning("bdSeq file %s unreadable (%s); starting again at 0", self.path, exc)
            return None
        return value % 256

    def next_for_connect(self) -> int:
        """The bdSeq for the next CONNECT's will (the same until a connect succeeds)."""
        with self._lock:
            return self._pending

    def connected(self, bdseq: int) -> None:
        """A broker accepted the CONNECT carrying ``bdseq``: persist it, move on."""
        with self._lock:
            self._last = bdseq
            self._pending = (bdseq + 1) % 256
        self._write(bdseq)

    @property
    def last(self) -> int | None:
        return self._last

    def _write(self, bdseq: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            replace_durably(self.path, json.dumps({"last_bdseq": bdseq}).encode())
        except OSError as exc:  # the session goes on; a restart may then repeat a number
            log.error("cannot persist bdSeq to %s: %s", self.path, exc)
