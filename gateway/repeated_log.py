"""Failures that repeat, in the log: the first in full, the rest counted and summed up.

A full disk fails every spool flush, a hostile device garbles every answer, a broker
refuses every reconnect: one log line per event buries everything else (hundreds of
identical lines a minute) and tells nothing more than the first. The rule, for every
place where a peer or a broken disk can drive a failure per event:

* the first failure is logged in full;
* the same failure again is counted; at most once per ``interval`` (60 s) a summary
  says how often it happened since the last line and the last reason, e.g.
  ``spool /var/lib/gw/spool.db: write failed 225 more times in the last 60 s: database
  or disk is full``;
* a different reason is logged in full at once (after a summary of the old one);
* the recovery is logged at INFO with the number of failures it ended.

The counters and metrics of each failure stay exact; only the log is thinned.
:class:`RepeatCounter` is the pure logic (its clock is injected), :class:`RepeatedLog`
writes what it decides to a logger. :class:`KindCounter` and :class:`RepeatedKinds` count
several kinds apart (junk that fails one way, then another, per exception type or per
peer). None is thread-safe: each is used by one task or thread (or under its owner's
lock). :class:`LibraryLogFilter` applies the rule to a third-party library's own log lines.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, TypeVar

#: seconds between two summaries of the same repeating failure
SUMMARY_INTERVAL = 60.0


@dataclass(frozen=True, slots=True)
class LogLine:
    level: int
    text: str
    #: a count of failures not logged one by one (else: one failure, or the recovery)
    summary: bool = False


def _times(n: int) -> str:
    return "1 more time" if n == 1 else f"{n} more times"


class RepeatCounter:
    """One repeating failure of one thing (a spool's writes, a device's answers).

    ``what`` starts every line (``"spool x.db: write failed"``); a failure's ``reason``
    follows it. Two failures are the same when their ``key`` is (the reason by default;
    a caller gives a key when the reason carries changing details such as counts).
    """

    def __init__(
        self,
        what: str,
        level: int = logging.ERROR,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.level = level
        self.interval = SUMMARY_INTERVAL if interval is None else interval
        self._clock = clock
        #: failures since the last recovery (logged or not)
        self.failures = 0
        self._key: str | None = None  # the current failure's key; None: not failing
        self._reason = ""
        self._unlogged = 0  # failures since the last line
        self._line_at = 0.0  # when the last line about this failure was written
        self._since = 0.0  # when the current streak of failures began

    @property
    def failing(self) -> bool:
        return self._key is not None

    @property
    def reason(self) -> str:
        """The last failure's reason ("" before the first)."""
        return self._reason

    def failure(self, reason: str, key: str | None = None) -> list[LogLine]:
        """One failure: the lines to log now (none while it repeats within the interval)."""
        now = self._clock()
        key = reason if key is None else key
        self.failures += 1
        if self._key is None:
            self._since = now
        elif key == self._key:
            self._reason = reason
            self._unlogged += 1
            if now - self._line_at < self.interval:
                return []
            if self._unlogged == 1:  # alone after a quiet interval: in full
                self._unlogged = 0
                self._line_at = now
                return [LogLine(self.level, f"{self.what}: {reason}")]
            return [self._summary(now)]
        lines = self.due(force=True)  # a change: what was counted of the old reason first
        self._key, self._reason, self._unlogged, self._line_at = key, reason, 0, now
        lines.append(LogLine(self.level, f"{self.what}: {reason}"))
        return lines

    def due(self, force: bool = False) -> list[LogLine]:
        """The summary of failures not yet logged, once ``interval`` passed since the last
        line (or at once with ``force``, e.g. at shutdown). Call it now and then so that
        a burst that stopped is summed up too."""
        now = self._clock()
        if self._unlogged and (force or now - self._line_at >= self.interval):
            return [self._summary(now)]
        return []

    def recovery(self, text: str) -> list[LogLine]:
        """It works again: ``text`` at INFO with the number of failures, if it was failing."""
        if self._key is None:
            return []
        now = self._clock()
        n, seconds = self.failures, now - self._since
        self._key, self._unlogged, self.failures = None, 0, 0
        times = "1 failure" if n == 1 else f"{n} failures"
        return [LogLine(logging.INFO, f"{text} (after {times} in {seconds:.0f} s)")]

    def _summary(self, now: float) -> LogLine:
        n, seconds = self._unlogged, now - self._line_at
        self._unlogged, self._line_at = 0, now
        return LogLine(
            self.level, f"{self.what} {_times(n)} in the last {seconds:.0f} s: {self._reason}",
            summary=True,
        )


