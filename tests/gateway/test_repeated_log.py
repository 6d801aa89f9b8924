"""The rule for failures that repeat: first in full, the rest counted, a summary per
interval, a change of reason at once, the recovery at INFO (pure logic, injected clock)."""

from __future__ import annotations

import logging

import pytest

from gateway.repeated_log import (
    LibraryLogFilter,
    LogLine,
    RepeatCounter,
    RepeatedKinds,
    RepeatedLog,
    install_library_filter,
)

ERROR, INFO = logging.ERROR, logging.INFO


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def counter(clock: Clock, level: int = ERROR) -> RepeatCounter:
    return RepeatCounter("spool s.db: write failed", level, interval=60.0, clock=clock)


def test_first_in_full_then_counted_then_one_summary_per_interval(clock: Clock) -> None:
    c = counter(clock)
    assert c.failure("database or disk is full") == [
        LogLine(ERROR, "spool s.db: write failed: database or disk is full")]
    lines = []
    for _ in range(225):  # one flush every 0.25 s for 56.25 s: nothing logged
        clock.now += 0.25
        lines += c.failure("database or disk is full")
    assert lines == []
    clock.now += 3.75  # 60 s after the first line
    assert c.failure("database or disk is full") == [LogLine(
        ERROR,
        "spool s.db: write failed 226 more times in the last 60 s: database or disk is full",
        summary=True)]
    clock.now += 1
    assert c.failure("database or disk is full") == []
    assert c.failures == 228
    assert c.failing


def test_a_burst_that_stopped_is_summed_up_by_due(clock: Clock) -> None:
    c = counter(clock)
    c.failure("disk I/O error")
    for _ in range(3):
        clock.now += 1
        assert c.failure("disk I/O error") == []
    clock.now += 10
    assert c.due() == []  # the interval has not passed since the first line
    clock.now += 50
    assert c.due() == [
        LogLine(ERROR, "spool s.db: write failed 3 more times in the last 63 s: disk I/O error",
                summary=True)]
    clock.now += 600
    assert c.due() == []  # nothing new to tell
    # alone after a quiet interval: logged in full again, not as "1 more time"
    assert c.failure("disk I/O error") == [
        LogLine(ERROR, "spool s.db: write failed: disk I/O error")]


def test_due_with_force_sums_up_at_once(clock: Clock) -> None:
    c = counter(clock)
    c.failure("x")
    clock.now += 1
    c.failure("x")
    assert c.due(force=True) == [
        LogLine(ERROR, "spool s.db: write failed 1 more time in the last 1 s: x", summary=True)]
    assert c.due(force=True) == []


def test_a_new_reason_is_logged_at_once_after_the_count_of_the_old(clock: Clock) -> None:
    c = counter(clock)
    c.failure("database or disk is full")
    clock.now += 1
    c.failure("database or disk is full")
    clock.now += 1
    assert c.failure("disk I/O error") == [
        LogLine(ERROR, "spool s.db: write failed 1 more time in the last 2 s: "
                       "database or disk is full", summary=True),
        LogLine(ERROR, "spool s.db: write failed: disk I/O error"),
    ]
    clock.now += 1
    # back to the first reason: a change again, with nothing to sum up
    assert c.failure("database or disk is full") == [
        LogLine(ERROR, "spool s.db: write failed: database or disk is full")]


def test_a_key_groups_reasons_that_differ_in_details(clock: Clock) -> None:
    c = counter(clock, logging.WARNING)
    c.failure("dropped 3 messages: full limit", key="full")
    clock.now += 30
    assert c.failure("dropped 5 messages: full limit", key="full") == []
    clock.now += 30
    assert c.failure("dropped 2 messages: full limit", key="full") == [LogLine(
        logging.WARNING,
        "spool s.db: write failed 2 more times in the last 60 s: dropped 2 messages: full limit",
        summary=True)]
    assert c.failure("dropped 1 message: age limit", key="age") == [
        LogLine(logging.WARNING, "spool s.db: write failed: dropped 1 message: age limit")]


def test_recovery_is_info_with_the_number_of_failures_and_starts_afresh(clock: Clock) -> None:
    c = counter(clock)
    assert c.recovery("spool s.db: writes succeed again") == []  # was not failing
    c.failure("database or disk is full")
    for _ in range(49):
        clock.now += 1
        c.failure("database or disk is full")
    clock.now += 1
    assert c.recovery("spool s.db: writes succeed again") == [
        LogLine(INFO, "spool s.db: writes succeed again (after 50 failures in 50 s)")]
    assert not c.failing and c.failures == 0
    assert c.due(force=True) == []  # the recovery line told the count
    clock.now += 1
    assert c.failure("database or disk is full") == [
        LogLine(ERROR, "spool s.db: write failed: database or disk is full")]


