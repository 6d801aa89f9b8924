"""The scenario timeline: steps, ramps, drifts, noise and machine states applied to the
process models' parameters over scenario time (seconds after the gateway's first birth).

Each parameter a timeline touches is a *channel*: its value is a base (moved by steps,
ramps and drifts) plus a noise offset (from ``noise`` entries), written to the model's
``params`` every :data:`TICK_S` while anything moves it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from hil.process.energy_meter import EnergyMeterModel, MachineState, MeterParams
from hil.process.injection_moulding import InjectionMouldingModel, MouldingParams

__all__ = [
    "MACHINE_STATES",
    "TICK_S",
    "TimelineEntry",
    "TimelinePlayer",
    "describe_entry",
    "parameter_names",
]

log = logging.getLogger(__name__)

TICK_S = 0.1
"""How often ramps, drifts and noise write their parameter (scenario seconds)."""
MACHINE_STATES = ("production", "idle", "setup", "stopped", "auto")
_METER_STATES = {
    "production": MachineState.RUNNING,
    "idle": MachineState.IDLE,
    "setup": MachineState.IDLE,
    "stopped": MachineState.OFF,
    "auto": None,
}


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    at: float = Field(ge=0, description="seconds after the gateway's first birth")
    device: str


class _ParamEntry(_Entry):
    param: str = Field(description="a process-model parameter of the device (see hil/README.md)")


class StepChange(_ParamEntry):
    """The parameter jumps to ``value``."""

    kind: Literal["step"]
    value: float


class Ramp(_ParamEntry):
    """The parameter moves linearly from its value at ``at`` to ``to`` in ``over`` seconds."""

    kind: Literal["ramp"]
    to: float
    over: float = Field(gt=0)


class Drift(_ParamEntry):
    """The parameter moves ``per_minute`` per scenario minute until ``until`` (or the end)."""

    kind: Literal["drift"]
    per_minute: float
    until: float | None = Field(default=None, ge=0)


class Noise(_ParamEntry):
    """Seeded gaussian noise (standard deviation ``sd``) around the parameter's base value,
    drawn anew every ``every`` seconds until ``until`` (or the end)."""

    kind: Literal["noise"]
    sd: float = Field(gt=0)
    every: float = Field(default=1.0, gt=0)
    until: float | None = Field(default=None, ge=0)


class MachineStateChange(_Entry):
    """The machine goes to production, idle, setup or stopped; ``auto`` gives the meter
    back its own random state changes (the PLC: production)."""

    kind: Literal["machine_state"]
    state: Literal["production", "idle", "setup", "stopped", "auto"]


TimelineEntry = Annotated[
    StepChange | Ramp | Drift | Noise | MachineStateChange, Field(discriminator="kind")
]
TIMELINE_KINDS = ("step", "ramp", "drift", "noise", "machine_state")


def _float_fields(cls: type) -> tuple[str, ...]:
    return tuple(
        f.name for f in dataclasses.fields(cls) if f.type in ("float", float) and f.name != "step_s"
    )


_PARAMS: dict[str, tuple[str, ...]] = {
    "modbus_meter": _float_fields(MeterParams),
    "dlt645_meter": _float_fields(MeterParams),
    "opcua_plc": _float_fields(MouldingParams),
    "s7_plc": _float_fields(MouldingParams),
    "fins_plc": _float_fields(MouldingParams),
    "mc_plc": _float_fields(MouldingParams),
}


def parameter_names(device_kind: str) -> tuple[str, ...]:
    """The parameters a timeline may move on a device of ``device_kind`` (empty: none)."""
    return _PARAMS.get(device_kind, ())


def describe_entry(entry: TimelineEntry) -> str:
    """A short label for reports and progress lines."""
    match entry:
        case StepChange():
            return f"step {entry.device}.{entry.param} = {entry.value:g}"
        case Ramp():
            return f"ramp {entry.device}.{entry.param} -> {entry.to:g} in {entry.over:g} s"
        case Drift():
            return f"drift {entry.device}.{entry.param} {entry.per_minute:+g}/min"
        case Noise():
            return f"noise {entry.device}.{entry.param} sd {entry.sd:g}"
        case MachineStateChange():
            return f"{entry.device} {entry.state}"
    raise AssertionError(entry)  # pragma: no cover


class _Channel:
    """One model parameter: base value plus noise offset."""

    def __init__(self, model: Any, param: str) -> None:
        self.model = model
        self.param = param
        self.base = float(getattr(model.params, param))
        self.offset = 0.0

    def apply(self) -> None:
        value = self.base + self.offset
        self.model.params = dataclasses.replace(self.model.params, **{self.param: value})


class TimelinePlayer:
    """Plays timeline entries against the process models of the running simulated line.

    ``models`` maps device names to their process models (:class:`EnergyMeterModel`,
    :class:`InjectionMouldingModel`); ``clock()`` gives scenario seconds; ``end`` is the
    scenario's duration (where open-ended drifts and noise stop)."""

    def __init__(
        self, models: dict[str, Any], clock: Callable[[], float], end: float, seed: int = 0
    ) -> None:
        self.models = models
        self.clock = clock
        self.end = end
        self.seed = seed
        self._channels: dict[tuple[str, str], _Channel] = {}

    def channel(self, device: str, param: str) -> _Channel:
        key = (device, param)
        if key not in self._channels:
            self._channels[key] = _Channel(self.models[device], param)
        return self._channels[key]

    async def _until(self, t: float) -> None:
        await asyncio.sleep(max(0.0, t - self.clock()))

    async def play(self, entry: TimelineEntry, index: int = 0) -> None:
        """Wait for ``entry.at``, apply it, and keep applying it while it lasts."""
        await self._until(entry.at)
        match entry:
            case StepChange():
                ch = self.channel(entry.device, entry.param)
                ch.base = entry.value
                ch.apply()
            case Ramp():
                ch = self.channel(entry.device, entry.param)
                start = ch.base
                while (frac := (self.clock() - entry.at) / entry.over) < 1.0:
                    ch.base = start + (entry.to - start) * max(0.0, frac)
                    ch.apply()
                    await asyncio.sleep(TICK_S)
                ch.base = entry.to
                ch.apply()
            case Drift():
                ch = self.channel(entry.device, entry.param)
                start, stop = ch.base, min(entry.until or self.end, self.end)
                while (now := self.clock()) < stop:
                    ch.base = start + entry.per_minute * (now - entry.at) / 60.0
                    ch.apply()
                    await asyncio.sleep(TICK_S)
            case Noise():
                ch = self.channel(entry.device, entry.param)
                rng = np.random.default_rng([self.seed, index])
                stop = min(entry.until or self.end, self.end)
                while self.clock() < stop:
                    ch.offset = float(rng.normal(0.0, entry.sd))
                    ch.apply()
                    await asyncio.sleep(entry.every)
                ch.offset = 0.0
                ch.apply()
            case MachineStateChange():
                self.set_machine_state(entry.device, entry.state)

    def set_machine_state(self, device: str, state: str) -> None:
        """Switch the device's machine (meter: held state; PLC: machine mode)."""
        model = self.models[device]
        if isinstance(model, EnergyMeterModel):
            model.force_state(_METER_STATES[state])
        elif isinstance(model, InjectionMouldingModel):
            model.set_mode("production" if state == "auto" else state)
        else:
            raise ValueError(f"{device}: its process model has no machine state")
