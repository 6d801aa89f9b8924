"""Process model of a machine's 3-phase energy meter.

Two models share one interface, ``state_at(t) -> MeterReading``:

* :class:`EnergyMeterModel` -- plausible, seeded dynamics: the machine switches
  between off, idle and running with random dwell times; active power follows
  the state with load fluctuation and a short ramp; voltage, frequency and an
  internal temperature drift slowly; the energy counter integrates power.
* :class:`WaveformMeter` -- exact sine waveforms for tests; the pure function
  :func:`waveform_reading` gives the expected reading for any timestamp.

Electrical quantities are single-phase equivalents everywhere (both models):
``active_power_kw == voltage_v * current_a * power_factor / 1000``.

Time: ``t`` is wall-clock seconds (``time.time()``). Model time runs
``time_scale`` times faster than wall-clock time from ``t0`` on. Time only moves
forward: a call with a ``t`` not later than the previous call returns the
previous reading unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "EnergyMeterModel",
    "MachineState",
    "MeterModel",
    "MeterParams",
    "MeterReading",
    "WaveformMeter",
    "WaveformParams",
    "power_factor_for_load",
    "waveform_reading",
]


class MachineState(IntEnum):
    """Operating state of the metered machine (also its register value)."""

    OFF = 0
    IDLE = 1
    RUNNING = 2


@dataclass(frozen=True, slots=True)
class MeterReading:
    """What the meter shows at one instant."""

    timestamp: float
    """Wall-clock time of the reading, seconds since the epoch."""
    model_time: float
    """Model seconds elapsed since ``t0`` (wall-clock seconds x time scale)."""
    voltage_v: float
    current_a: float
    active_power_kw: float
    power_factor: float
    frequency_hz: float
    energy_import_kwh: float
    temperature_c: float
    machine_state: MachineState


@runtime_checkable
class MeterModel(Protocol):
    """Anything a simulated meter can be driven by."""

    def state_at(self, t: float) -> MeterReading:
        """Return the reading at wall-clock time ``t`` (time only moves forward)."""
        ...


# --------------------------------------------------------------------------- #
# Process model
# --------------------------------------------------------------------------- #


@dataclass(frozen=True, slots=True)
class MeterParams:
    """Tunable constants of :class:`EnergyMeterModel` (model-time seconds)."""

    nominal_voltage_v: float = 230.0
    voltage_noise_v: float = 1.0
    """Standard deviation of the slow grid-voltage deviation."""
    voltage_drop_v_per_kw: float = 0.04
    """Voltage sag per kW of load (feeder impedance)."""
    nominal_frequency_hz: float = 50.0
    frequency_noise_hz: float = 0.02
    off_power_kw: float = 0.02
    """Standby draw of the controls when the machine is off."""
    idle_power_kw: float = 3.0
    running_power_kw: float = 25.0
    idle_fluctuation: float = 0.03
    """Relative standard deviation of the load when idle."""
    running_fluctuation: float = 0.08
    """Relative standard deviation of the load when running."""
    load_time_constant_s: float = 20.0
    power_time_constant_s: float = 3.0
    """Ramp of active power towards the state's load (motor run-up)."""
    mean_dwell_off_s: float = 120.0
    mean_dwell_idle_s: float = 60.0
    mean_dwell_running_s: float = 300.0
    min_dwell_s: float = 5.0
    idle_to_running_probability: float = 0.8
    """Chance that an idle machine starts running (otherwise it switches off)."""
    pf_max: float = 0.95
    pf_min: float = 0.30
    pf_knee_kw: float = 5.0
    ambient_c: float = 25.0
    temperature_rise_c_per_kw: float = 1.2
    thermal_time_constant_s: float = 900.0
    initial_state: MachineState = MachineState.IDLE
    initial_energy_kwh: float = 0.0
    step_s: float = 1.0
    """Integration step. The trajectory depends on seed and step, not on when it is read."""

    def base_power_kw(self, state: MachineState) -> float:
        """Mean active power of the machine in ``state``."""
        if state is MachineState.RUNNING:
            return self.running_power_kw
        if state is MachineState.IDLE:
            return self.idle_power_kw
        return self.off_power_kw

    def fluctuation(self, state: MachineState) -> float:
        """Relative load fluctuation in ``state``."""
        if state is MachineState.RUNNING:
            return self.running_fluctuation
        if state is MachineState.IDLE:
            return self.idle_fluctuation
        return 0.0

    def mean_dwell_s(self, state: MachineState) -> float:
        """Mean time the machine stays in ``state``."""
        if state is MachineState.RUNNING:
            return self.mean_dwell_running_s
        if state is MachineState.IDLE:
            return self.mean_dwell_idle_s
        return self.mean_dwell_off_s


