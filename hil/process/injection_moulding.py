"""Process model of an injection-moulding machine: the cycle a PLC would report.

One cycle runs through six phases: mould **close**, **inject** (screw forward,
pressure rises to its peak), **hold** (packing pressure for ``hold_time``),
**cool**, mould **open**, part **eject**; then the part counter rises and the
next cycle starts. Melt temperature follows its setpoint (first order, with
noise); mould temperature warms while hot melt is in the mould and cools
towards the coolant otherwise; injection pressure is a smooth rise to a
per-cycle peak during inject, the hold pressure during hold, near zero else.

Seeded and time-compressible like :mod:`hil.process.energy_meter`: the model
integrates on a fixed model-time grid (``step_s``) and draws its random numbers
per cycle and per step, so its trajectory depends on the seed, the parameters,
``t0`` and the setpoint writes, not on how often it is read. Model time is
``(t - t0) * time_scale``; time only moves forward.

Machine modes (:meth:`InjectionMouldingModel.set_mode`): ``production`` cycles;
``idle`` and ``setup`` hold the mould open with the barrel at temperature (no
parts, no pressure); ``stopped`` also switches the barrel heaters off, so the melt
cools slowly towards ambient. Back in production a new cycle starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import IntEnum

import numpy as np

__all__ = [
    "MACHINE_MODES",
    "CyclePhase",
    "InjectionMouldingModel",
    "MachineReading",
    "MouldingParams",
]


class CyclePhase(IntEnum):
    """Phase of the moulding cycle (its value is the PLC's phase number)."""

    CLOSE = 1
    INJECT = 2
    HOLD = 3
    COOL = 4
    OPEN = 5
    EJECT = 6

    @property
    def state_text(self) -> str:
        """The machine state string a PLC shows in this phase."""
        return _STATE_TEXT[self]


#: the machine modes of :meth:`InjectionMouldingModel.set_mode`
MACHINE_MODES = ("production", "idle", "setup", "stopped")
_AMBIENT_C = 25.0
_HEATERS_OFF_SLOWDOWN = 10.0
"""Heaters off: the melt cools with this many times its heating time constant."""

_STATE_TEXT = {
    CyclePhase.CLOSE: "CLOSING",
    CyclePhase.INJECT: "INJECTING",
    CyclePhase.HOLD: "HOLDING",
    CyclePhase.COOL: "COOLING",
    CyclePhase.OPEN: "OPENING",
    CyclePhase.EJECT: "EJECTING",
}


@dataclass(frozen=True, slots=True)
class MouldingParams:
    """Tunable constants (model-time seconds, degC, bar)."""

    close_s: float = 1.5
    inject_s: float = 1.2
    hold_time_s: float = 3.0
    """Hold (packing) time; writable on the PLC as ``HoldTime``."""
    cool_s: float = 8.0
    open_s: float = 1.5
    eject_s: float = 0.8
    phase_jitter: float = 0.03
    """Relative standard deviation of each phase's duration, drawn per cycle."""
    melt_setpoint_c: float = 230.0
    """Melt temperature setpoint; writable on the PLC as ``MeltTempSetpoint``."""
    melt_time_constant_s: float = 30.0
    melt_noise_c: float = 0.3
    initial_melt_c: float = 225.0
    coolant_c: float = 40.0
    mould_heating_per_s: float = 0.25
    """Mould warming per second of melt contact, per 100 degC of melt above the mould."""
    mould_time_constant_s: float = 20.0
    initial_mould_c: float = 45.0
    peak_pressure_bar: float = 1200.0
    peak_pressure_sd_bar: float = 25.0
    hold_pressure_ratio: float = 0.55
    zone_offsets_c: tuple[float, ...] = (-20.0, -10.0, -5.0, 0.0)
    """Barrel zone temperatures relative to the melt (feed to nozzle)."""
    step_s: float = 0.05

    def phase_duration(self, phase: CyclePhase) -> float:
        return {
            CyclePhase.CLOSE: self.close_s,
            CyclePhase.INJECT: self.inject_s,
            CyclePhase.HOLD: self.hold_time_s,
            CyclePhase.COOL: self.cool_s,
            CyclePhase.OPEN: self.open_s,
            CyclePhase.EJECT: self.eject_s,
        }[phase]


@dataclass(frozen=True, slots=True)
class MachineReading:
    """What the PLC shows at one instant."""

    timestamp: float
    """Wall-clock time, seconds since the epoch."""
    model_time: float
    phase: CyclePhase
    state: str
    """Machine state string, e.g. ``INJECTING``."""
    melt_temp_c: float
    mould_temp_c: float
    injection_pressure_bar: float
    cycle_time_s: float
    """Duration of the last completed cycle (0 before the first one ends)."""
    part_count: int
    cycle_start: float
    """Wall-clock time the current cycle started."""
    zone_temps_c: tuple[float, ...]
    melt_setpoint_c: float
    hold_time_s: float


class InjectionMouldingModel:
    """Seeded cycle model; read it with :meth:`state_at`, change setpoints with
    :meth:`set_melt_setpoint` and :meth:`set_hold_time`."""

    def __init__(
        self,
        seed: int = 0,
        params: MouldingParams | None = None,
        t0: float | None = None,
        time_scale: float = 1.0,
    ) -> None:
        import time

        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        self.params = params or MouldingParams()
        self.t0 = time.time() if t0 is None else t0
        self.time_scale = time_scale
        self._rng = np.random.default_rng(seed)
        p = self.params
        self._model_time = 0.0
        self._melt = p.initial_melt_c
        self._mould = p.initial_mould_c
        self._parts = 0
        self._last_cycle_s = 0.0
        self._cycle_start_model = 0.0
        self._mode = "production"
        self._start_cycle()
        self._last = self._reading(self.t0)

    # -- setpoints ------------------------------------------------------------------
    @property
    def melt_setpoint(self) -> float:
        return self.params.melt_setpoint_c

    def set_melt_setpoint(self, celsius: float) -> None:
        if not 100.0 <= celsius <= 350.0:
            raise ValueError("melt temperature setpoint must be within 100..350 degC")
        self.params = replace(self.params, melt_setpoint_c=float(celsius))

    @property
    def hold_time(self) -> float:
        return self.params.hold_time_s

    def set_hold_time(self, seconds: float) -> None:
        if not 0.1 <= seconds <= 30.0:
            raise ValueError("hold time must be within 0.1..30 s")
        self.params = replace(self.params, hold_time_s=float(seconds))

    @property
    def mode(self) -> str:
        """The machine mode, one of :data:`MACHINE_MODES`."""
        return self._mode

    def set_mode(self, mode: str) -> None:
        """Switch between production, idle, setup and stopped (from the next model step)."""
        if mode not in MACHINE_MODES:
            raise ValueError(f"machine mode must be one of {', '.join(MACHINE_MODES)}")
        if mode == "production" and self._mode != "production":
            self._cycle_start_model = self._model_time
            self._start_cycle()
        self._mode = mode

    # -- evaluation -----------------------------------------------------------------
    def state_at(self, t: float) -> MachineReading:
        """The reading at wall-clock ``t``; a ``t`` not after the last call returns the last."""
        target = (t - self.t0) * self.time_scale
        if target <= self._model_time:
            return self._last
        step = self.params.step_s
        while self._model_time + step <= target:
            self._step(step)
        self._last = self._reading(t)
        return self._last

    def _start_cycle(self) -> None:
        p = self.params
        jitter = 1.0 + p.phase_jitter * self._rng.standard_normal(len(CyclePhase))
        self._durations = {
            phase: max(0.05, p.phase_duration(phase) * float(j))
            for phase, j in zip(CyclePhase, jitter, strict=True)
        }
        spread = p.peak_pressure_sd_bar * float(self._rng.standard_normal())
        self._peak = p.peak_pressure_bar + spread
        self._phase = CyclePhase.CLOSE
        self._phase_elapsed = 0.0

    def _step(self, dt: float) -> None:
        p = self.params
        self._model_time += dt
        self._phase_elapsed += dt
        producing = self._mode == "production"
        # melt: first order towards the setpoint (ambient with the heaters off), plus noise
        heated = self._mode != "stopped"
        tau = p.melt_time_constant_s * (1.0 if heated else _HEATERS_OFF_SLOWDOWN)
        alpha = 1.0 - math.exp(-dt / tau)
        noise = p.melt_noise_c * math.sqrt(dt) * float(self._rng.standard_normal())
        self._melt += alpha * ((p.melt_setpoint_c if heated else _AMBIENT_C) - self._melt) + noise
        # mould: melt contact heats it, coolant pulls it down
        contact = producing and self._phase in (CyclePhase.INJECT, CyclePhase.HOLD, CyclePhase.COOL)
        heat = p.mould_heating_per_s * dt * (self._melt - self._mould) / 100.0 if contact else 0.0
        cool = (1.0 - math.exp(-dt / p.mould_time_constant_s)) * (self._mould - p.coolant_c)
        self._mould += heat - cool
        if not producing:
            self._phase_elapsed = 0.0
            return
        if self._phase_elapsed >= self._durations[self._phase]:
            self._phase_elapsed -= self._durations[self._phase]
            if self._phase is CyclePhase.EJECT:
                self._parts += 1
                self._last_cycle_s = self._model_time - self._cycle_start_model
                self._cycle_start_model = self._model_time
                self._start_cycle()
            else:
                self._phase = CyclePhase(self._phase + 1)
                if self._phase is CyclePhase.HOLD:  # the hold time setpoint applies from now
                    self._durations[CyclePhase.HOLD] = p.hold_time_s

    def _pressure(self) -> float:
        p = self.params
        if self._mode != "production":
            return 0.0
        if self._phase is CyclePhase.INJECT:
            x = min(1.0, self._phase_elapsed / self._durations[CyclePhase.INJECT])
            return self._peak * (1.0 - math.exp(-5.0 * x)) / (1.0 - math.exp(-5.0))
        if self._phase is CyclePhase.HOLD:
            return self._peak * p.hold_pressure_ratio
        if self._phase is CyclePhase.COOL:  # residual pressure decays quickly
            return self._peak * p.hold_pressure_ratio * math.exp(-3.0 * self._phase_elapsed)
        return 0.0

    def _reading(self, t: float) -> MachineReading:
        p = self.params
        wall_cycle_start = self.t0 + self._cycle_start_model / self.time_scale
        return MachineReading(
            timestamp=t,
            model_time=self._model_time,
            phase=self._phase,
            state=self._phase.state_text if self._mode == "production" else self._mode.upper(),
            melt_temp_c=self._melt,
            mould_temp_c=self._mould,
            injection_pressure_bar=self._pressure(),
            cycle_time_s=self._last_cycle_s,
            part_count=self._parts,
            cycle_start=wall_cycle_start,
            zone_temps_c=tuple(self._melt + off for off in p.zone_offsets_c),
            melt_setpoint_c=p.melt_setpoint_c,
            hold_time_s=p.hold_time_s,
        )
