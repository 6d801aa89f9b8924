"""The simulated moulding line behind ``chenxing-gateway demo``.

Each device of the demo config that a simulator can stand in for gets one, and the config
is rewired to it:

- a loopback ``modbus_tcp`` device: a simulated energy meter (``imm-meter`` runs in
  production, the others cycle through their states ten times faster than real time);
- a loopback ``opcua`` device reading the simulated machine's nodes (``ns=2;s=Machine.…``):
  the simulated injection-moulding PLC, four times faster than real time so that a part
  is made every few seconds;
- an ``mcu_node`` device whose serial port does not exist here: a simulated sensor node
  on a pty;
- ``models`` enabled: the reference edge models shipped with the package (quality,
  energy, energy per part), whose tag paths are the demo's device and tag names.

The script: ``drift_at`` seconds after the start the moulding machine's drive draws half
again as much power (a worn bearing, as in the HIL scenario energy-fault); the energy
model's ``energy_anomaly`` alarm follows once the score has stayed high for 30 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.config.device import DeviceConfig
from gateway.config.models import GatewayConfig
from gateway.config.types import is_loopback
from hil.devices.mcu_node import McuNodeSimulator
from hil.devices.modbus_meter import ModbusMeterSimulator
from hil.devices.opcua_plc import OpcUaPlcSimulator
from hil.process.energy_meter import EnergyMeterModel, MachineState, MeterParams
from hil.process.injection_moulding import InjectionMouldingModel

#: the simulated machine's nodes: an OPC UA device reading them gets the simulated PLC
MACHINE_NODES = "ns=2;s=Machine."
#: the meter of the moulding machine: it runs in production and takes the scripted drift
MOULDING_METER = "imm-meter"
#: seconds after the start when the drive begins to draw more power
DRIFT_AT = 10.0
#: the drive's power in production grows by this factor over DRIFT_RAMP seconds
DRIFT_FACTOR = 1.5
DRIFT_RAMP = 3.0
PLC_TIME_SCALE = 4.0


@dataclass(slots=True)
class DemoLine:
    """The simulators started for a config, and where each device now connects."""

    meters: dict[str, ModbusMeterSimulator] = field(default_factory=dict)
    plcs: dict[str, OpcUaPlcSimulator] = field(default_factory=dict)
    nodes: dict[str, McuNodeSimulator] = field(default_factory=dict)
    #: device name -> the keys that point it at its simulator
    rewired: dict[str, dict[str, Any]] = field(default_factory=dict)
    models_dir: Path | None = None
    #: what the script does, for the view
    script: str = ""
    drift_task: asyncio.Task[None] | None = None

    def wire(self, config: GatewayConfig) -> GatewayConfig:
        """``config`` with each simulated device pointed at its simulator and the models
        folder at the shipped reference models."""
        devices = [d.model_copy(update=self.rewired[d.name]) if d.name in self.rewired else d
                   for d in config.devices]  # fmt: skip
        update: dict[str, Any] = {"devices": devices}
        if self.models_dir is not None:
            update["models"] = config.models.model_copy(
                update={"dir": self.models_dir, "watch_interval": 0.0})
        return config.model_copy(update=update)


def reference_models() -> Path:
    """The reference models shipped with the package (edge_models/reference)."""
    import edge_models

    return Path(edge_models.__file__).resolve().parent / "reference"


def model_names(config: GatewayConfig, config_dir: Path) -> list[str]:
    """The edge models the config runs (the manifests in its models folder)."""
    if not config.models.enabled:
        return []
    folder = config.models.dir if config.models.dir.is_absolute() else (
        config_dir / config.models.dir)
    from edge_models.manifest import load_manifest

    names = []
    for path in sorted(folder.glob("*.yaml")):
        with contextlib.suppress(Exception):  # the gateway says what is wrong with it
            names.append(load_manifest(path).name)
    return names


async def start_line(config: GatewayConfig, config_dir: Path, stack: AsyncExitStack,
                     drift_at: float | None = DRIFT_AT) -> DemoLine:  # fmt: skip
    """Start a simulator for each device of ``config`` that one stands in for (see the
    module docstring); they stop when ``stack`` closes."""
    line = DemoLine()
    # devices by their protocol's name: gateway/ reaches drivers only through registrations
    meters = [d for d in config.devices
              if d.protocol == "modbus_tcp" and is_loopback(getattr(d, "host", ""))]
    for i, device in enumerate(meters):
        moulding = device.name == MOULDING_METER
        params = MeterParams(initial_energy_kwh=18_250.0 + 7_300.0 * i,
                             idle_power_kw=3.0 + 2.0 * i,
                             running_power_kw=25.0 + 15.0 * i)  # fmt: skip
        model = EnergyMeterModel(seed=i + 1, params=params,
                                 time_scale=1.0 if moulding else 10.0)
        if moulding:
            model.force_state(MachineState.RUNNING)
        meter = await stack.enter_async_context(
            ModbusMeterSimulator(model, host=str(getattr(device, "host", "")), port=0))
        line.meters[device.name] = meter
        line.rewired[device.name] = {"port": meter.port}
    for i, plc_device in enumerate(_simulated_plcs(config.devices)):
        plc = await stack.enter_async_context(OpcUaPlcSimulator(
            InjectionMouldingModel(seed=10 + i, time_scale=PLC_TIME_SCALE),
            update_interval=0.1))
        line.plcs[plc_device.name] = plc
        line.rewired[plc_device.name] = {"endpoint": plc.endpoint}
    for node_device in _simulated_nodes(config.devices):
        node_id = int(getattr(node_device, "node_id", 1))
        node = await stack.enter_async_context(McuNodeSimulator(node_id, seed=20 + node_id))
        line.nodes[node_device.name] = node
        line.rewired[node_device.name] = {"port": node.serial_path}
    if config.models.enabled and not model_names(config, config_dir):  # e.g. installed
        line.models_dir = reference_models()
    moulding_meter = line.meters.get(MOULDING_METER)
    if moulding_meter is not None and drift_at is not None:
        line.drift_task = asyncio.create_task(_drift(moulding_meter, drift_at),
                                              name="demo-drift")
        stack.push_async_callback(_cancel, line.drift_task)
        line.script = (f"script: at {drift_at:g} s the drive of {MOULDING_METER} draws "
                       f"{(DRIFT_FACTOR - 1) * 100:.0f} % more power; the energy model's "
                       "alarm follows about 45 s later")
    return line


def _simulated_nodes(devices: Iterable[DeviceConfig]) -> list[DeviceConfig]:
    """MCU node devices on a serial port this machine does not have."""
    return [d for d in devices
            if d.protocol == "mcu_node" and not Path(str(getattr(d, "port", ""))).exists()]


def _simulated_plcs(devices: Iterable[DeviceConfig]) -> list[DeviceConfig]:
    """Loopback OPC UA devices whose every tag reads a node of the simulated machine."""
    out = []
    for device in devices:
        if device.protocol != "opcua":
            continue
        endpoint = str(getattr(device, "endpoint", ""))
        host = endpoint.removeprefix("opc.tcp://").split("/")[0].rsplit(":", 1)[0]
        nodes = [str(getattr(t, "node", None) or "") for t in device.tags]
        if is_loopback(host.strip("[]")) and nodes and all(
                n.startswith(MACHINE_NODES) for n in nodes):
            out.append(device)
    return out


async def _drift(meter: ModbusMeterSimulator, at: float) -> None:
    """The scripted worn bearing: the drive's running power ramps up from ``at`` s."""
    model = meter.model
    if not isinstance(model, EnergyMeterModel):
        return
    start = time.monotonic() + at
    await asyncio.sleep(at)
    base = model.params.running_power_kw
    while True:
        share = min(1.0, (time.monotonic() - start) / DRIFT_RAMP)
        model.params = dataclasses.replace(
            model.params, running_power_kw=base * (1 + (DRIFT_FACTOR - 1) * share))
        if share >= 1.0:
            return
        await asyncio.sleep(0.2)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
