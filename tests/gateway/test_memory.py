"""Freed heap goes back to the system after a config load (issue 21): glibc keeps what a
parse freed between the objects that survive it, and the RSS stayed up by that much."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from gateway.runtime.memory import give_back_freed_memory


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_memory_freed_between_survivors_goes_back_to_the_system() -> None:
    # 64 MiB of 4 KiB blocks (malloc's heap, not mmap), one in 64 kept: what a parse leaves
    blocks = [bytearray(4096) for _ in range(16384)]
    survivors = blocks[::64]
    del blocks
    before = _rss_kib()
    assert give_back_freed_memory()
    assert before - _rss_kib() > 32 * 1024  # most of the 63 MiB freed around the survivors
    assert len(survivors) == 256
