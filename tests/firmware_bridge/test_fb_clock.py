"""Ticks to wall clock: the fastest frame sets the offset; drift is followed; resets."""

from __future__ import annotations

import numpy as np

from firmware_bridge.clock import TickClock

S = 1_000_000_000
T0 = 1_750_000_000 * S  # the node's tick 0 on the gateway's clock


def test_smallest_delay_wins_and_time_never_after_arrival() -> None:
    clock = TickClock(tick_hz=1000)
    delays_ms = [40, 5, 25, 2, 60, 10]
    for i, delay in enumerate(delays_ms):
        tick = (i + 1) * 100
        arrival = T0 + tick * 1_000_000 + delay * 1_000_000
        clock.observe(tick, arrival)
        ts = clock.to_ns(np.array([tick], np.int64))[0]
        assert ts <= arrival
    assert clock.boot_ns == T0 + 2_000_000  # the 2 ms frame
    assert clock.to_ns(np.array([1500], np.int64))[0] == T0 + 2_000_000 + 1500 * 1_000_000


def test_window_follows_drift_and_reset_on_backwards_tick() -> None:
    clock = TickClock(tick_hz=100, window=4)
    clock.observe(100, T0 + 1 * S)  # one fast frame long ago...
    for i in range(2, 10):  # ...then the node's clock runs 1 % slow: the offset creeps up
        clock.observe(i * 100, T0 + i * S + i * S // 100 + 10_000_000)
    assert clock.boot_ns is not None and clock.boot_ns > T0 + 1 * S // 100
    clock.observe(5, T0 + 20 * S)  # the tick went backwards: the node restarted
    assert clock.boot_ns == T0 + 20 * S - 50_000_000
