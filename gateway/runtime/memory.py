"""Give freed heap back to the system after the big one-off allocations of a config load.

Reading and validating a config of 100,000 tags, the first version's diff in the config
store and the first birth allocate and free hundreds of MB; glibc keeps what was freed
in its heap, so it stayed in the gateway's RSS (issue 21: ~15 MiB at 100,000 tags came
back with ``malloc_trim``). Called after start-up and after each config change, never on
the hot path (a trim walks the heap: milliseconds).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None (another C library, or none found)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # musl and others have no malloc_trim
        return None
    return trim


def give_back_freed_memory() -> bool:
    """Return the C heap's free pages to the system; False where the C library cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
