"""Process models behind the simulated devices."""

from hil.process.energy_meter import (
    EnergyMeterModel,
    MachineState,
    MeterModel,
    MeterParams,
    MeterReading,
    WaveformMeter,
    WaveformParams,
    power_factor_for_load,
    waveform_reading,
)

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
