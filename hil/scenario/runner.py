"""Run a scenario: broker, simulators, proxy, the gateway process, faults, verdict."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hil.broker import MqttBroker
from hil.devices.modbus_meter import ModbusMeterSimulator
from hil.devices.opcua_plc import OpcUaPlcSimulator
from hil.process.energy_meter import EnergyMeterModel, WaveformMeter, WaveformParams
from hil.process.injection_moulding import InjectionMouldingModel
from hil.recorder import TelemetryRecorder
from hil.scenario.expectations import ExpectationResult, Recording, evaluate
from hil.scenario.gateway_process import (
    GatewayProcess,
    install_models,
    meter_device_config,
    plc_device_config,
    write_gateway_config,
)
from hil.scenario.model import (
    BrokerOutage,
    DeviceDisconnect,
    DeviceRestart,
    Fault,
    GatewayKill,
    MeterDevice,
    ModbusDelay,
    ModbusException,
    NetworkCut,
    NetworkLatency,
    NetworkLoss,
    PlcSetpoint,
    Scenario,
)
from hil.scenario.proxy import FaultyProxy

__all__ = ["FaultWindow", "ScenarioResult", "run_scenario"]

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class FaultWindow:
    """When a fault was active, in seconds after the first birth."""

    label: str
    start: float
    end: float


@dataclass(slots=True)
class ScenarioResult:
    """The verdict of one scenario run and what the report shows."""

    scenario: Scenario
    file: str
    results: list[ExpectationResult] = field(default_factory=list)
    faults: list[FaultWindow] = field(default_factory=list)
    recording: Recording | None = None
    error: str | None = None
    wall_s: float = 0.0
    workdir: str = ""

    @property
    def passed(self) -> bool:
        """True when the run completed and every expectation held."""
        return self.error is None and bool(self.results) and all(r.passed for r in self.results)


class _Line:
    """The running simulated line: what faults act on."""

    def __init__(self, broker: MqttBroker, proxy: FaultyProxy, gateway: GatewayProcess) -> None:
        self.broker = broker
        self.proxy = proxy
        self.gateway = gateway
        self.meters: dict[str, ModbusMeterSimulator] = {}
        self.plcs: dict[str, OpcUaPlcSimulator] = {}


def _label(fault: Fault) -> str:
    device = getattr(fault, "device", None)
    return fault.action + (f" {device}" if device else "")


async def _apply(fault: Fault, line: _Line) -> float:
    """Start a fault, hold it for its duration, end it; return how long it lasted."""
    began = time.monotonic()
    match fault:
        case BrokerOutage():
            await asyncio.to_thread(line.broker.stop)
            await asyncio.sleep(fault.duration)
            await asyncio.to_thread(line.broker.start)
        case NetworkCut():
            line.proxy.cut = True
            await asyncio.sleep(fault.duration)
            line.proxy.cut = False
        case NetworkLatency():
            line.proxy.latency = fault.latency
            await asyncio.sleep(fault.duration)
            line.proxy.latency = 0.0
        case NetworkLoss():
            line.proxy.loss = fault.probability
            await asyncio.sleep(fault.duration)
            line.proxy.loss = 0.0
        case ModbusException():
            line.meters[fault.device].inject_exception(fault.code)
            await asyncio.sleep(fault.duration)
            line.meters[fault.device].inject_exception(None)
        case ModbusDelay():
            line.meters[fault.device].response_delay = fault.delay
            await asyncio.sleep(fault.duration)
            line.meters[fault.device].response_delay = 0.0
        case DeviceRestart():
            sim: Any = line.meters.get(fault.device) or line.plcs[fault.device]
            await sim.restart(downtime_s=fault.downtime)
        case DeviceDisconnect():
            device: Any = line.meters.get(fault.device) or line.plcs[fault.device]
            device.drop_connections()
        case PlcSetpoint():
            model = line.plcs[fault.device].model
            if fault.melt_setpoint is not None:
                model.set_melt_setpoint(fault.melt_setpoint)
            if fault.hold_time is not None:
                model.set_hold_time(fault.hold_time)
        case GatewayKill():
            await line.gateway.stop(signal.SIGKILL)
            await asyncio.sleep(fault.downtime)
            await line.gateway.start()
    return time.monotonic() - began


async def _start_devices(
    scenario: Scenario, stack: AsyncExitStack, line: _Line
) -> list[dict[str, Any]]:
    configs: list[dict[str, Any]] = []
    now = time.time()
    for i, dev in enumerate(scenario.devices):
        seed = scenario.seed + i
        if isinstance(dev, MeterDevice):
            model: Any = (
                WaveformMeter(
                    WaveformParams(t0=now, period_s=dev.period_s, time_scale=scenario.time_scale)
                )
                if dev.mode == "waveform"
                else EnergyMeterModel(seed=seed, t0=now, time_scale=scenario.time_scale)
            )
            meter = await stack.enter_async_context(ModbusMeterSimulator(model, port=0))
            line.meters[dev.name] = meter
            configs.append(
                meter_device_config(dev.name, meter.port, dev.poll_interval, dev.timeout)
            )
        else:
            plc_model = InjectionMouldingModel(seed=seed, t0=now, time_scale=scenario.time_scale)
            plc = await stack.enter_async_context(
                OpcUaPlcSimulator(plc_model, update_interval=0.05)
            )
            line.plcs[dev.name] = plc
            configs.append(plc_device_config(dev.name, plc.endpoint, dev.publishing_interval))
    return configs


async def run_scenario(
    scenario: Scenario,
    file: str = "",
    workdir: Path | None = None,
    progress: Progress | None = None,
) -> ScenarioResult:
    """Run ``scenario`` end to end and evaluate its expectations. Never raises for a failing
    scenario: infrastructure errors land in ``result.error``. Child processes always end."""
    say = progress or (lambda msg: log.info("%s", msg))
    result = ScenarioResult(scenario, file)
    began = time.monotonic()
    own_tmp = workdir is None
    folder = Path(tempfile.mkdtemp(prefix=f"hil-{scenario.name}-")) if own_tmp else workdir
    assert folder is not None
    folder.mkdir(parents=True, exist_ok=True)
    result.workdir = str(folder)
    recorder: TelemetryRecorder | None = None
    t0 = time.time()
    try:
        async with AsyncExitStack() as stack:
            broker = MqttBroker(kind="auto", persistence=True, workdir=folder / "broker")
            await asyncio.to_thread(broker.start)
            stack.push_async_callback(asyncio.to_thread, broker.stop)
            say(f"broker {broker.kind} on {broker.url}")
            recorder = TelemetryRecorder(
                broker.host, broker.port, client_id=f"hil-{scenario.name}", persistent=True
            )
            await asyncio.to_thread(recorder.start)
            stack.callback(recorder.stop)
            proxy = await FaultyProxy(broker.host, broker.port, seed=scenario.seed).start()
            stack.push_async_callback(proxy.stop)
            line = _Line(broker, proxy, GatewayProcess(folder / "gateway.yaml"))
            devices = await _start_devices(scenario, stack, line)
            say(f"{len(devices)} simulated devices up")
            write_gateway_config(
                folder,
                scenario.name,
                proxy.port,
                devices,
                scenario.publish_interval,
                install_models(folder, scenario),
            )
            stack.push_async_callback(line.gateway.stop)
            await line.gateway.start()
            say(f"gateway started (pid {line.gateway.proc.pid if line.gateway.proc else '?'})")
            if not await recorder.until(lambda s: bool(s.births), timeout=scenario.startup_timeout):
                raise RuntimeError(
                    f"no birth within {scenario.startup_timeout:g} s; gateway log:\n"
                    + line.gateway.log_path.read_text(errors="replace")[-2000:]
                )
            t0 = time.time()
            say("first birth received: timeline starts")
            await _run_timeline(scenario, line, result, say)
            say("stopping the gateway (SIGTERM, spool drained)")
            await line.gateway.stop(signal.SIGTERM)
            await recorder.until(
                lambda s: any(d.get("reason") == "shutdown" for d in s.deaths), timeout=10
            )
            await asyncio.sleep(0.3)
    except Exception as exc:
        log.exception("scenario %s failed to run", scenario.name)
        result.error = f"{type(exc).__name__}: {exc}"
    if recorder is not None:
        snap = recorder.snapshot()
        result.recording = Recording(t0, snap.births, snap.deaths, snap.data_messages, snap.samples)
        if result.error is None:
            result.results = [evaluate(exp, result.recording) for exp in scenario.expect]
    result.wall_s = time.monotonic() - began
    return result


async def _run_timeline(
    scenario: Scenario, line: _Line, result: ScenarioResult, say: Progress
) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(fault: Fault) -> None:
        await asyncio.sleep(max(0.0, start + fault.at - loop.time()))
        say(f"t={fault.at:5.1f} s  fault: {_label(fault)}")
        began = loop.time() - start
        await _apply(fault, line)
        ended = loop.time() - start
        result.faults.append(FaultWindow(_label(fault), began, max(ended, began + 0.2)))
        say(f"t={ended:5.1f} s  fault over: {_label(fault)}")

    tasks = [asyncio.create_task(one(f)) for f in scenario.faults]
    try:
        await asyncio.sleep(scenario.duration)
        if tasks:
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
