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


#: glibc's ``mallopt`` parameter of the size from which a block is mapped on its own
_M_MMAP_THRESHOLD = -3
#: blocks this large or larger are mapped on their own and unmapped when freed
MMAP_THRESHOLD = 128 * 1024
#: glibc's ``mallopt`` parameter of the most heaps (arenas) its threads share
_M_ARENA_MAX = -8
#: the loop's thread and the worker threads share at most this many heaps
ARENA_MAX = 2


@functools.cache
def _mallopt() -> Callable[[int, int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        mallopt: Callable[[int, int], int] = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return None
    return mallopt


def map_large_blocks_apart() -> bool:
    """Blocks of :data:`MMAP_THRESHOLD` or more get a mapping of their own, whatever was
    freed before (glibc raises that threshold up to 32 MB each time such a block is freed,
    after which large blocks come from the heap and stay in the RSS when freed). What the
    gateway makes again and again is that large: data messages (~75-150 KB each, ~100 a
    second at 200,000 values/s, written by orjson into a growing buffer), the birth (34 MB
    at 200,000 tags), ``/metrics`` (5 MB at 2,000 devices), the last two in worker
    threads, whose heaps ``malloc_trim`` gives back less of. In-process: 3,000 data
    messages of 2,000 samples, the last 300 kept, grew the RSS by 61 MiB without this, by
    28 (the messages kept) with it; a birth of 200,000 tags made in a worker thread left
    16 MiB behind after a trim, 1 with it. And at most :data:`ARENA_MAX` heaps: each
    thread that allocates (the birth's and ``/metrics``' workers, the spool's, the MQTT
    client's) would otherwise get a heap of its own (up to 16 on 2 cores), holding what it
    freed. Call before any thread starts. False where the C library has no ``mallopt``
    (not glibc)."""
    mallopt = _mallopt()
    if mallopt is None:
        return False
    apart = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    return bool(mallopt(_M_ARENA_MAX, ARENA_MAX)) and apart


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
