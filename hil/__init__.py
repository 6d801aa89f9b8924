"""Hardware-in-the-loop: simulated devices on real protocols, their process models, a broker.

The public API is re-exported here; see ``hil/README.md``.
"""

from hil.broker import MqttBroker, find_mosquitto
from hil.devices.modbus_meter import REGISTER_MAP, ModbusMeterSimulator
from hil.netutil import free_port, wait_for_port
from hil.process.energy_meter import (
    EnergyMeterModel,
    MachineState,
    MeterModel,
    MeterParams,
    MeterReading,
    WaveformMeter,
    WaveformParams,
    waveform_reading,
)

__all__ = [
    "REGISTER_MAP",
    "EnergyMeterModel",
    "MachineState",
    "MeterModel",
    "MeterParams",
    "MeterReading",
    "ModbusMeterSimulator",
    "MqttBroker",
    "WaveformMeter",
    "WaveformParams",
    "find_mosquitto",
    "free_port",
    "wait_for_port",
    "waveform_reading",
]
