"""Failed logins counted per user name and per client address within a sliding window.

Past ``max_failures`` for a name (or ``4 x max_failures`` for an address, where several
people may share a proxy), every login attempt for it is refused, without its password
being checked, until the oldest failure leaves the window: guessing gets
``max_failures`` tries per window however fast it knocks. A successful login clears its
name's count (not its address's). At most ``max_keys`` names and addresses are tracked;
past that the ones whose last failure is oldest are forgotten first.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

ADDRESS_FACTOR = 4


class LoginLimiter:
    def __init__(self, max_failures: int, window_s: float, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_keys = max_keys
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        #: per key, the oldest failure of the lock-out whose first refusal was reported
        self._announced: dict[str, float] = {}
        #: logins refused because of the limit (a counter for metrics and tests)
        self.refused = 0

    def retry_after(self, user: str, address: str) -> tuple[float, bool] | None:
        """None when a login for ``user`` from ``address`` may be tried now; else the
        seconds to wait and whether this is the first refusal of this lock-out (audit
        that one; count the others)."""
        refusals = [r for r in (self._wait(f"user:{user}", self.max_failures),
                                self._wait(f"addr:{address}", self.max_failures * ADDRESS_FACTOR))
                    if r is not None]
        if not refusals:
            return None
        self.refused += 1
        return max(w for w, _ in refusals), any(first for _, first in refusals)

    def failed(self, user: str, address: str) -> None:
        now = self._clock()
        for key in (f"user:{user}", f"addr:{address}"):
            times = self._failures.pop(key, None) or deque()
            times.append(now)
            limit = self.max_failures * (ADDRESS_FACTOR if key.startswith("addr:") else 1)
            while len(times) > limit:
                times.popleft()
            self._failures[key] = times  # most recent last
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def succeeded(self, user: str) -> None:
        self._failures.pop(f"user:{user}", None)

    def _wait(self, key: str, limit: int) -> tuple[float, bool] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        now = self._clock()
        while times and now - times[0] >= self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        if len(times) < limit:
            return None
        first = self._announced.get(key) != times[0]
        self._announced[key] = times[0]
        if len(self._announced) > self.max_keys:
            self._announced.pop(next(iter(self._announced)))
        return self.window_s - (now - times[0]), first
