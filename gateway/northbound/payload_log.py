"""Payload segment files of the disk spool: large payloads live outside SQLite.

SQLite writes every byte of a large BLOB several times (page images into the WAL,
with checksums, then again into the database at checkpoint) and costs about seven
times the CPU of a plain file write (``bench/northbound.py``, spool write rate). So
the spool keeps the index of its messages (topic, seq, sizes, where the payload is)
in SQLite and the payloads of one flush in one sequential write to a *segment*
file, ``<spool>.payloads/<n>.seg``.

Order of writes, which is what makes this crash safe: the payloads are written and
``fdatasync``-ed first, then the index rows are committed (WAL, ``synchronous=FULL``).
A SIGKILL or power cut in between leaves payload bytes no row points to, which are
garbage and ignored; a committed row always points to durable bytes.

Each payload is framed by a 12-byte header and trailer that carry the message id,
checked when the payload is read back: a region that was never written (zeros), a
recycled segment's older content, a truncated file or a wrong offset is detected
instead of sent. Not a checksum of the bytes: per-byte work in the spool's writer
thread costs far more than its CPU, because every call that releases the GIL (zlib's
CRC does, for each payload) then waits for a busy event loop to hand it back.

A segment is written by one flush after another up to :attr:`PayloadLog.segment_bytes`
(a flush is never split), then the next one starts. When every row pointing to a
segment is deleted (acknowledged or dropped) and committed, the file is recycled: kept
as a spare that a later segment overwrites (rewriting allocated blocks is much cheaper
than allocating new ones) or, past :attr:`PayloadLog.SPARES`, deleted. Segments no row
points to are removed when the spool opens.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import struct
import threading
from collections.abc import Iterable
from pathlib import Path

from gateway.errors import PayloadError

log = logging.getLogger(__name__)

_SEGMENT = re.compile(r"^(\d{12})\.seg$")
_SPARE = re.compile(r"^spare-(\d+)\.seg$")
#: buffers per pwritev call (the kernel's IOV_MAX), three per payload
_IOV_PER_CALL = 1023
_HEADER = struct.Struct("<4sQ")  # magic, message id
_TRAILER = struct.Struct("<Q4s")  # message id, magic
_MAGIC = b"CXSP"
#: bytes a payload takes in a segment besides its own
FRAMING = _HEADER.size + _TRAILER.size


def payload_dir(spool_path: Path) -> Path:
    return spool_path.with_name(spool_path.name + ".payloads")


class PayloadLog:
    """The segment files of one spool. Placement and accounting are done on the event
    loop; :meth:`write` runs in the spool's worker thread (one write at a time)."""

    #: recycled segment files kept for reuse
    SPARES = 2

    def __init__(self, directory: Path, segment_bytes: int, live: dict[int, int]) -> None:
        """``live``: rows per segment in the spool's index (segments it does not point to
        are garbage)."""
        self.directory = directory
        self.segment_bytes = segment_bytes
        directory.mkdir(parents=True, exist_ok=True)
        #: committed rows per segment
        self.live = dict(live)
        keep = set(live)
        self._spares: list[Path] = []
        self._spare_lock = threading.Lock()  # spares are taken by the writer, added by the loop
        self._spare_serial = 0
        highest = max(keep, default=0)
        unreferenced = []
        for entry in sorted(directory.iterdir()):
            seg = _SEGMENT.match(entry.name)
            spare = _SPARE.match(entry.name)
            if seg is not None:
                number = int(seg.group(1))
                highest = max(highest, number)
                if number not in keep:
                    unreferenced.append(entry)  # a flush that never committed, or freed
            elif spare is not None:
                self._spares.append(entry)
                self._spare_serial = max(self._spare_serial, int(spare.group(1)))
        for entry in unreferenced:
            self._retire(entry)
        # a new run writes into a new segment: the old one's tail may hold garbage
        self._seg = highest + 1
        self._tail = 0
        self._write_seg = 0
        self._write_fd: int | None = None
        self._read_fds: dict[int, int] = {}

    def path(self, seg: int) -> Path:
        return self.directory / f"{seg:012d}.seg"

    # --- placement (event loop) -------------------------------------------------------------
    def place(self, sizes: list[int]) -> tuple[int, list[int]]:
        """Where the payloads of one flush go: their segment and each one's offset (of
        its header)."""
        sizes = [size + FRAMING for size in sizes]
        total = sum(sizes)
        if self._tail and self._tail + total > self.segment_bytes:
            previous = self._seg
            self._seg += 1
            self._tail = 0
            if not self.live.get(previous):
                self._recycle(previous)
        offsets = []
        at = self._tail
        for size in sizes:
            offsets.append(at)
            at += size
        self._tail = at
        return self._seg, offsets

    # --- writing (worker thread) ----------------------------------------------------------
    def write(self, seg: int, offset: int, ids: list[int], payloads: list[bytes]) -> None:
        """Write the framed payloads contiguously at ``offset`` of ``seg`` and make them
        durable. Raises :class:`OSError` (disk full, I/O error)."""
        fd = self._writer(seg)
        buffers: list[bytes] = []
        for msg_id, payload in zip(ids, payloads, strict=True):
            buffers += (_HEADER.pack(_MAGIC, msg_id), payload, _TRAILER.pack(msg_id, _MAGIC))
        at = offset
        for start in range(0, len(buffers), _IOV_PER_CALL):
            chunk = buffers[start : start + _IOV_PER_CALL]
            want = sum(len(b) for b in chunk)
            done = os.pwritev(fd, chunk, at)
            if done != want:  # a regular file writes all or fails, unless the disk is full
                raise OSError(28, f"short write to {self.path(seg)} ({done} of {want} bytes)")
            at += want
        os.fdatasync(fd)

    def _writer(self, seg: int) -> int:
        if seg == self._write_seg and self._write_fd is not None:
            return self._write_fd
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
        path = self.path(seg)
        with self._spare_lock:
            spare = self._spares.pop() if self._spares else None
        if spare is not None and not path.exists():
            os.replace(spare, path)  # overwrite a recycled file's blocks
        self._write_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._write_seg = seg
        self._sync_directory()  # the new name must survive a power cut before rows point to it
        return self._write_fd

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # --- reading (event loop) ---------------------------------------------------------------
    def read(self, seg: int, offset: int, length: int, msg_id: int) -> bytes:
        """The payload of message ``msg_id`` (``length`` bytes, framed at ``offset``)."""
        fd = self._read_fds.get(seg)
        want = length + FRAMING
        try:
            if fd is None:
                fd = self._read_fds[seg] = os.open(self.path(seg), os.O_RDONLY | os.O_CLOEXEC)
            data = os.pread(fd, want, offset)
        except OSError as exc:
            raise PayloadError(f"segment {seg}: {exc}") from exc
        if len(data) != want:
            raise PayloadError(f"segment {seg}: {len(data)} of {want} bytes at {offset}")
        head = _HEADER.unpack_from(data)
        tail = _TRAILER.unpack_from(data, want - _TRAILER.size)
        if head != (_MAGIC, msg_id) or tail != (msg_id, _MAGIC):
            raise PayloadError(f"segment {seg}: no intact payload of message {msg_id} at {offset}")
        return data[_HEADER.size : want - _TRAILER.size]

    # --- accounting (event loop, after the commit) ------------------------------------------
    def committed(self, segs: Iterable[int]) -> None:
        for seg in segs:
            self.live[seg] = self.live.get(seg, 0) + 1

    def deleted(self, segs: Iterable[int]) -> None:
        """Rows pointing to these segments are gone (committed): recycle empty segments."""
        emptied = set()
        for seg in segs:
            left = self.live.get(seg, 0) - 1
            if left > 0:
                self.live[seg] = left
            else:
                self.live.pop(seg, None)
                emptied.add(seg)
        for seg in emptied:
            if seg != self._seg:  # the segment being filled stays
                self._recycle(seg)

    def _recycle(self, seg: int) -> None:
        fd = self._read_fds.pop(seg, None)
        if fd is not None:
            os.close(fd)
        path = self.path(seg)
        if not path.exists():
            return
        self._retire(path)

    def _retire(self, path: Path) -> None:
        with self._spare_lock:
            if len(self._spares) < self.SPARES:
                self._spare_serial += 1
                spare = self.directory / f"spare-{self._spare_serial}.seg"
                with contextlib.suppress(OSError):
                    os.replace(path, spare)
                    self._spares.append(spare)
                    return
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def reset(self, live: dict[int, int]) -> None:
        """Counts re-read from the index (after a rolled-back transaction)."""
        self.live = dict(live)

    def close(self) -> None:
        for fd in (self._write_fd, *self._read_fds.values()):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._write_fd = None
        self._read_fds.clear()
