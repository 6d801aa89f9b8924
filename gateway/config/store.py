"""The versioned config store: every config the gateway ran, in ``{state_dir}/config``.

Each version is three files under ``versions/``, named by its number (``000007``):
the text as applied (``.yaml``), its record (``.json``: version, time, author, source,
parent, SHA-256, what changed, status) and the unified diff to its parent (``.diff``).
Versions only grow: a rollback is a new version whose text is an older one's
(``restores``). The newest version is the one running. Files are written whole to a
temporary name and renamed, so a crash leaves the old file or the new one.

The running gateway holds ``gateway.lock`` (an exclusive ``flock``, with its process
id in it), so a command-line rollback knows there is a gateway to ask. The command
line leaves ``next-author.json`` (author and the SHA-256 of the text it wrote to the
config file) for the gateway to record who asked, when it applies that file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import difflib
import fcntl
import hashlib
import json
import os
import re
from pathlib import Path
from typing import IO, Any, Literal

from gateway.durable import replace_durably
from gateway.errors import ConfigStoreError, ConfigStoreLocked, ConfigVersionUnknown

__all__ = ["ConfigStore", "ConfigVersion", "Status", "text_sha256", "unified_diff",
           "write_config_file"]

#: ``applying``: in service, watched; ``applied``: its devices came up (or nothing to watch);
#: ``rolled_back``: it broke devices or the broker session and a newer version restores
#: its parent; ``recorded``: found in the config file at start-up (edited while stopped)
Status = Literal["applying", "applied", "rolled_back", "recorded"]

_WIDTH = 6


@dataclasses.dataclass(frozen=True, slots=True)
class ConfigVersion:
    """The record of one version (``versions/NNNNNN.json``)."""

    version: int
    #: UTC, ISO 8601 with milliseconds
    time: str
    #: who asked: a user name, ``brain``, ``file`` (an edit of the config file), ``gateway``
    author: str
    #: how it came: ``file`` (SIGHUP or start-up), ``api``, ``brain``, ``rollback``, ``cli``
    source: str
    parent: int | None
    sha256: str
    #: in words: devices added, removed, changed
    summary: str
    status: Status
    #: why it was rolled back
    reason: str | None = None
    #: a rollback: the version whose text it brings back
    restores: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def unified_diff(old: str, new: str, old_name: str, new_name: str, context: int = 3) -> str:
    """A unified diff of two texts. The lines both share at the start and the end are
    skipped before difflib compares what is left (with ``context`` lines of them kept), so
    an edit of one line in a file of 100,000 costs a comparison of a few lines."""
    if not old or not new:  # the first version (all added): difflib would index every line
        return _one_sided(old, new, old_name, new_name)
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    head = 0
    limit = min(len(a), len(b))
    while head < limit and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < limit - head and a[len(a) - 1 - tail] == b[len(b) - 1 - tail]:
        tail += 1
    start, cut = max(0, head - context), max(0, tail - context)
    a_mid, b_mid = a[start:len(a) - cut], b[start:len(b) - cut]
    lines = []
    for line in difflib.unified_diff(a_mid, b_mid, old_name, new_name, n=context):
        if line.startswith("@@") and start:
            line = _shift_hunk(line, start)
        lines.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(lines)


def _one_sided(old: str, new: str, old_name: str, new_name: str) -> str:
    """The unified diff of texts one of which is empty, as difflib writes it."""
    text = new or old
    if not text:
        return ""
    sign = "+" if new else "-"
    if _OTHER_BREAKS.search(text) is None:  # lines end at "\n" only: no list of lines
        count = text.count("\n") + (not text.endswith("\n"))
        body = sign + text.replace("\n", "\n" + sign)
        body = body[:-1] if text.endswith("\n") else body + "\n\\ No newline at end of file\n"
    else:
        lines = text.splitlines(keepends=True)
        count = len(lines)
        body = "".join(f"{sign}{line}" if line.endswith("\n")
                       else f"{sign}{line}\n\\ No newline at end of file\n" for line in lines)
    span = "1" if count == 1 else f"1,{count}"
    hunk = f"@@ -0,0 +{span} @@\n" if new else f"@@ -{span} +0,0 @@\n"
    return f"--- {old_name}\n+++ {new_name}\n{hunk}{body}"


#: what str.splitlines ends a line at, besides "\n"
_OTHER_BREAKS = re.compile("[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def _shift_hunk(header: str, offset: int) -> str:
    """``@@ -a,b +c,d @@`` with both starts moved down by ``offset`` lines."""
    parts = header.split(" ")
    for i in (1, 2):
        sign, rest = parts[i][0], parts[i][1:]
        first, comma, count = rest.partition(",")
        parts[i] = f"{sign}{int(first) + offset}{comma}{count}"
    return " ".join(parts)


def write_config_file(path: Path, text: str) -> None:
    """Replace the config file a person edits with ``text``, whole (a reader sees the old
    file or the new one), keeping its permissions (it may hold secrets) and owner."""
    try:
        before: os.stat_result | None = path.stat()
    except FileNotFoundError:
        before = None
    mode = 0o640 if before is None else before.st_mode & 0o7777
    replace_durably(path, text.encode("utf-8"), mode, before)


def _write_atomic(path: Path, data: str) -> None:
    replace_durably(path, data.encode("utf-8"))


class ConfigStore:
    """The versions of one gateway's config (see the module docstring)."""

    def __init__(self, folder: Path, keep: int = 200) -> None:
        """``keep``: versions kept; older ones are deleted as new ones come."""
        self.folder = folder
        self.keep = keep
        self._versions = folder / "versions"
        self._lock: IO[str] | None = None
        #: the records read so far (they change only through this object or a rollback)
        self._cache: dict[int, ConfigVersion] = {}

    # --- reading ----------------------------------------------------------------------------
    def numbers(self) -> list[int]:
        """Version numbers kept, oldest first."""
        if not self._versions.is_dir():
            return []
        out = []
        for path in self._versions.glob("*.json"):
            with contextlib.suppress(ValueError):
                out.append(int(path.stem))
        return sorted(out)

    def get(self, version: int) -> ConfigVersion:
        cached = self._cache.get(version)
        if cached is not None:
            return cached
        path = self._path(version, "json")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            record = ConfigVersion(**raw)
        except FileNotFoundError:
            raise ConfigVersionUnknown(self._unknown(version)) from None
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigStoreError(f"{path}: cannot read the version record: {exc}") from exc
        self._cache[version] = record
        return record

    def history(self, last: int | None = None) -> list[ConfigVersion]:
        """The records kept, oldest first (the ``last`` ones only, when given)."""
        numbers = self.numbers()
        if last is not None:
            numbers = numbers[-last:] if last > 0 else []
        return [self.get(n) for n in numbers]

    def current(self) -> ConfigVersion | None:
        """The newest version: the one running (or that ran last)."""
        numbers = self.numbers()
        return self.get(numbers[-1]) if numbers else None

    def text(self, version: int) -> str:
        try:
            return self._path(version, "yaml").read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigVersionUnknown(self._unknown(version)) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigStoreError(f"cannot read version {version}: {exc}") from exc

    def diff(self, version: int) -> str:
        """The diff of ``version`` to its parent, as stored when it was applied."""
        self.get(version)
        try:
            return self._path(version, "diff").read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigStoreError(f"cannot read the diff of version {version}: {exc}") from exc

    def diff_between(self, old: int, new: int) -> str:
        return unified_diff(self.text(old), self.text(new), f"v{old}", f"v{new}")

    def _unknown(self, version: int) -> str:
        numbers = self.numbers()
        kept = f"versions {numbers[0]}..{numbers[-1]} are kept" if numbers else "it is empty"
        return f"config version {version} is not in {self.folder} ({kept})"

    def _path(self, version: int, ext: str) -> Path:
        return self._versions / f"{version:0{_WIDTH}d}.{ext}"

    # --- writing ----------------------------------------------------------------------------
    def commit(self, text: str, author: str, source: str, summary: str,
               status: Status = "applying", restores: int | None = None,
               parent_text: str | None = None) -> ConfigVersion:
        """Keep ``text`` as the next version, child of the current one. ``parent_text``
        spares reading the parent back for the diff."""
        parent = self.current()
        number = parent.version + 1 if parent is not None else 1
        record = ConfigVersion(
            version=number, time=_now(), author=author, source=source,
            parent=parent.version if parent is not None else None, sha256=text_sha256(text),
            summary=summary, status=status, restores=restores)
        if parent is None:
            old, old_name = "", "empty"
        else:
            old = parent_text if parent_text is not None else self.text(parent.version)
            old_name = f"v{parent.version}"
        diff = unified_diff(old, text, old_name, f"v{number}")
        try:
            self._versions.mkdir(parents=True, exist_ok=True)
            _write_atomic(self._path(number, "yaml"), text)
            _write_atomic(self._path(number, "diff"), diff)
            self._write_record(record)  # last: a version exists once its record does
        except OSError as exc:
            raise ConfigStoreError(f"cannot keep config version {number} in "
                                   f"{self.folder}: {exc}") from exc
        self._prune()
        return record

    def mark(self, version: int, status: Status, reason: str | None = None) -> ConfigVersion:
        """Set the status of a version (``applied`` after its watch, ``rolled_back``)."""
        record = dataclasses.replace(self.get(version), status=status, reason=reason)
        try:
            self._write_record(record)
        except OSError as exc:
            raise ConfigStoreError(f"cannot update config version {version}: {exc}") from exc
        return record

    def _write_record(self, record: ConfigVersion) -> None:
        _write_atomic(self._path(record.version, "json"),
                      json.dumps(record.as_dict(), indent=1) + "\n")
        self._cache[record.version] = record

    def _prune(self) -> None:
        numbers = self.numbers()
        for number in numbers[: max(0, len(numbers) - self.keep)]:
            self._cache.pop(number, None)
            for ext in ("json", "yaml", "diff"):  # the record first: then it is gone
                with contextlib.suppress(FileNotFoundError):
                    self._path(number, ext).unlink()

    # --- who runs it ------------------------------------------------------------------------
    def hold(self) -> None:
        """Take the store for this process (a running gateway); raises
        :class:`ConfigStoreLocked` when another gateway holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "gateway.lock"
        fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held while the gateway runs
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip()
            fh.close()
            raise ConfigStoreLocked(f"{path} is held by another gateway ({holder})",
                                    _pid_of(holder)) from None
        fh.truncate(0)
        fh.write(f"pid {os.getpid()}\n")
        fh.flush()
        self._lock = fh

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def holder(self) -> int | None:
        """The process id of the gateway running with this store, or None."""
        path = self.folder / "gateway.lock"
        try:
            fh = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError:
            return None
        with fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _pid_of(fh.read().strip())
            return None  # nobody holds it: no gateway runs

    # --- the outcome of the last change ------------------------------------------------------
    def record_result(self, result: dict[str, Any]) -> None:
        """The outcome of the last change asked for (applied, refused, rolled back), for
        the command line that asked through the config file and SIGHUP."""
        with contextlib.suppress(OSError):
            _write_atomic(self.folder / "last-change.json", json.dumps(result, indent=1) + "\n")

    def last_result(self) -> tuple[int, dict[str, Any]] | None:
        """(when it was written, in ns; the outcome) of the last change, if any."""
        path = self.folder / "last-change.json"
        try:
            stamp = path.stat().st_mtime_ns
            body = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return (stamp, body) if isinstance(body, dict) else None

    # --- who asked for a file edit ----------------------------------------------------------
    def leave_author(self, author: str, source: str, text: str) -> None:
        """The command line wrote ``text`` to the config file for ``author``; the gateway
        records that author when it applies that very text."""
        self.folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.folder / "next-author.json", json.dumps(
            {"author": author, "source": source, "sha256": text_sha256(text)}))

    def take_author(self, text: str) -> tuple[str, str] | None:
        """(author, source) left for ``text`` by :meth:`leave_author`, once."""
        path = self.folder / "next-author.json"
        try:
            note = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        with contextlib.suppress(OSError):
            path.unlink()
        if not isinstance(note, dict) or note.get("sha256") != text_sha256(text):
            return None
        return str(note.get("author", "file")), str(note.get("source", "file"))


def _pid_of(holder: str) -> int | None:
    try:
        return int(holder.split()[-1])
    except (ValueError, IndexError):
        return None
