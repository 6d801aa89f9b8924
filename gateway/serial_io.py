"""Reading a non-blocking serial port's file descriptor from an event-loop reader callback."""

from __future__ import annotations

import os
from collections.abc import Callable


def read_ready(fd: int, on_lost: Callable[[str], object], size: int = 65536) -> bytes | None:
    """The bytes waiting on ``fd``, or ``None`` when there are none.

    A read error or end of file (the port went away) calls ``on_lost(reason)`` and
    returns ``None``.
    """
    try:
        data = os.read(fd, size)
    except BlockingIOError:
        return None
    except OSError as exc:
        on_lost(f"read failed: {exc}")
        return None
    if not data:
        on_lost("the port was closed")
        return None
    return data
