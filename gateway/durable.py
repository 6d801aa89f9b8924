"""Replacing a small state file whole, durably: the config store's records, the applied
bundle versions, the user store, the JSON sequence and Sparkplug bdSeq reservations.

A reader, and the file after a power cut, sees the old content or the new one, never a
part: the bytes go to a temporary file in the same folder, which is synced, renamed over
the file, and the folder synced (so the rename itself survives the cut). Five modules
did this by hand, three of them without the folder sync.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["fsync_folder", "replace_durably"]


def replace_durably(path: Path, data: bytes, mode: int = 0o640,
                    owner: os.stat_result | None = None) -> None:
    """Make ``data`` the whole content of ``path``, with permission bits ``mode`` (and,
    for root, the uid and gid of ``owner``: a file root's CLI writes for the gateway's
    account). Raises OSError with nothing changed; the temporary file is removed."""
    folder = path.parent
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}-", suffix=".tmp")
    try:
        try:
            os.fchmod(fd, mode)
            if owner is not None and os.geteuid() == 0:
                os.fchown(fd, owner.st_uid, owner.st_gid)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_folder(folder)


def fsync_folder(folder: Path) -> None:
    """Sync a folder's entries (a rename or a new file in it)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
