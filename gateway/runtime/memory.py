"""Memory of a large config: freed heap given back to the system, repeated keys shared.

Reading and validating a config of 100,000 tags and the first birth (17 MB of JSON)
allocate and free hundreds of MB; glibc keeps what was freed in its heap, so it stayed
in the gateway's RSS. :func:`give_back_freed_memory` runs after each start-up freeze and
after each config change, never on the hot path (a trim walks the heap: milliseconds);
in bench/scale.py at 100,000 tags the RSS fell from 317 MiB at the first data message to
286 MiB once the devices had connected (issue 21). Memory that Python's own allocator
keeps (arenas pinned by a few objects that survive) does not come back this way.
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


class SharedKeys:
    """One string for each mapping key of the config data the gateway keeps.

    The config as read (:class:`~gateway.config.loader.ConfigDocument`'s ``data``) is kept
    while running, so that a live change of one device is read again in part; the YAML
    reader gives every key of every tag its own string (``name``, ``type``, ``address``
    ... 4-8 strings of ~55 bytes a tag: ~21 MiB at 100,000 tags). Each mapping is rebuilt
    with the first string seen for each key, in place (the data's identity and order stay);
    a mapping whose keys are shared already is left as it is, so data shared with a
    document another thread may be reading is not touched."""

    def __init__(self) -> None:
        self._keys: dict[str, str] = {}

    def share(self, data: object) -> None:
        keys = self._keys
        todo = [data]
        push, pop = todo.append, todo.pop
        while todo:
            item = pop()
            if type(item) is list:
                for value in item:
                    if type(value) is dict or type(value) is list:
                        push(value)
                continue
            if type(item) is not dict:
                continue
            shared = True
            for key, value in item.items():
                if type(value) is dict or type(value) is list:
                    push(value)
                if shared and type(key) is str and keys.setdefault(key, key) is not key:
                    shared = False
            if not shared:
                rebuilt = {keys.setdefault(k, k) if type(k) is str else k: v
                           for k, v in item.items()}
                item.clear()
                item.update(rebuilt)