def test_repeated_log_writes_the_lines_to_its_logger(clock: Clock) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("test.repeated_log")
    logger.addHandler(Keep())
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    repeated = RepeatedLog(logger, "device m: answers", logging.WARNING, 10.0, clock)
    assert repeated.failure("garbled") is True
    assert repeated.failure("garbled") is False
    clock.now += 10
    repeated.due()
    repeated.recovery("device m: answers again")
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.WARNING, "device m: answers: garbled"),
        (logging.WARNING, "device m: answers 1 more time in the last 10 s: garbled"),
        (INFO, "device m: answers again (after 2 failures in 10 s)"),
    ]


def test_kinds_taking_turns_are_counted_apart_and_memory_is_bounded(clock: Clock) -> None:
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.Logger("test.repeated_kinds", logging.DEBUG)  # not in the registry
    logger.addHandler(Keep())
    kinds = RepeatedKinds(logger, "undecodable message", interval=60.0, clock=clock,
                          max_kinds=2)
    for i in range(30):  # junk that fails two ways in turn
        clock.now += 1
        kinds.failure(f"on t/{i}: Expecting value", "JSONDecodeError")
        kinds.failure(f"on t/{i}: 'type'", "KeyError")
    assert records == ["undecodable message: on t/0: Expecting value",
                       "undecodable message: on t/0: 'type'"]
    clock.now += 31  # 60 s after the first lines
    kinds.due()
    assert records[2:] == [
        "undecodable message 29 more times in the last 60 s: on t/29: Expecting value",
        "undecodable message 29 more times in the last 60 s: on t/29: 'type'",
    ]
    kinds.failure("on t/x: bad", "TypeError")  # a third kind: the least recent is forgotten
    kinds.failure("on t/y: Expecting value", "JSONDecodeError")  # forgotten: in full again
    assert records[4:] == ["undecodable message: on t/x: bad",
                           "undecodable message: on t/y: Expecting value"]


class _SomeLibFilter(LibraryLogFilter):
    library = "somelib"
    quiet = (ConnectionError,)


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _library_logger(name: str, clock: Clock) -> tuple[logging.Logger, _Kept]:
    logger = logging.Logger(name, logging.DEBUG)  # not in logging's registry
    kept = _Kept()
    logger.addHandler(kept)
    logger.addFilter(_SomeLibFilter(clock))
    return logger, kept


def _raise(exc: BaseException) -> None:
    raise exc


def test_a_library_line_with_an_exception_is_one_line_and_a_lost_connection_is_dropped(
    clock: Clock,
) -> None:
    logger, kept = _library_logger("somelib.client", clock)
    for n in (8, 9):
        try:
            _raise(ValueError(f"unpack requires a buffer of {n} bytes"))
        except ValueError:
            logger.exception("Exception raised while parsing message %d", n)
    try:
        _raise(ConnectionResetError("reset by peer"))
    except ConnectionError:
        logger.error("publish failed", exc_info=True)
    ((record,),) = [kept.records]
    assert record.getMessage() == ("Exception raised while parsing message 8 "
                                   "(ValueError: unpack requires a buffer of 8 bytes)")
    assert record.exc_info is None and record.exc_text is None


def test_a_library_set_to_debug_gets_its_lines_whole(clock: Clock) -> None:
    logger, kept = _library_logger("somelib.client", clock)
    library = logging.getLogger("somelib")
    library.setLevel(logging.DEBUG)
    try:
        for _ in range(2):
            try:
                _raise(ValueError("bad"))
            except ValueError:
                logger.exception("parse failed")
    finally:
        library.setLevel(logging.NOTSET)
    assert [r.exc_info is not None for r in kept.records] == [True, True]


def test_one_library_filter_goes_on_every_logger_named_once() -> None:
    names = ["somelib.test_install.a", "somelib.test_install.b"]
    first = install_library_filter(names, _SomeLibFilter)
    again = install_library_filter(names, _SomeLibFilter)
    assert again is first
    assert [logging.getLogger(n).filters.count(first) for n in names] == [1, 1]

