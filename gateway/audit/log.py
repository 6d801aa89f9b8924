"""The audit log writer: JSON lines, append-only, each line fsync'd before it counts.

A line: ``{"ts": <ms since the epoch>, "seq": <n>, "event": <kind>, ...fields}``. ``seq``
rises by one per line across rotations (and across processes: the CLI audits user
changes into the same file), so a reader pages by it.

**Durability.** A line is written with one ``write`` on an ``O_APPEND`` descriptor and
``fsync``'d before :meth:`AuditLog.record` returns: an event the gateway acted on is on
disk even if the process is killed the next instant. A kill in the middle of a line
leaves a torn last line; the next writer ends it with a newline first (the reader skips
it and counts it as damaged), so nothing written after it is lost.

**Bounded.** When the file passes ``max_bytes`` it becomes ``audit.log.1`` (``.1`` becomes
``.2`` ... up to ``files - 1``; the oldest is dropped): at most ``files * max_bytes`` on disk,
the newest lines always kept. Each rename is atomic and the folder is fsync'd after it:
a kill during a rotation leaves every line in one of the files.

**Several processes.** Every write holds an ``flock`` on ``audit.log.lock``; a writer whose
file was rotated away by another (or moved by an external tool) opens the new one.
Write errors (a full disk) are logged and counted, never raised.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.audit.values import json_safe
from gateway.durable import fsync_folder
from gateway.repeated_log import RepeatedLog
from gateway.types import now_ns

log = logging.getLogger(__name__)

#: defaults of ``audit.max_bytes`` and ``audit.files``: at most 80 MiB of audit on disk
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_FILES = 5
#: how much of a file's end is read to find its last line's ``seq``
_TAIL_BYTES = 64 * 1024


def rotated_paths(path: Path, files: int) -> list[Path]:
    """The audit files newest first: ``audit.log``, ``audit.log.1`` ... ``.{files-1}``."""
    return [path] + [path.with_name(f"{path.name}.{i}") for i in range(1, files)]


class AuditLog:
    """Appends audit lines to ``path``; thread-safe, and safe beside other processes."""

    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES,
                 files: int = DEFAULT_FILES,
                 clock_ms: Callable[[], int] = lambda: now_ns() // 1_000_000) -> None:
        if files < 1 or max_bytes < 1:
            raise ValueError("an audit log keeps at least one file of at least one byte")
        self.path = path
        self.max_bytes = max_bytes
        self.files = files
        self._clock_ms = clock_ms
        self._lock_fd = -1  # the files are made when the first line is written
        #: the path is not a regular file (``/dev/full`` in a test, a pipe): never read back
        self._special: bool | None = None
        self._closed = False
        self._fd = -1
        self._inode: tuple[int, int] | None = None
        self._known_size = -1  # the file's size after this writer's last line
        self._seq = 0
        self._lock = threading.Lock()
        self.lines = 0
        self.errors = 0
        self.rotations = 0
        # a full disk fails every record: the first, then a summary a minute (no traceback)
        self._failures = RepeatedLog(log, f"cannot write the audit log {path}")

    def record(self, event: str, **fields: Any) -> int | None:
        """Append one line and fsync it; return its ``seq`` (None when it could not be
        written: logged and counted, never raised)."""
        with self._lock:
            try:
                with self._locked():
                    return self._append(event, fields)
            except (OSError, ValueError) as exc:
                self.errors += 1
                self._failures.failure(f"{exc}; lines lost so far: {self.errors}", key=str(exc))
                return None

    def close(self) -> None:
        with self._lock:
            for fd in (self._fd, self._lock_fd):
                if fd >= 0:
                    os.close(fd)
            self._fd = self._lock_fd = -1
            self._closed = True

    # -- under the lock ------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Any:
        if self._closed:
            raise ValueError("the audit log is closed")
        if self._special is None:
            self._special = _is_special(self.path)
        if self._special:  # a device or a pipe: written as it is, no lock, no rotation
            yield
            return
        if self._lock_fd < 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.path.with_name(self.path.name + ".lock"),
                                    os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _append(self, event: str, fields: dict[str, Any]) -> int:
        self._follow()
        seq = self._seq + 1
        entry = {"ts": self._clock_ms(), "seq": seq, "event": event,
                 **{k: json_safe(v) for k, v in fields.items()}}
        data = (json.dumps(entry, separators=(",", ":"), default=str, allow_nan=False)
                + "\n").encode()
        written = 0
        while written < len(data):
            written += os.write(self._fd, data[written:])
        os.fsync(self._fd)
        self._seq = seq
        self._known_size += len(data)
        self.lines += 1
        self._failures.recovery(f"audit log {self.path} written again")
        if self._known_size >= self.max_bytes and not self._special:
            self._rotate()
        return seq

    def _open(self) -> None:
        """Open ``path`` (creating it), end a torn last line, read the last ``seq``."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        st = os.fstat(self._fd)
        self._inode = (st.st_dev, st.st_ino)
        self._known_size = st.st_size
        if self._special:
            return
        self._seq = self._last_seq()
        self._end_torn_line(st.st_size)

    def _follow(self) -> None:
        """Catch up with what other writers did: a rotation, or lines they appended."""
        try:
            st = os.stat(self.path)
            moved = (st.st_dev, st.st_ino) != self._inode
        except FileNotFoundError:
            moved = True
        if moved or self._fd < 0:
            self._open()
            return
        if st.st_size != self._known_size and not self._special:
            self._known_size = st.st_size
            self._seq = self._last_seq()
            self._end_torn_line(st.st_size)

    def _end_torn_line(self, size: int) -> None:
        if size == 0:
            return
        if os.pread(self._fd, 1, size - 1) != b"\n":  # a line cut by a kill: end it
            os.write(self._fd, b"\n")
            self._known_size = size + 1

    def _last_seq(self) -> int:
        """The highest ``seq`` at the end of the newest file that has one (0: none)."""
        for path in rotated_paths(self.path, self.files):
            seq = _tail_seq(path)
            if seq is not None:
                return seq
        return 0

    def _rotate(self) -> None:
        paths = rotated_paths(self.path, self.files)
        if len(paths) == 1:  # one file: start it anew (the oldest lines are dropped)
            os.ftruncate(self._fd, 0)
            self._known_size = 0
            self.rotations += 1
            return
        for older, newer in zip(reversed(paths[1:]), reversed(paths[:-1]), strict=True):
            with contextlib.suppress(FileNotFoundError):
                os.replace(newer, older)  # the oldest file is replaced: dropped
        fsync_folder(self.path.parent)
        self.rotations += 1
        seq = self._seq
        self._open()
        self._seq = seq  # the new file is empty: the count goes on
        log.info("audit log %s rotated (past %d bytes; %d files kept)", self.path,
                 self.max_bytes, self.files)


def _is_special(path: Path) -> bool:
    """True when ``path`` exists and is not a regular file (a device, a pipe)."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


def _tail_seq(path: Path) -> int | None:
    """The ``seq`` of the last complete line of ``path`` that has one, None if none does
    (a device or a pipe is never read: /dev/full would answer zeros forever)."""
    if _is_special(path):
        return None
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - _TAIL_BYTES)
            f.seek(start)
            tail = f.read()
            lines = tail.split(b"\n")
            if start > 0:
                lines = lines[1:]  # the first is a line's end
            seq = _last_seq_of(lines)
            if seq is None and start > 0:  # lines longer than the tail: read it all
                f.seek(0)
                seq = _last_seq_of(f.read().split(b"\n"))
    except FileNotFoundError:
        return None
    return None if seq is None or seq < 0 else seq


def _last_seq_of(lines: list[bytes]) -> int | None:
    """The last ``seq`` in ``lines``; -1 when the last whole line has none (a line from
    before seq numbers); None when no line can be read."""
    for line in reversed(lines):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a torn line
        if isinstance(entry, dict) and isinstance(entry.get("seq"), int):
            return int(entry["seq"])
        return -1
    return None



