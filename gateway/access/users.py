"""The user store: ``{state_dir}/users.json``, one file the CLI writes and the gateway reads.

Only Argon2id hashes are stored, never a password. The file is ``0600`` and owned like the
state dir it is in (a root shell's ``users add`` leaves it readable by the gateway's own
account); a file that others may read or write is refused, as ssh refuses a shared key.
Every change is made under an ``flock`` (``users.json.lock``: the CLI and the API may
change users at once), written to a temporary file, fsync'd and renamed over the old one:
a kill leaves the old file or the new one, never half of one.

The gateway re-reads the file when it changes (size, mtime or inode), so users added,
removed or given a new password by the CLI count at once, sessions included.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gateway.access.roles import Role
from gateway.durable import replace_durably
from gateway.errors import UnknownUser, UserRefused, UserStoreError

FORMAT_VERSION = 1
#: user names: lower-case letters, digits, '.', '_', '-'; a letter first; at most 32
USER_NAME = re.compile(r"[a-z][a-z0-9._-]{0,31}")
MAX_FILE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role
    password_hash: str
    created_ms: int
    #: when the password or the role last changed: sessions begun before it are over
    changed_ms: int

    def public(self) -> dict[str, Any]:
        """What the API and ``users list`` show (never the hash)."""
        return {"user": self.name, "role": self.role.label, "created_ms": self.created_ms,
                "changed_ms": self.changed_ms}


def check_user_name(name: str) -> str:
    if not USER_NAME.fullmatch(name):
        raise UserRefused(f"bad user name {name[:40]!r}: lower-case letters, digits, '.', '_' "
                          "and '-', a letter first, at most 32 characters")
    return name


class UserStore:
    """Reads and changes ``path``; thread-safe; safe beside other processes."""

    def __init__(self, path: Path, clock_ms: Callable[[], int] | None = None) -> None:
        from gateway.types import now_ns

        self.path = path
        self._clock_ms = clock_ms or (lambda: now_ns() // 1_000_000)
        self._lock = threading.Lock()
        self._cached: tuple[tuple[int, int, int, int], dict[str, User]] | None = None

    # -- reading ------------------------------------------------------------------------
    def users(self) -> dict[str, User]:
        """Every user, by name; re-read only when the file changed. No file: no users.
        Raise :class:`UserStoreError` when it cannot be read or is not safe."""
        with self._lock:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                self._cached = None
                return {}
            except OSError as exc:
                raise UserStoreError(f"cannot read the user store {self.path}: "
                                     f"{exc.strerror}") from exc
            signature = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode)
            if self._cached is not None and self._cached[0] == signature:
                return self._cached[1]
            users = self._read()
            self._cached = (signature, users)
            return users

    def get(self, name: str) -> User | None:
        return self.users().get(name)

    def _read(self) -> dict[str, User]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise UserStoreError(f"cannot read the user store {self.path}: "
                                 f"{exc.strerror}") from exc
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise UserStoreError(f"the user store {self.path} is not a regular file")
            if st.st_mode & 0o077:
                raise UserStoreError(
                    f"the user store {self.path} may be read or written by others (mode "
                    f"{stat.S_IMODE(st.st_mode):04o}): `chmod 600 {self.path}`, then check who "
                    "changed it")
            data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise UserStoreError(f"the user store {self.path} is larger than {MAX_FILE_BYTES} "
                                 "bytes")
        return _parse(data, self.path)

    # -- changing ---------------------------------------------------------------------------
    def add(self, name: str, role: Role, password_hash: str) -> User:
        check_user_name(name)
        with self._changing() as users:
            if name in users:
                raise UserRefused(f"user {name!r} exists (change it with passwd or role)")
            now = self._clock_ms()
            users[name] = User(name, role, password_hash, now, now)
            return users[name]

    def remove(self, name: str) -> User:
        with self._changing() as users:
            user = self._existing(users, name)
            if user.role is Role.ADMIN and len(users) > 1 and _admins(users) == 1:
                raise UserRefused(f"{name} is the last admin: make another user admin first")
            del users[name]
            return user

    def set_password(self, name: str, password_hash: str) -> User:
        with self._changing() as users:
            user = replace(self._existing(users, name), password_hash=password_hash,
                           changed_ms=self._clock_ms())
            users[name] = user
            return user

    def set_role(self, name: str, role: Role) -> User:
        with self._changing() as users:
            user = self._existing(users, name)
            if user.role is Role.ADMIN and role is not Role.ADMIN and _admins(users) == 1:
                raise UserRefused(f"{name} is the last admin: make another user admin first")
            user = replace(user, role=role, changed_ms=self._clock_ms())
            users[name] = user
            return user

    def rehash(self, name: str, old_hash: str, new_hash: str) -> None:
        """Store a stronger hash of the same password (the session is not ended)."""
        with self._changing() as users:
            user = users.get(name)
            if user is not None and user.password_hash == old_hash:
                users[name] = replace(user, password_hash=new_hash)

    @staticmethod
    def _existing(users: dict[str, User], name: str) -> User:
        user = users.get(name)
        if user is None:
            raise UnknownUser(f"no user {name[:40]!r}")
        return user

    @contextlib.contextmanager
    def _changing(self) -> Iterator[dict[str, User]]:
        """Under the file lock: the users as on disk now, written back when the block ends
        without an exception."""
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            lock_fd = os.open(self.path.with_name(self.path.name + ".lock"),
                              os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise UserStoreError(f"cannot change the user store {self.path}: "
                                 f"{exc.strerror}") from exc
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            with self._lock:
                users = dict(self._read())
            yield users
            self._write(users)
        finally:
            os.close(lock_fd)  # releases the flock
        with self._lock:
            self._cached = None

    def _write(self, users: dict[str, User]) -> None:
        body = {"version": FORMAT_VERSION, "users": {
            u.name: {"role": u.role.label, "hash": u.password_hash, "created_ms": u.created_ms,
                     "changed_ms": u.changed_ms} for u in sorted(users.values(),
                                                                key=lambda u: u.name)}}
        data = (json.dumps(body, indent=2) + "\n").encode()
        try:
            # root's CLI: the gateway's account keeps its file
            owner = os.stat(self.path if self.path.exists() else self.path.parent)
            replace_durably(self.path, data, 0o600, owner)
        except OSError as exc:
            raise UserStoreError(f"cannot write the user store {self.path}: "
                                 f"{exc.strerror}") from exc


def _admins(users: dict[str, User]) -> int:
    return sum(1 for u in users.values() if u.role is Role.ADMIN)


def _parse(data: bytes, path: Path) -> dict[str, User]:
    def bad(why: str) -> UserStoreError:
        return UserStoreError(f"the user store {path} is damaged: {why} (restore it from a "
                              "backup or remove it and add the users again)")

    try:
        body = json.loads(data)
    except ValueError as exc:
        raise bad(f"not JSON ({exc})") from None
    if not isinstance(body, dict) or body.get("version") != FORMAT_VERSION \
            or not isinstance(body.get("users"), dict):
        raise bad(f"not a version {FORMAT_VERSION} user store")
    users: dict[str, User] = {}
    for name, entry in body["users"].items():
        try:
            check_user_name(name)
            users[name] = User(name, Role.named(entry["role"]), str(entry["hash"]),
                               int(entry["created_ms"]), int(entry["changed_ms"]))
        except (UserRefused, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise bad(f"user {str(name)[:40]!r}: {exc}") from None
    return users