class RepeatedLog:
    """A :class:`RepeatCounter` writing to ``logger``."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        level: int = logging.ERROR,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.counter = RepeatCounter(what, level, interval, clock)

    @property
    def failing(self) -> bool:
        return self.counter.failing

    def failure(self, reason: str, key: str | None = None) -> bool:
        """Count a failure; True when a line was logged for it."""
        return _write(self.logger, self.counter.failure(reason, key))

    def due(self, force: bool = False) -> None:
        _write(self.logger, self.counter.due(force))

    def recovery(self, text: str) -> None:
        _write(self.logger, self.counter.recovery(text))


class KindCounter:
    """Several kinds of one repeating failure, each a :class:`RepeatCounter` of its own:
    kinds that take turns (a hostile peer's junk fails one way, then another) are not
    changes of reason. At most ``max_kinds`` are remembered; beyond, the least recent is
    forgotten (and logged in full again if it comes back), so random kinds cannot grow
    memory. There is no recovery: a kind that stops is summed up by :meth:`due`."""

    def __init__(
        self,
        what: str,
        level: int = logging.WARNING,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_kinds: int = 64,
    ) -> None:
        self.what = what
        self.level = level
        self.interval = interval
        self._clock = clock
        self._max_kinds = max_kinds
        self._kinds: dict[str, RepeatCounter] = {}  # in order of last use

    def failure(self, reason: str, kind: str, level: int | None = None) -> list[LogLine]:
        """One failure of ``kind`` (a new kind's lines at ``level``, by default the
        counter's): the lines to log now."""
        counter = self._kinds.pop(kind, None)
        if counter is None:
            counter = RepeatCounter(self.what, level or self.level, self.interval, self._clock)
            if len(self._kinds) >= self._max_kinds:
                del self._kinds[next(iter(self._kinds))]
        self._kinds[kind] = counter  # the most recent last
        return counter.failure(reason, kind)

    def last_reason(self, kind: str) -> str | None:
        counter = self._kinds.get(kind)
        return None if counter is None else counter.reason

    def due(self, force: bool = False) -> list[LogLine]:
        return [line for counter in self._kinds.values() for line in counter.due(force)]


class RepeatedKinds:
    """A :class:`KindCounter` writing to ``logger``."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        level: int = logging.WARNING,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_kinds: int = 64,
    ) -> None:
        self.logger = logger
        self.counter = KindCounter(what, level, interval, clock, max_kinds)

    def failure(self, reason: str, kind: str) -> bool:
        """Count a failure of ``kind``; True when a line was logged for it."""
        return _write(self.logger, self.counter.failure(reason, kind))

    def due(self, force: bool = False) -> None:
        _write(self.logger, self.counter.due(force))


def _write(logger: logging.Logger, lines: list[LogLine]) -> bool:
    for line in lines:
        logger.log(line.level, "%s", line.text)
    return bool(lines)


#: numbers in a library's line (counts, ids, addresses): blanked to find its kind
_NUMBERS = re.compile(r"0x[0-9a-fA-F]+|\d+")


_F = TypeVar("_F", bound="LibraryLogFilter")


class LibraryLogFilter(logging.Filter):
    """A third-party library's warnings and errors, thinned by the rule above.

    One subclass per library names it (:attr:`library`) and what to drop (:attr:`quiet`);
    put on each of the library's loggers (a filter on a logger sees only the records logged
    to that very logger). The kind of a line is its first line with numbers blanked
    (``Invalid Modbus protocol id: #``); the first line of a kind passes, the rest are
    counted and a summary replaces the line that is due, e.g. ``pymodbus logged this 52
    more times in the last 60 s: …``. An exception logged with a line is folded into it as
    its type and text: the library's traceback is no news to an engineer, and one peer
    sending junk would print one per connection. Records whose exception is one of
    ``quiet`` are dropped: the driver reports that event itself (a lost connection).

    Below WARNING, and while the library's top logger (``library``: ``asyncua``,
    ``pymodbus``) is set to DEBUG itself, records pass untouched: someone debugging the
    library wants every line and its traceback.
    Thread-safe (libraries log from their own threads too).
    """

    #: the library's top logger name, which also names it in summaries (a subclass sets it)
    library: ClassVar[str]
    #: exceptions whose records are dropped
    quiet: ClassVar[tuple[type[BaseException], ...]] = ()

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._kinds = KindCounter(f"{self.library} logged this", clock=clock)
        self._library = logging.getLogger(self.library)
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or self._library.level == logging.DEBUG:
            return True
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and isinstance(exc, self.quiet):
            return False
        try:
            text = record.getMessage()
        except Exception:  # a bad format string: let logging report it as usual
            return True
        with self._lock:
            seen = self.kind_of(text)
            if seen is None:
                return False
            reason, kind = seen
            lines = self._kinds.failure(reason, kind, record.levelno)
        if not lines:
            return False
        if lines[-1].summary:
            text = lines[-1].text
        elif exc is not None:
            described = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            text = f"{text} ({described})"
        record.msg, record.args, record.exc_info, record.exc_text = text, None, None, None
        record.stack_info = None
        return True

    def kind_of(self, text: str) -> tuple[str, str] | None:
        """The reason (for a summary) and the kind of a line; None drops it. Called under
        the filter's lock."""
        first = text.split("\n", 1)[0]
        return first, _NUMBERS.sub("#", first)

    def last_reason(self, kind: str) -> str | None:
        return self._kinds.last_reason(kind)


def install_library_filter(logger_names: Sequence[str], make: type[_F]) -> _F:
    """One filter of class ``make`` on each of a library's loggers, made the first time
    (idempotent: the one already on the first logger is returned and put where missing)."""
    loggers = [logging.getLogger(name) for name in logger_names]
    found = [f for f in loggers[0].filters if isinstance(f, make)]
    installed = found[0] if found else make()
    for logger in loggers:
        if installed not in logger.filters:
            logger.addFilter(installed)
    return installed
