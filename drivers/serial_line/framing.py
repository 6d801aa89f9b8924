"""Split a serial byte stream into frames: by terminator, by fixed length, or by start/end bytes.

Framers are pure (no I/O) and never raise on any input. What they cannot place in
a frame is dropped and counted in :attr:`Framer.bytes_discarded`; a frame longer
than ``max_frame`` is dropped (:attr:`Framer.overflows`) and the framer
resynchronises at the next frame boundary, so garbage without a terminator cannot
grow the buffer beyond :attr:`Framer.max_buffered`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from drivers.serial_line.config import FramingConfig


class Framer(ABC):
    """Feed bytes, get whole frames (the payload, without the framing bytes)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        #: bytes dropped: outside any frame, in overlong or cut-off frames
        self.bytes_discarded = 0
        #: frames dropped because they exceeded ``max_frame``
        self.overflows = 0
        #: frames dropped because a new start came before their end
        self.partials = 0

    @property
    @abstractmethod
    def max_buffered(self) -> int:
        """The most bytes the framer ever keeps between two :meth:`feed` calls."""

    @abstractmethod
    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the frames they complete, oldest first."""

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def reset(self) -> None:
        """Drop a partial frame (before a poll: leftovers are not the answer)."""
        self.bytes_discarded += len(self._buf)
        self._buf.clear()


class TerminatorFramer(Framer):
    """Frames end with ``terminator`` (e.g. CR LF). Empty frames are skipped."""

    def __init__(self, terminator: bytes, max_frame: int) -> None:
        super().__init__()
        if not terminator:
            raise ValueError("empty terminator")
        self.terminator = terminator
        self.max_frame = max_frame
        self._skipping = False  # inside an overlong frame: drop up to the next terminator

    @property
    def max_buffered(self) -> int:
        return self.max_frame + len(self.terminator) - 1

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        term, tl = self.terminator, len(self.terminator)
        frames: list[bytes] = []
        pos = 0
        while (i := buf.find(term, pos)) >= 0:
            if self._skipping:
                self.bytes_discarded += i + tl - pos
                self._skipping = False
            elif i - pos > self.max_frame:
                self.bytes_discarded += i + tl - pos
                self.overflows += 1
            elif i > pos:
                frames.append(bytes(buf[pos:i]))
            pos = i + tl
        del buf[:pos]
        if len(buf) > self.max_buffered:  # no terminator within max_frame: not a frame
            drop = len(buf) - (tl - 1)  # keep what may be the start of a terminator
            self.bytes_discarded += drop
            del buf[:drop]
            if not self._skipping:
                self.overflows += 1
                self._skipping = True
        return frames

    def reset(self) -> None:
        super().reset()
        self._skipping = False


class FixedLengthFramer(Framer):
    """Frames of ``length`` bytes; with ``start`` they begin with those bytes, which
    resynchronises after a lost or extra byte (bytes before a start are discarded)."""

    def __init__(self, length: int, start: bytes = b"") -> None:
        super().__init__()
        if length <= len(start):
            raise ValueError("length must exceed the start bytes")
        self.length = length
        self.start = start

    @property
    def max_buffered(self) -> int:
        return self.length - 1

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        n, start = self.length, self.start
        frames: list[bytes] = []
        pos = 0
        if not start:
            whole = len(buf) // n * n
            frames = [bytes(buf[i : i + n]) for i in range(0, whole, n)]
            del buf[:whole]
            return frames
        while True:
            i = buf.find(start, pos)
            if i < 0:
                keep = max(pos, len(buf) - len(start) + 1)  # maybe the start of a start
                self.bytes_discarded += keep - pos
                pos = keep
                break
            self.bytes_discarded += i - pos
            pos = i
            if len(buf) - i < n:
                break
            frames.append(bytes(buf[i + len(start) : i + n]))
            pos = i + n
        del buf[:pos]
        return frames


class StartEndFramer(Framer):
    """Frames between ``start`` and ``end`` (e.g. STX ... ETX). Bytes outside are discarded;
    a new start before the end drops the cut-off frame and begins again there."""

    def __init__(self, start: bytes, end: bytes, max_frame: int) -> None:
        super().__init__()
        if not start or not end or start == end:
            raise ValueError("start and end must be non-empty and differ")
        self.start = start
        self.end = end
        self.max_frame = max_frame
        self._in_frame = False  # when True, the buffer holds the payload so far

    @property
    def max_buffered(self) -> int:
        return max(self.max_frame + len(self.end) - 1, len(self.start) - 1)

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        start, end, sl = self.start, self.end, len(self.start)
        frames: list[bytes] = []
        payload = 0 if self._in_frame else -1  # index of the current frame's payload
        pos = 0
        while True:
            if payload < 0:
                i = buf.find(start, pos)
                if i < 0:
                    keep = max(pos, len(buf) - sl + 1)  # maybe the start of a start
                    self.bytes_discarded += keep - pos
                    pos = keep
                    break
                self.bytes_discarded += i - pos
                payload = pos = i + sl
            j = buf.find(end, pos)
            k = buf.find(start, pos)
            if k >= 0 and (j < 0 or k < j):  # a new frame began before this one ended
                self.bytes_discarded += k - payload + sl
                self.partials += 1
                payload = pos = k + sl
                continue
            if j < 0:
                if len(buf) - payload > self.max_frame + len(end) - 1:
                    self.bytes_discarded += len(buf) - payload + sl
                    self.overflows += 1
                    payload = -1
                    pos = len(buf)
                    continue  # hunt for a start in what is left (nothing): trims the buffer
                break
            if j - payload > self.max_frame:
                self.bytes_discarded += j - payload + sl + len(end)
                self.overflows += 1
            else:
                frames.append(bytes(buf[payload:j]))
            payload = -1
            pos = j + len(end)
        if payload >= 0:
            del buf[:payload]
            self._in_frame = True
        else:
            del buf[:pos]
            self._in_frame = False
        return frames

    def reset(self) -> None:
        super().reset()
        self._in_frame = False


def make_framer(config: FramingConfig) -> Framer:
    """The framer for a device's ``framing`` block."""
    if config.kind == "terminator":
        return TerminatorFramer(config.terminator_bytes, config.max_frame)
    if config.kind == "length":
        assert config.length is not None
        return FixedLengthFramer(config.length, config.start_bytes)
    return StartEndFramer(config.start_bytes, config.end_bytes, config.max_frame)
