from __future__ import annotations

import random

import pytest

from gateway.backoff import Backoff


def test_delays_grow_to_the_cap_with_jitter_inside_bounds() -> None:
    b = Backoff(initial=1, maximum=8, factor=2, jitter=0.5, rng=random.Random(1))
    nominal = [1, 2, 4, 8, 8, 8]
    for n in nominal:
        d = b.next_delay()
        assert n * 0.5 <= d <= n


def test_reset_starts_over_and_jitter_spreads_a_fleet() -> None:
    b = Backoff(initial=1, maximum=30, rng=random.Random(2))
    for _ in range(5):
        b.next_delay()
    b.reset()
    assert b.next_delay() <= 1
    fleet = {
        round(Backoff(initial=4, rng=random.Random(seed)).next_delay(), 3) for seed in range(50)
    }
    assert len(fleet) > 40  # gateways do not reconnect in lock step


def test_bad_parameters_rejected() -> None:
    with pytest.raises(ValueError):
        Backoff(initial=0)
    with pytest.raises(ValueError):
        Backoff(initial=5, maximum=1)
