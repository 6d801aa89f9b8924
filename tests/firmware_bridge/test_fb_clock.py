"""Ticks to wall clock: the fastest frame sets the offset; drift is followed; resets;
every u64 tick maps exactly."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.clock import MAX_LEAP_NS, TickClock

S = 1_000_000_000
T0 = 1_750_000_000 * S  # the node's tick 0 on the gateway's clock
U64 = 2**64 - 1


def at(clock: TickClock, tick: int) -> int:
    ts = clock.to_ns(tick, np.zeros(1, np.int64))
    assert ts is not None
    return int(ts[0])


def test_smallest_delay_wins_and_time_never_after_arrival() -> None:
    clock = TickClock(tick_hz=1000)
    delays_ms = [40, 5, 25, 2, 60, 10]
    for i, delay in enumerate(delays_ms):
        tick = (i + 1) * 100
        arrival = T0 + tick * 1_000_000 + delay * 1_000_000
        clock.observe(tick, arrival)
        ts = at(clock, tick)
        assert ts <= arrival
    assert clock.boot_ns == T0 + 2_000_000  # the 2 ms frame
    assert at(clock, 1500) == T0 + 2_000_000 + 1500 * 1_000_000


def test_window_follows_drift_and_reset_on_backwards_tick() -> None:
    clock = TickClock(tick_hz=100, window=4)
    clock.observe(100, T0 + 1 * S)  # one fast frame long ago...
    for i in range(2, 10):  # ...then the node's clock runs 1 % slow: the offset creeps up
        clock.observe(i * 100, T0 + i * S + i * S // 100 + 10_000_000)
    assert clock.boot_ns is not None and clock.boot_ns > T0 + 1 * S // 100
    clock.observe(5, T0 + 20 * S)  # the tick went backwards: the node restarted
    assert clock.boot_ns == T0 + 20 * S - 50_000_000


@settings(derandomize=True, max_examples=300, deadline=None)
@given(
    st.integers(0, U64),
    st.one_of(st.sampled_from([1, 1000, 32_768, 2**32 - 1]), st.integers(1, 2**32 - 1)),
    st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=20),
    st.integers(0, 2**32 - 1),
)
def test_every_u64_tick_maps_exactly_and_never_after_arrival(
    base: int, tick_hz: int, offsets: list[int], earlier: int
) -> None:
    """Any u64 base (plus a u16 offset) at any u32 tick rate: exact integer times, the
    newest at its frame's arrival, none after it; never an exception."""
    clock = TickClock(tick_hz)
    clock.observe(earlier, T0 - 5 * S)  # an earlier frame: the tick went forward or back
    arrival = T0
    newest = base + max(offsets)
    clock.observe(newest, arrival)
    ts = clock.to_ns(base, np.asarray(offsets, np.int64))
    assert ts is not None and ts.dtype == np.int64
    boot = clock.boot_ns
    assert boot is not None
    expected = [boot + (base + o) * S // tick_hz for o in offsets]  # Python ints, exact
    assert ts.tolist() == expected
    assert max(expected) <= arrival
    assert min(expected) >= T0 - 5 * S - 0xFFFF * S // tick_hz - 1


def test_a_leap_to_2_63_restarts_the_estimate_and_back_again() -> None:
    clock = TickClock(tick_hz=1000)
    assert not clock.observe(1000, T0 + 1 * S + 3_000_000)
    assert not clock.observe(2000, T0 + 2 * S + 1_000_000)
    assert clock.boot_ns == T0 + 1_000_000
    assert clock.observe(2**63, T0 + 3 * S)  # the counter jumped: counted, restarted there
    assert at(clock, 2**63) == T0 + 3 * S
    assert at(clock, 2**63 - 65_535) == T0 + 3 * S - 65_535_000_000
    assert not clock.observe(3000, T0 + 3 * S + 5_000_000)  # back: restarted (not a leap)
    assert clock.boot_ns == T0 + 5_000_000


def test_drift_and_a_late_frame_are_not_leaps() -> None:
    clock = TickClock(tick_hz=1000)
    for i in range(1, 200):  # a crystal 1 % fast, a frame every 10 s: 0.1 s gained each
        tick = i * 10_100
        assert not clock.observe(tick, T0 + i * 10 * S)
    assert not clock.observe(200 * 10_100, T0 + 2000 * S + 30 * S)  # stuck on the line 30 s
    # ...but a tick that gained more than MAX_LEAP_NS at once is one
    assert clock.observe(201 * 10_100 + MAX_LEAP_NS // 1_000_000 + 1_000, T0 + 2010 * S)


def test_times_that_int64_cannot_hold_are_none() -> None:
    clock = TickClock(tick_hz=1000)  # no frame observed yet: tick 0 is the epoch
    assert clock.to_ns(2**63, np.zeros(1, np.int64)) is None
    assert clock.to_ns(U64, np.array([0, 0xFFFF], np.int64)) is None
    assert at(clock, 1000) == 1 * S
