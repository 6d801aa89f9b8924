"""Data-message sequence numbers that keep rising across restarts.

The high-water mark is reserved on disk in blocks, so a restart never reuses a
number and the disk sees one small write per block, not one per message. After
a restart the sequence jumps to the next block; the birth announces it, so a
receiver resynchronises there instead of reporting a loss.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from gateway.durable import replace_durably

log = logging.getLogger(__name__)


class SequenceStore:
    def __init__(self, path: Path, block: int = 10_000) -> None:
        self.path = path
        self.block = block
        self._next = self._load()
        self._reserved_until = self._next
        self._reserve()

    def _load(self) -> int:
        try:
            return int(json.loads(self.path.read_text())["next_seq"])
        except FileNotFoundError:
            return 0
        except (ValueError, KeyError, TypeError, OSError) as exc:
            log.warning(
                "sequence file %s unreadable (%s); starting a new sequence epoch", self.path, exc
            )
            return 0

    def _reserve(self) -> None:
        self._reserved_until = self._next + self.block
        self.path.parent.mkdir(parents=True, exist_ok=True)
        replace_durably(self.path, json.dumps({"next_seq": self._reserved_until}).encode())

    @property
    def peek(self) -> int:
        return self._next

    def next(self) -> int:
        value = self._next
        self._next += 1
        if self._next >= self._reserved_until:
            self._reserve()
        return value
