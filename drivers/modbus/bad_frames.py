"""Bad frames at the pymodbus boundary: caught where pymodbus raises them, and its log
lines about them thinned to the first plus counted summaries.

A hostile or broken device can answer every request with bytes pymodbus cannot decode.
pymodbus then raises out of its protocol's ``data_received``; asyncio logs that as
"Fatal error: protocol.data_received() call failed" with a traceback (one per frame) and
closes the connection, and the driver saw only a closed connection. :func:`guard_client`
catches the error in pymodbus's ``callback_data`` instead: the frame is recorded for the
driver (which counts it as a ``garbled`` answer of its unit), and a TCP connection is
closed without the traceback, its stream being out of step. On a serial bus the bytes
are dropped and the port stays open (the next request starts with a clean buffer).

Bytes on TCP that are no Modbus TCP frame at all (a protocol id other than 0: noise, or
another protocol answering) are dropped and recorded too, before pymodbus logs an ERROR
with the frames in hex for each of them; the request then ends as ``garbled``, not as a
timeout, and the connection stays (pymodbus clears its buffer before each request).

pymodbus also logs a WARNING or ERROR per bad frame itself (``Invalid Modbus protocol
id: 39161`` with the last frames in hex, ``Unable to decode frame ...``). The filter
:class:`PymodbusLogFilter` on its logger lets the first line of each kind through (kinds
differ in words, not in numbers), then counts, and at most once a minute turns the next
such line into a summary (gateway/repeated_log.py). The driver's counters and the
``chenxing_modbus_unit_bad_frames`` metric still count every bad frame.

Reliance on pymodbus internals (3.10+): the client's ``ctx`` (its transaction manager,
an asyncio protocol), whose ``callback_data(data, addr)`` is called by
``datagram_received`` and returns the bytes it used; the ``pymodbus.logging`` logger.
Both are pinned by tests/drivers/modbus/test_modbus_bad_frames.py.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pymodbus.exceptions import ModbusException

from gateway.repeated_log import KindCounter

#: the logger pymodbus writes its own lines to
PYMODBUS_LOGGER = "pymodbus.logging"
#: pymodbus's own line for "the same text again" (its dedup is global and forgets)
_PYMODBUS_REPEATING = "Repeating...."
_NUMBERS = re.compile(r"0x[0-9a-fA-F]+|\d+")


@dataclass(slots=True)
class BadFrames:
    """Frames pymodbus could not decode on one connection or bus: how many, the last why."""

    count: int = 0
    last: str = ""

    def __call__(self, reason: str) -> None:
        self.count += 1
        self.last = reason


def guard_client(client: Any, bad: BadFrames, tcp: bool) -> None:
    """Count in ``bad`` the frames pymodbus cannot decode on ``client`` instead of letting
    it raise; on ``tcp`` also bytes that are no Modbus TCP frame, and an undecodable frame
    closes the connection (serial: the bytes are dropped). Also installs
    :class:`PymodbusLogFilter` (once per process)."""
    install_log_filter()
    ctx: Any = getattr(client, "ctx", None)
    original = getattr(ctx, "callback_data", None)
    if original is None:
        return

    def callback_data(data: bytes, addr: tuple[Any, ...] | None = None) -> int:
        if tcp and len(data) >= 4 and data[2:4] != b"\x00\x00":
            protocol = int.from_bytes(data[2:4], "big")
            bad(f"not a Modbus TCP frame: protocol id {protocol}, {len(data)} bytes")
            return len(data)  # dropped; the request waits for its answer or times out
        try:
            return int(original(data, addr=addr))
        except (ModbusException, ValueError, IndexError) as exc:
            bad(str(exc) or type(exc).__name__)
            transport = getattr(ctx, "transport", None)
            if tcp and transport is not None:
                transport.abort()  # what asyncio would do, without its traceback
            return len(data)

    ctx.callback_data = callback_data


class PymodbusLogFilter(logging.Filter):
    """First line of each kind through, the rest counted, a summary per interval.

    Kinds are the first line with numbers blanked: ``Invalid Modbus protocol id: #``.
    A summary replaces the line that is due, e.g. ``pymodbus logged this 52 more times in
    the last 60 s: Invalid Modbus protocol id: 1234``. Lines below WARNING pass as they
    are (they are off unless pymodbus is set to DEBUG).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._kinds = KindCounter("pymodbus logged this", clock=clock)
        self._last_kind: str | None = None
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a bad format string: let logging report it as usual
            return True
        with self._lock:
            if text == _PYMODBUS_REPEATING:
                kind = self._last_kind
                repeated = None if kind is None else self._kinds.last_reason(kind)
                if kind is None or repeated is None:
                    return False
                first = repeated  # the text it repeats
            else:
                first = text.split("\n", 1)[0]
                kind = _NUMBERS.sub("#", first)
            self._last_kind = kind
            lines = self._kinds.failure(first, kind, record.levelno)
        if not lines:
            return False
        if lines[-1].summary:
            record.msg, record.args, record.exc_info = lines[-1].text, None, None
        elif text == _PYMODBUS_REPEATING:
            record.msg, record.args = first, None
        return True


def install_log_filter() -> PymodbusLogFilter:
    """The filter on pymodbus's logger, added the first time (idempotent)."""
    logger = logging.getLogger(PYMODBUS_LOGGER)
    for existing in logger.filters:
        if isinstance(existing, PymodbusLogFilter):
            return existing
    added = PymodbusLogFilter()
    logger.addFilter(added)
    return added
