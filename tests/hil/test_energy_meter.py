"""Process model and waveform mode of the simulated energy meter."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

import numpy as np
import pytest

from hil.process.energy_meter import (
    EnergyMeterModel,
    MachineState,
    MeterParams,
    MeterReading,
    WaveformMeter,
    WaveformParams,
    waveform_reading,
)

T0 = 1_700_000_000.0


def run(model: EnergyMeterModel, seconds: float, every: float) -> list[MeterReading]:
    return [model.state_at(T0 + t) for t in np.arange(0.0, seconds, every)]


def test_same_seed_same_trajectory_different_seed_differs() -> None:
    a = run(EnergyMeterModel(seed=7, t0=T0), 3600, 5.0)
    b = run(EnergyMeterModel(seed=7, t0=T0), 3600, 5.0)
    c = run(EnergyMeterModel(seed=8, t0=T0), 3600, 5.0)
    assert a == b
    assert [r.voltage_v for r in a] != [r.voltage_v for r in c]


def test_trajectory_does_not_depend_on_how_often_it_is_read() -> None:
    dense = EnergyMeterModel(seed=3, t0=T0)
    sparse = EnergyMeterModel(seed=3, t0=T0)
    for t in np.arange(0.0, 1500.0, 0.37):
        dense.state_at(T0 + t)
    for t in (1500.5, 2500.25):
        assert dense.state_at(T0 + t) == sparse.state_at(T0 + t)


def test_time_only_moves_forward() -> None:
    model = EnergyMeterModel(seed=1, t0=T0)
    first = model.state_at(T0 + 100.0)
    assert model.state_at(T0 + 100.0) is first
    assert model.state_at(T0 + 50.0) is first
    later = model.state_at(T0 + 101.0)
    assert later.timestamp == T0 + 101.0
    assert later.energy_import_kwh > first.energy_import_kwh
    assert model.last_reading is later


def test_t0_defaults_to_first_read() -> None:
    model = EnergyMeterModel(seed=1)
    r = model.state_at(5000.0)
    assert model.t0 == 5000.0
    assert r.model_time == 0.0
    assert model.state_at(5010.0).model_time == pytest.approx(10.0)


def test_time_scale_gives_same_values_as_slow_model() -> None:
    fast = EnergyMeterModel(seed=4, t0=T0, time_scale=60.0)
    slow = EnergyMeterModel(seed=4, t0=T0)
    assert fast.state_at(T0 + 10.0).model_time == 600.0
    f = fast.state_at(T0 + 30.0)
    s = slow.state_at(T0 + 1800.0)
    assert f.model_time == s.model_time == 1800.0
    assert f.timestamp == T0 + 30.0
    assert (f.voltage_v, f.active_power_kw, f.energy_import_kwh, f.machine_state) == (
        s.voltage_v,
        s.active_power_kw,
        s.energy_import_kwh,
        s.machine_state,
    )


@pytest.fixture(scope="module")
def six_hours() -> list[MeterReading]:
    return run(EnergyMeterModel(seed=11, t0=T0, time_scale=10.0), 6 * 360.0, 0.2)


def test_energy_is_monotonic_and_integrates_power(six_hours: list[MeterReading]) -> None:
    energy = np.array([r.energy_import_kwh for r in six_hours])
    assert np.all(np.diff(energy) >= 0.0)
    assert energy[-1] > energy[0]
    tau = np.array([r.model_time for r in six_hours])
    power = np.array([r.active_power_kw for r in six_hours])
    integral = float(np.trapezoid(power, tau)) / 3600.0
    assert energy[-1] - energy[0] == pytest.approx(integral, rel=1e-3)


def test_values_are_plausible(six_hours: list[MeterReading]) -> None:
    for r in six_hours:
        assert 220.0 < r.voltage_v < 240.0
        assert 49.8 < r.frequency_hz < 50.2
        assert 0.3 <= r.power_factor <= 0.95
        assert 0.0 <= r.active_power_kw < 40.0
        assert 20.0 < r.temperature_c < 90.0
        assert r.active_power_kw == pytest.approx(
            r.voltage_v * r.current_a * r.power_factor / 1000.0, rel=1e-9
        )
    by_state: dict[MachineState, list[float]] = defaultdict(list)
    for r in six_hours:
        by_state[r.machine_state].append(r.active_power_kw)
    assert set(by_state) == set(MachineState)
    assert np.median(by_state[MachineState.RUNNING]) == pytest.approx(25.0, rel=0.1)
    assert np.median(by_state[MachineState.IDLE]) == pytest.approx(3.0, rel=0.1)
    assert np.median(by_state[MachineState.OFF]) < 0.1
    pf_running = np.median([r.power_factor for r in six_hours if r.active_power_kw > 20])
    pf_idle = np.median([r.power_factor for r in six_hours if 2 < r.active_power_kw < 4])
    assert pf_running > 0.9 > pf_idle


def test_temperature_follows_load_with_first_order_lag() -> None:
    params = MeterParams(
        initial_state=MachineState.IDLE,
        mean_dwell_idle_s=0.0,  # leaves idle after min_dwell_s
        min_dwell_s=5.0,
        idle_to_running_probability=1.0,
        mean_dwell_running_s=1e9,
        running_fluctuation=0.0,
        idle_fluctuation=0.0,
    )
    model = EnergyMeterModel(seed=0, params=params, t0=0.0)
    start = model.state_at(0.0).temperature_c
    assert start == pytest.approx(params.ambient_c + params.temperature_rise_c_per_kw * 3.0)
    final = params.ambient_c + params.temperature_rise_c_per_kw * params.running_power_kw
    tau = params.thermal_time_constant_s
    at_tau = model.state_at(5.0 + tau)
    assert at_tau.machine_state is MachineState.RUNNING
    fraction = (at_tau.temperature_c - start) / (final - start)
    assert fraction == pytest.approx(1.0 - math.exp(-1.0), abs=0.02)
    assert model.state_at(5.0 + 8 * tau).temperature_c == pytest.approx(final, abs=0.05)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        EnergyMeterModel(time_scale=0.0)
    with pytest.raises(ValueError):
        EnergyMeterModel(params=MeterParams(step_s=0.0))


# -- waveform mode -----------------------------------------------------------


def test_waveform_exact_values() -> None:
    p = WaveformParams(t0=1000.0, period_s=60.0, energy0_kwh=5.0)
    r0 = waveform_reading(1000.0, p)
    assert (r0.voltage_v, r0.current_a) == (230.0, 10.0)
    assert r0.power_factor == pytest.approx(0.95, abs=1e-15)
    assert r0.active_power_kw == pytest.approx(230.0 * 10.0 * 0.95 / 1000.0, abs=1e-12)
    assert r0.energy_import_kwh == 5.0
    assert r0.machine_state is MachineState.OFF

    r = waveform_reading(1015.0, p)  # a quarter period: sin = 1, cos = 0
    assert r.voltage_v == pytest.approx(240.0, abs=1e-12)
    assert r.current_a == pytest.approx(12.0, abs=1e-12)
    assert r.power_factor == pytest.approx(0.9, abs=1e-12)
    assert r.active_power_kw == pytest.approx(2.592, abs=1e-12)
    assert r.frequency_hz == pytest.approx(50.1, abs=1e-12)
    assert r.temperature_c == pytest.approx(45.0, abs=1e-12)

    assert waveform_reading(1000.0 + 25.0, p).machine_state is MachineState.IDLE
    assert waveform_reading(1000.0 + 45.0, p).machine_state is MachineState.RUNNING


def test_waveform_holds_before_t0() -> None:
    p = WaveformParams(t0=1000.0)
    before = waveform_reading(900.0, p)
    assert before.model_time == 0.0
    assert before.voltage_v == 230.0
    assert before.energy_import_kwh == 0.0


def test_waveform_energy_is_exact_integral() -> None:
    p = WaveformParams(t0=0.0, period_s=60.0)
    # Over whole periods only the constant terms remain: 2070 + 18/2 = 2079 W on average.
    assert waveform_reading(120.0, p).energy_import_kwh == pytest.approx(
        2079.0 * 120.0 / 3.6e6, rel=1e-12
    )
    ts = np.linspace(0.0, 47.3, 200_001)
    power_kw = np.array([waveform_reading(float(t), p).active_power_kw for t in ts[::100]])
    numeric = float(np.trapezoid(power_kw, ts[::100])) / 3600.0
    assert waveform_reading(47.3, p).energy_import_kwh == pytest.approx(numeric, rel=1e-6)
    energies = [waveform_reading(float(t), p).energy_import_kwh for t in ts[::1000]]
    assert all(b > a for a, b in itertools.pairwise(energies))


def test_waveform_time_scale() -> None:
    slow = WaveformParams(t0=0.0, period_s=60.0)
    fast = WaveformParams(t0=0.0, period_s=60.0, time_scale=10.0)
    assert waveform_reading(1.5, fast).voltage_v == pytest.approx(
        waveform_reading(15.0, slow).voltage_v, abs=1e-12
    )


def test_waveform_meter_matches_pure_function_and_moves_forward() -> None:
    p = WaveformParams(t0=10.0, period_s=30.0)
    meter = WaveformMeter(p)
    assert meter.state_at(17.0) == waveform_reading(17.0, p)
    assert meter.state_at(12.0) == waveform_reading(17.0, p)
    assert meter.last_reading == waveform_reading(17.0, p)
