"""Helpers of the DL/T 645 tests: meters on a simulated line, device configs, drivers."""

from __future__ import annotations

import time
from typing import Any

from drivers.dlt645.config import Dlt645SerialDeviceConfig, Dlt645TcpDeviceConfig
from drivers.dlt645.driver import Dlt645SerialDriver, Dlt645TcpDriver
from gateway.serial_ports import SerialPorts
from hil.devices.dlt645_meter import MACHINE_STATE_DI, Dlt645Line, SimMeter
from hil.process.energy_meter import MachineState, MeterReading, WaveformMeter, WaveformParams

A1, A2, A3 = "000000000001", "000000000002", "000000000003"


def waveform_meter(address: str, version: int = 2007, period: float = 60.0) -> SimMeter:
    """A meter whose values follow exact waveforms (hil/process/energy_meter.py)."""
    params = WaveformParams(t0=time.time(), period_s=period)
    return SimMeter(address, WaveformMeter(params), version)  # type: ignore[arg-type]


def device(line: Dlt645Line, address: str, tags: list[dict[str, Any]], **extra: Any) -> Any:
    """A device block for meter ``address`` on ``line`` (serial or TCP), validated."""
    block: dict[str, Any] = {"name": extra.pop("name", f"meter-{address[-2:]}"),
                             "meter_address": address, "tags": tags,
                             "timeout": extra.pop("timeout", 0.3), **extra}
    if line.transport == "tcp":
        return Dlt645TcpDeviceConfig.model_validate(
            block | {"protocol": "dlt645_tcp", "host": "127.0.0.1", "port": line.port})
    # a pseudo-terminal carries no parity (Linux refuses PARENB on a pty's second open)
    return Dlt645SerialDeviceConfig.model_validate(
        block | {"protocol": "dlt645", "port": line.serial_path, "parity": "N"})


def driver(config: Any, ports: SerialPorts | None = None) -> Any:
    ids = list(range(len(config.tags)))
    if config.protocol == "dlt645_tcp":
        return Dlt645TcpDriver(config, ids)
    return Dlt645SerialDriver(config, ids, ports)


def machine_state_tag(version: int = 2007) -> dict[str, Any]:
    return {"name": "machine_state", "di": MACHINE_STATE_DI[version], "format": "XX",
            "type": "uint16"}


class FixedMeter:
    """A meter model whose reading never changes: exact expected values."""

    def __init__(self, **values: float) -> None:
        base = {"voltage_v": 230.4, "current_a": 30.0, "active_power_kw": 12.3456,
                "power_factor": 0.95, "frequency_hz": 50.01, "energy_import_kwh": 1234.56,
                "temperature_c": -5.5, "machine_state": MachineState.RUNNING}
        base.update(values)
        self.values = base

    def state_at(self, t: float) -> MeterReading:
        return MeterReading(timestamp=t, model_time=0.0, **self.values)  # type: ignore[arg-type]


def fixed_meter(address: str, version: int = 2007, **values: float) -> SimMeter:
    return SimMeter(address, FixedMeter(**values), version)  # type: ignore[arg-type]