def power_factor_for_load(power_kw: float, params: MeterParams) -> float:
    """Power factor of an induction-motor load: poor at light load, high at full load."""
    span = params.pf_max - params.pf_min
    return params.pf_max - span * math.exp(-max(power_kw, 0.0) / params.pf_knee_kw)


class _Knot(NamedTuple):
    """Model state at one integration step boundary."""

    step: int
    state: MachineState
    dwell_s: float
    load: float  # relative load deviation (OU process)
    power_kw: float
    voltage_dev_v: float  # OU process
    frequency_dev_hz: float  # OU process
    temperature_c: float
    energy_kwh: float


_CHUNK = 1024


class EnergyMeterModel:
    """Seeded, stateful process model of one machine's energy meter.

    The trajectory is fixed by ``seed``, ``params`` and ``t0``: two models built
    alike give identical readings for the same timestamps, however often or
    rarely each one is read in between.

    Args:
        seed: seed of the model's own :class:`numpy.random.Generator`.
        params: model constants.
        t0: wall-clock time at which model time is zero; ``None`` means the
            time of the first :meth:`state_at` call.
        time_scale: model seconds per wall-clock second (``60`` = one model
            hour per wall-clock minute).
    """

    def __init__(
        self,
        seed: int = 0,
        params: MeterParams | None = None,
        *,
        t0: float | None = None,
        time_scale: float = 1.0,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        self.params = params or MeterParams()
        if self.params.step_s <= 0:
            raise ValueError("params.step_s must be > 0")
        self.seed = seed
        self.time_scale = float(time_scale)
        self._t0 = t0
        self._rng = np.random.default_rng(seed)
        self._normals = np.empty((0, 3))
        self._uniforms = np.empty((0, 2))
        self._draw_index = 0
        p = self.params
        state = MachineState(p.initial_state)
        first_dwell = self._sample_dwell(state, float(self._rng.random()))
        power = p.base_power_kw(state)
        self._cur = _Knot(
            step=0,
            state=state,
            dwell_s=first_dwell,
            load=0.0,
            power_kw=power,
            voltage_dev_v=0.0,
            frequency_dev_hz=0.0,
            temperature_c=p.ambient_c + p.temperature_rise_c_per_kw * power,
            energy_kwh=p.initial_energy_kwh,
        )
        self._forced: MachineState | None = None
        self._nxt = self._advance(self._cur)
        self._last: MeterReading | None = None

    @property
    def t0(self) -> float | None:
        """Wall-clock time of model time zero (``None`` until first read if not given)."""
        return self._t0

    @property
    def last_reading(self) -> MeterReading | None:
        """The most recent reading returned by :meth:`state_at`."""
        return self._last

    def force_state(self, state: MachineState | None) -> None:
        """Hold the machine in ``state`` from the next integration step on (an operator or
        a HIL timeline switching it); ``None`` releases it to its random dwell times again,
        after ``min_dwell_s``. The random draws go on meanwhile, so a model with the same
        seed and the same switches stays reproducible."""
        self._forced = None if state is None else MachineState(state)

    def state_at(self, t: float) -> MeterReading:
        """Advance the model to wall-clock time ``t`` and return the reading there."""
        if self._last is not None and t <= self._last.timestamp:
            return self._last
        if self._t0 is None:
            self._t0 = t
        tau = max(0.0, (t - self._t0) * self.time_scale)
        dt = self.params.step_s
        step = int(tau // dt)
        while self._nxt.step <= step:
            self._cur = self._nxt
            self._nxt = self._advance(self._cur)
        reading = self._interpolate(t, tau, (tau - step * dt) / dt)
        self._last = reading
        return reading

    # -- internals ----------------------------------------------------------

    def _sample_dwell(self, state: MachineState, uniform: float) -> float:
        mean = self.params.mean_dwell_s(state)
        return max(self.params.min_dwell_s, -mean * math.log1p(-uniform))

    def _draws(self) -> tuple[np.ndarray, np.ndarray]:
        """Random numbers for one step, drawn in fixed-size chunks (query-independent)."""
        if self._draw_index >= len(self._normals):
            self._normals = self._rng.standard_normal((_CHUNK, 3))
            self._uniforms = self._rng.random((_CHUNK, 2))
            self._draw_index = 0
        i = self._draw_index
        self._draw_index += 1
        return self._normals[i], self._uniforms[i]

    def _next_state(self, state: MachineState, uniform: float) -> MachineState:
        if state is MachineState.OFF:
            return MachineState.IDLE
        if state is MachineState.RUNNING:
            return MachineState.IDLE
        if uniform < self.params.idle_to_running_probability:
            return MachineState.RUNNING
        return MachineState.OFF

    def _advance(self, k: _Knot) -> _Knot:
        """One integration step from knot ``k`` to the next."""
        p = self.params
        dt = p.step_s
        normal, uniform = self._draws()
        state, dwell = k.state, k.dwell_s - dt
        if self._forced is not None:
            state, dwell = self._forced, p.min_dwell_s
        elif dwell <= 0.0:
            state = self._next_state(state, float(uniform[0]))
            dwell = self._sample_dwell(state, float(uniform[1]))

        def ou(x: float, tau: float, sigma: float, n: float) -> float:
            a = math.exp(-dt / tau)
            return a * x + sigma * math.sqrt(1.0 - a * a) * n

        load = ou(k.load, p.load_time_constant_s, p.fluctuation(state), float(normal[0]))
        target = p.base_power_kw(state) * max(0.0, 1.0 + load)
        power = target + (k.power_kw - target) * math.exp(-dt / p.power_time_constant_s)
        mean_power = 0.5 * (k.power_kw + power)
        t_ss = p.ambient_c + p.temperature_rise_c_per_kw * mean_power
        temp = t_ss + (k.temperature_c - t_ss) * math.exp(-dt / p.thermal_time_constant_s)
        return _Knot(
            step=k.step + 1,
            state=state,
            dwell_s=dwell,
            load=load,
            power_kw=power,
            voltage_dev_v=ou(k.voltage_dev_v, 30.0, p.voltage_noise_v, float(normal[1])),
            frequency_dev_hz=ou(k.frequency_dev_hz, 60.0, p.frequency_noise_hz, float(normal[2])),
            temperature_c=temp,
            energy_kwh=k.energy_kwh + mean_power * dt / 3600.0,
        )

    def _interpolate(self, t: float, tau: float, alpha: float) -> MeterReading:
        """Reading between the current and the next knot (linear, energy integrated)."""
        p, a, b = self.params, self._cur, self._nxt

        def lerp(x: float, y: float) -> float:
            return x + (y - x) * alpha

        power = lerp(a.power_kw, b.power_kw)
        voltage = (
            p.nominal_voltage_v
            + lerp(a.voltage_dev_v, b.voltage_dev_v)
            - p.voltage_drop_v_per_kw * power
        )
        pf = power_factor_for_load(power, p)
        energy = a.energy_kwh + 0.5 * (a.power_kw + power) * alpha * p.step_s / 3600.0
        return MeterReading(
            timestamp=t,
            model_time=tau,
            voltage_v=voltage,
            current_a=power * 1000.0 / (voltage * pf),
            active_power_kw=power,
            power_factor=pf,
            frequency_hz=p.nominal_frequency_hz + lerp(a.frequency_dev_hz, b.frequency_dev_hz),
            energy_import_kwh=energy,
            temperature_c=lerp(a.temperature_c, b.temperature_c),
            machine_state=b.state if alpha > 0.0 else a.state,
        )


# --------------------------------------------------------------------------- #
# Deterministic waveform mode
# --------------------------------------------------------------------------- #


@dataclass(frozen=True, slots=True)
class WaveformParams:
    """Parameters of :func:`waveform_reading`."""

    t0: float = 0.0
    period_s: float = 60.0
    """Period in model seconds."""
    time_scale: float = 1.0
    energy0_kwh: float = 0.0


def _waveform_energy_ws(phi: float, omega: float) -> float:
    """Exact integral of U*I*PF (W*s) over model time from phase 0 to ``phi``.

    U*I*PF = (230 + 10 s)(10 + 2 s)(0.9 + 0.05 c)
           = 2070 + 504 s + 18 s^2 + 115 c + 28 s c + s^2 c,   s = sin, c = cos.
    """
    s, c = math.sin(phi), math.cos(phi)
    integral = (
        2070.0 * phi
        + 504.0 * (1.0 - c)
        + 18.0 * (phi / 2.0 - math.sin(2.0 * phi) / 4.0)
        + 115.0 * s
        + 14.0 * s * s
        + s**3 / 3.0
    )
    return integral / omega


def waveform_reading(t: float, params: WaveformParams | None = None) -> MeterReading:
    """Exact waveform-mode reading at wall-clock time ``t`` (a pure function).

    With ``tau = max(0, (t - t0) * time_scale)`` and ``phi = 2*pi*tau/period``:

    * voltage = 230 + 10 sin(phi) V
    * current = 10 + 2 sin(phi) A
    * power factor = 0.9 + 0.05 cos(phi)
    * active power = voltage * current * power factor / 1000 kW
    * frequency = 50 + 0.1 sin(phi) Hz
    * temperature = 40 + 5 sin(phi) degC
    * energy = energy0 + exact integral of active power over model time (kWh)
    * machine state cycles off, idle, running in thirds of each period
      (a synthetic pattern, not tied to power)

    Before ``t0`` the waveform holds its ``t0`` value.
    """
    params = params or WaveformParams()
    tau = max(0.0, (t - params.t0) * params.time_scale)
    omega = 2.0 * math.pi / params.period_s
    phi = omega * tau
    s, c = math.sin(phi), math.cos(phi)
    voltage = 230.0 + 10.0 * s
    current = 10.0 + 2.0 * s
    pf = 0.9 + 0.05 * c
    frac = (tau / params.period_s) % 1.0
    state = MachineState(min(2, int(frac * 3.0)))
    return MeterReading(
        timestamp=t,
        model_time=tau,
        voltage_v=voltage,
        current_a=current,
        active_power_kw=voltage * current * pf / 1000.0,
        power_factor=pf,
        frequency_hz=50.0 + 0.1 * s,
        energy_import_kwh=params.energy0_kwh + _waveform_energy_ws(phi, omega) / 3.6e6,
        temperature_c=40.0 + 5.0 * s,
        machine_state=state,
    )


@dataclass(slots=True)
class WaveformMeter:
    """:class:`MeterModel` backed by :func:`waveform_reading` (time only moves forward)."""

    params: WaveformParams = field(default_factory=WaveformParams)
    _last: MeterReading | None = field(default=None, init=False, repr=False)

    @property
    def last_reading(self) -> MeterReading | None:
        """The most recent reading returned by :meth:`state_at`."""
        return self._last

    def state_at(self, t: float) -> MeterReading:
        """Reading at ``t``; the previous reading if ``t`` is not later than it."""
        if self._last is not None and t <= self._last.timestamp:
            return self._last
        self._last = waveform_reading(t, self.params)
        return self._last
