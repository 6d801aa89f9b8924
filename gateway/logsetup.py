"""Logging for the gateway process: readable text by default, JSON lines as an option;
under systemd each line carries its journald priority, and other libraries' loggers are
held at their own level (WARNING by default) so their INFO chatter stays out.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import TextIO

#: the project's own top-level packages: their loggers follow ``logging.level``; every other
#: logger (asyncua, pymodbus, aiohttp, amqtt, ...) follows ``logging.libraries``
OWN_PACKAGES = ("gateway", "drivers", "edge_models", "firmware_bridge", "brain_reader", "hil")

#: syslog priorities (sd-daemon(3) ``<N>`` prefixes) of the logging levels
_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
             logging.DEBUG: 7}  # fmt: skip


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a logging level (custom levels: the next standard one up)."""
    for level in sorted(_PRIORITY):
        if levelno <= level:
            return _PRIORITY[level]
    return _PRIORITY[logging.CRITICAL]


def stderr_is_journal(stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """True when ``stream`` is the journal's stream socket: systemd sets ``JOURNAL_STREAM``
    to its ``device:inode`` (systemd.exec(5)); a redirected stderr no longer matches."""
    expected = environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, ensure_ascii=False)


class JournalFormatter(logging.Formatter):
    """Every line (a traceback's too: the journal stores each line as an entry) prefixed with
    ``<N>``, the record's priority, which journald strips and stores; no time stamp, the
    journal has its own."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in self.inner.format(record).splitlines())


def setup_logging(level: str = "INFO", fmt: str = "text", libraries: str = "WARNING",
                  stream: TextIO | None = None) -> None:
    """Log to ``stream`` (stderr): the project's loggers at ``level``, all others at
    ``libraries``; ``fmt`` text or json; journald priorities when stderr is the journal."""
    stream = stream if stream is not None else sys.stderr
    journal = stderr_is_journal(stream)
    formatter: logging.Formatter
    if fmt == "json":
        formatter = JsonFormatter()
    elif journal:
        formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JournalFormatter(formatter) if journal else formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(libraries)  # every logger not set below inherits this
    for package in OWN_PACKAGES:
        logging.getLogger(package).setLevel(level)
