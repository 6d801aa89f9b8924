"""Exponential backoff with jitter: the one reconnect/restart mechanism of the gateway.

Used by device runners (reconnect, crash restart) and the MQTT connection, so
that a hundred gateways losing the same broker do not come back in lock step.
"""

from __future__ import annotations

import asyncio
import random


class Backoff:
    """Delays ``initial * factor**n`` capped at ``maximum``, each shortened by up to ``jitter``.

    ``jitter=0.5`` draws each delay uniformly from [50 %, 100 %] of the nominal one.
    """

    def __init__(
        self,
        initial: float = 0.5,
        maximum: float = 30.0,
        factor: float = 2.0,
        jitter: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        if initial <= 0 or maximum < initial or factor < 1 or not 0 <= jitter <= 1:
            raise ValueError("backoff needs 0 < initial <= maximum, factor >= 1, 0 <= jitter <= 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self.attempts = 0
        # the random module's generator unless one is given: a Random of its own holds 2.9
        # KB of state seeded from the OS, and a gateway makes 3 a device (2,000 devices: 17
        # MB); jitter needs no stream of its own
        self._random = random.random if rng is None else rng.random

    def nominal(self) -> float:
        return min(self.maximum, self.initial * self.factor**self.attempts)

    def next_delay(self) -> float:
        """The delay before the next attempt; each call counts one failed attempt."""
        nominal = self.nominal()
        self.attempts = min(self.attempts + 1, 64)
        return nominal * (1.0 - self.jitter * self._random())

    def reset(self) -> None:
        """Call after a success: the next failure starts again from ``initial``."""
        self.attempts = 0

    async def sleep(self) -> float:
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay
