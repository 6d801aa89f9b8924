"""Passwords: stored only as Argon2id hashes (argon2-cffi, RFC 9106's low-memory profile:
t=3, m=64 MiB, p=4), checked against a policy when set.

A hash takes about 0.1 s of CPU and 64 MiB: callers on the event loop run
:func:`verify_password` in a thread, a few at a time (gateway/http_access.py).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.errors import PasswordRejected

if TYPE_CHECKING:
    from argon2 import PasswordHasher


@functools.cache
def _hasher() -> PasswordHasher:
    """The hasher (stateless: its parameters only); argon2-cffi is imported with it, when a
    password is first set or checked, not by every gateway with a local API (0.4 MiB of
    RSS; issue 21)."""
    from argon2 import PasswordHasher

    return PasswordHasher()


#: a hash of nothing anyone types, verified for unknown users so that a wrong user name
#: costs the same time as a wrong password. Written out, not hashed at import: hashing
#: took 0.3 s and 64 MiB (the process's peak RSS) at every start of every command that
#: imports the local API (issue 21); a test checks it has today's parameters.
DUMMY_HASH = ("$argon2id$v=19$m=65536,t=3,p=4$v6mjStX6SGPW44D7cOOUnw"
              "$6htUIYQB9IV7o7QEa4N6UnjiEQ98FVxKiVtfLPGho+4")
MAX_PASSWORD_CHARS = 1024


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    """What a new password must be: long enough, not the user's name, not all one kind."""

    min_length: int = 12

    def check(self, user: str, password: str) -> None:
        """Raise :class:`PasswordRejected` saying what is wrong with ``password``."""
        if len(password) < self.min_length:
            raise PasswordRejected(f"a password needs at least {self.min_length} characters")
        if len(password) > MAX_PASSWORD_CHARS:
            raise PasswordRejected(f"a password has at most {MAX_PASSWORD_CHARS} characters")
        if user.lower() in password.lower():
            raise PasswordRejected("a password must not contain the user name")
        if len(set(password)) < 5:
            raise PasswordRejected("a password needs at least 5 different characters")
        if any(c in password for c in "\x00\r\n"):
            raise PasswordRejected("a password has no NUL or line breaks")


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """True when ``password`` matches; False for a mismatch or a damaged hash."""
    if len(password) > MAX_PASSWORD_CHARS:  # no policy lets one be set: not worth hashing
        return False
    from argon2.exceptions import InvalidHashError, VerificationError

    hasher = _hasher()
    try:
        return hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when ``stored_hash`` was made with other parameters than today's."""
    from argon2.exceptions import InvalidHashError

    hasher = _hasher()
    try:
        return hasher.check_needs_rehash(stored_hash)
    except (InvalidHashError, ValueError):
        return True
