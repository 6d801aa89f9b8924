"""Sessions: a login gets a random bearer token that ends after ``ttl``, at logout, or
when its user is removed or gets a new password or role.

Only a SHA-256 digest of each token is kept (a memory dump holds no usable token), in
memory: a restart of the gateway ends every session. Expired sessions are swept on each
new login; at most ``max_sessions`` are open at once (the oldest ends first).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from gateway.access.roles import Role

#: a session token: this prefix and 43 URL-safe characters (256 random bits)
TOKEN_PREFIX = "chxs_"


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    role: Role
    #: wall-clock ms, to compare with the user's ``changed_ms``
    started_ms: int
    #: monotonic seconds
    expires_at: float
    id: str  # a short, non-secret name of the session for the audit log


class Sessions:
    def __init__(self, ttl_s: float, max_sessions: int = 1000,
                 clock: Callable[[], float] = time.monotonic,
                 wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self._clock = clock
        self._wall_ms = wall_ms
        self._by_digest: OrderedDict[bytes, Session] = OrderedDict()

    def open(self, user: str, role: Role) -> tuple[str, Session]:
        """A new session: its token (given out once) and the session."""
        self._sweep()
        while len(self._by_digest) >= self.max_sessions:
            self._by_digest.popitem(last=False)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        digest = _digest(token.encode())
        session = Session(user, role, self._wall_ms(), self._clock() + self.ttl_s,
                          digest[:6].hex())
        self._by_digest[digest] = session
        return token, session

    def find(self, token: bytes) -> Session | None:
        """The live session of ``token``; None when there is none or it expired."""
        digest = _digest(token)
        session = self._by_digest.get(digest)
        if session is None:
            return None
        if self._clock() >= session.expires_at:
            del self._by_digest[digest]
            return None
        return session

    def expires_in(self, session: Session) -> float:
        return max(0.0, session.expires_at - self._clock())

    def close(self, token: bytes) -> Session | None:
        return self._by_digest.pop(_digest(token), None)

    def end_user(self, user: str) -> int:
        """End every session of ``user``; return how many."""
        ended = [d for d, s in self._by_digest.items() if s.user == user]
        for digest in ended:
            del self._by_digest[digest]
        return len(ended)

    def end(self, session: Session) -> None:
        for digest, s in list(self._by_digest.items()):
            if s is session:
                del self._by_digest[digest]

    def __len__(self) -> int:
        return len(self._by_digest)

    def _sweep(self) -> None:
        now = self._clock()
        for digest in [d for d, s in self._by_digest.items() if now >= s.expires_at]:
            del self._by_digest[digest]


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()
