"""The last applied version of each bundle, in the state directory: what replays are checked by.

``{state_dir}/bundles/applied.json`` maps ``kind/name`` (``firmware/name@device`` for an
image, applied node by node) to the version applied last, with its bundle's SHA-256, the
signing key and the time::

    {"format": 1, "applied": {"model/quality": {"version": "1.3.0", "sha256": "...",
                                                "key": "brain-release", "ts": 1760000000000}}}

It is read on every check and rewritten whole on every change (a temporary file,
fsync, rename, fsync of the folder), under an exclusive lock on a file beside it, so a
gateway and ``chenxing-gateway firmware upload`` on the same box see each other's
updates and a crash leaves the old or the new file, never half of one. A version never
goes backwards. A file that cannot be read is not taken as empty (that would accept
every replay): every bundle is refused (``state_unreadable``) until it is repaired.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway.bundles.manifest import Version
from gateway.durable import replace_durably
from gateway.errors import BundleRefused
from gateway.types import now_ns

FILE_NAME = "applied.json"
_FORMAT = 1


def version_key(kind: str, name: str, scope: str = "") -> str:
    """The key of a bundle's history: ``kind/name``, ``kind/name@scope`` for a device's."""
    return f"{kind}/{name}" + (f"@{scope}" if scope else "")


class AppliedVersions:
    """The applied-versions file of one state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "bundles" / FILE_NAME

    def last(self, key: str) -> Version | None:
        """The version applied last under ``key``, or None when none was."""
        entry = self._read().get(key)
        return None if entry is None else Version.parse(entry["version"])

    def entries(self) -> dict[str, dict[str, Any]]:
        """Every key's last entry (for ``bundle verify`` and the docs' examples)."""
        return self._read()

    def record(self, history: str, version: Version, **info: Any) -> None:
        """Remember ``version`` as applied under ``history`` (a :func:`version_key`); an
        older one leaves a newer in place: versions never go backwards.
        Raises :class:`OSError` when it cannot be written."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            applied = self._read()
            current = applied.get(history)
            if current is not None and Version.parse(current["version"]) >= version:
                return
            applied[history] = {"version": version.text, **info, "ts": now_ns() // 1_000_000}
            self._write({"format": _FORMAT, "applied": applied})

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise self._unreadable(exc.strerror or str(exc)) from None
        try:
            body = json.loads(text)
            if not isinstance(body, dict) or body.get("format") != _FORMAT:
                raise ValueError(f"format {body.get('format') if isinstance(body, dict) else None}"
                                 f", expected {_FORMAT}")
            applied = body["applied"]
            if not isinstance(applied, dict):
                raise ValueError("'applied' is not an object")
            for key, entry in applied.items():
                if not isinstance(entry, dict):
                    raise ValueError(f"{key!r} is not an object")
                Version.parse(entry.get("version"))
        except (ValueError, KeyError, UnicodeDecodeError, RecursionError) as exc:
            raise self._unreadable(str(exc)) from None
        return applied

    def _unreadable(self, why: str) -> BundleRefused:
        return BundleRefused("state_unreadable",
                             f"cannot read the applied bundle versions in {self.path}: {why}; "
                             "no bundle is accepted until it is repaired or restored")

    def _write(self, body: dict[str, Any]) -> None:
        replace_durably(self.path, json.dumps(body, indent=1, sort_keys=True).encode() + b"\n")
