"""The bounded ring of recent warnings and errors behind the status page."""

from __future__ import annotations

import logging
import threading

from gateway.recent_errors import RecentErrors


def make_logger(handler: RecentErrors, name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger


def test_keeps_warnings_and_errors_newest_first_and_bounded() -> None:
    handler = RecentErrors(capacity=3)
    log = make_logger(handler, "test.recent.bounded")
    try:
        log.info("not kept")
        log.debug("not kept either")
        for i in range(5):
            log.warning("device d%d: cannot connect", i)
        log.error("spool: disk full")
        snap = handler.snapshot()
        assert [e["message"] for e in snap] == [
            "spool: disk full", "device d4: cannot connect", "device d3: cannot connect"]
        assert snap[0]["level"] == "ERROR" and snap[0]["logger"] == "test.recent.bounded"
        assert snap[0]["ts_ms"] >= snap[1]["ts_ms"] > 0
        assert handler.total == 6
    finally:
        log.removeHandler(handler)


def test_repeats_are_counted_not_stored_and_exceptions_named() -> None:
    handler = RecentErrors(capacity=10)
    log = make_logger(handler, "test.recent.repeats")
    try:
        for _ in range(1000):
            log.warning("device %s: timeout", "meter")
        try:
            raise ValueError("bad register")
        except ValueError:
            log.exception("driver crashed")
        log.warning("a %s format", "bad", "extra")  # a broken call must not raise
        snap = handler.snapshot()
        assert len(snap) == 3
        assert snap[2] == {**snap[2], "message": "device meter: timeout", "count": 1000}
        assert snap[1]["message"] == "driver crashed: ValueError: bad register"
        assert snap[0]["message"] == "a %s format"
    finally:
        log.removeHandler(handler)


def test_threads_can_log_while_the_loop_reads() -> None:
    handler = RecentErrors(capacity=50)
    log = make_logger(handler, "test.recent.threads")
    try:
        def spam(n: int) -> None:
            for i in range(500):
                log.warning("thread %d message %d", n, i)

        threads = [threading.Thread(target=spam, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            assert len(handler.snapshot()) <= 50
        for t in threads:
            t.join()
        assert handler.total == 2000 and len(handler.snapshot()) == 50
    finally:
        log.removeHandler(handler)
