"""Run a scenario: broker, simulators, proxy, the gateway process, faults, verdict."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.plural import plural
from hil.broker import MqttBroker
from hil.devices.dlt645_meter import Dlt645Line, SimMeter, meter_address
from hil.devices.fins_plc import FinsPlcSimulator
from hil.devices.mc_plc import McPlcSimulator
from hil.devices.mcu_node import McuNodeSimulator
from hil.devices.modbus_dtu import DtuSimulator
from hil.devices.modbus_meter import ModbusMeterSimulator
from hil.devices.opcua_plc import OpcUaPlcSimulator
from hil.devices.s7_plc import S7PlcSimulator
from hil.devices.scale import ScaleSimulator
from hil.netutil import free_port
from hil.process.energy_meter import EnergyMeterModel, WaveformMeter, WaveformParams
from hil.process.injection_moulding import InjectionMouldingModel
from hil.recorder import TelemetryRecorder
from hil.scenario.commands import BrainClient, CommandRecord
from hil.scenario.expectations import ExpectationResult, Recording, evaluate
from hil.scenario.firmware import FirmwareRecord, run_firmware_update
from hil.scenario.gateway_process import (
    GatewayProcess,
    dlt645_device_config,
    fins_device_config,
    install_models,
    mc_device_config,
    mcu_node_device_config,
    meter_device_config,
    plc_device_config,
    s7_device_config,
    scale_device_config,
    write_gateway_config,
)
from hil.scenario.model import (
    AnswerDelay,
    BadAnswers,
    BrokerOutage,
    Command,
    DeviceDisconnect,
    DeviceRestart,
    DeviceSilence,
    Dlt645MeterDevice,
    DtuBadAnswers,
    DtuRedial,
    Fault,
    FinsBadAnswers,
    FinsDelay,
    FinsEndCode,
    FinsPlcDevice,
    FirmwareUpdate,
    GatewayKill,
    McBadAnswers,
    McDelay,
    McEndCode,
    McPlcDevice,
    McuNodeDevice,
    MeterDevice,
    MeterError,
    ModbusDelay,
    ModbusException,
    NetworkCut,
    NetworkLatency,
    NetworkLoss,
    PartialLine,
    PlcSetpoint,
    S7PlcDevice,
    S7PutGetOff,
    ScaleDevice,
    Scenario,
    SerialGarbage,
    WrongBaud,
)
from hil.scenario.proxy import FaultyProxy
from hil.scenario.resources import ResourceSample, sample_resources
from hil.scenario.timeline import TimelineEntry, TimelinePlayer, describe_entry

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
    resources: list[ResourceSample] = field(default_factory=list)
    commands: list[CommandRecord] = field(default_factory=list)
    firmware: list[FirmwareRecord] = field(default_factory=list)

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
        #: the DTUs of the meters behind one (transport: dtu), by device name
        self.dtus: dict[str, DtuSimulator] = {}
        #: the moulding machines, on OPC UA or S7 (both have model, restart, drop_connections)
        self.plcs: dict[str, OpcUaPlcSimulator | S7PlcSimulator] = {}
        self.fins_plcs: dict[str, FinsPlcSimulator] = {}
        self.mc_plcs: dict[str, McPlcSimulator] = {}
        self.nodes: dict[str, McuNodeSimulator] = {}
        self.scales: dict[str, ScaleSimulator] = {}
        #: DL/T 645 meters by device name, and the line each is on
        self.dlt645: dict[str, SimMeter] = {}
        self.dlt645_lines: dict[str, Dlt645Line] = {}
        self.brain: BrainClient | None = None
        self.commands: list[CommandRecord] = []
        self.firmware: list[FirmwareRecord] = []
        #: the gateway's local API (``http://127.0.0.1:PORT``) when a firmware update needs it
        self.api_url: str | None = None
        self.t0 = time.time()
        """Epoch seconds of the first birth: scenario time zero."""

    def clock(self) -> float:
        """Scenario seconds."""
        return time.time() - self.t0

    def models(self) -> dict[str, Any]:
        """Process models by device name (what the timeline moves)."""
        found: dict[str, Any] = {name: m.model for name, m in self.meters.items()}
        found |= {name: m.model for name, m in self.dlt645.items()}
        found |= {name: plc.model for name, plc in self.fins_plcs.items()}
        found |= {name: plc.model for name, plc in self.mc_plcs.items()}
        return found | {name: plc.model for name, plc in self.plcs.items()}

    def device_value(self, tag: str) -> float | bool | None:
        """What the simulated device holds for a writable ``device.tag``."""
        device, _, name = tag.partition(".")
        if device in self.meters:
            try:
                return self.meters[device].get_value(name)  # type: ignore[no-any-return]
            except (KeyError, ValueError):
                return None
        if device in self.mc_plcs:
            value = self.mc_plcs[device].get_value(name) if name in (
                "hold_time", "melt_setpoint") else None
            return None if isinstance(value, str) else value
        if device in self.plcs or device in self.fins_plcs:
            model = (self.plcs[device] if device in self.plcs else self.fins_plcs[device]).model
            assert model is not None
            return {"hold_time": model.hold_time, "melt_setpoint": model.melt_setpoint}.get(name)
        return None


def _label(fault: Fault) -> str:
    device = getattr(fault, "device", None)
    label = fault.action + (f" {device}" if device else "")
    if isinstance(fault, FirmwareUpdate):
        label += f" -> {fault.version}" + (" (bad image)" if fault.bad else "")
    return label


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
        case DeviceSilence() if fault.device in line.dlt645:
            meter = line.dlt645[fault.device]
            meter.silent = True
            await asyncio.sleep(fault.duration)
            meter.silent = False
        case SerialGarbage() if fault.device in line.dlt645:
            wire = line.dlt645_lines[fault.device]
            await _repeat(lambda: wire.inject_garbage(fault.bytes), fault.every, fault.duration)
        case MeterError():
            line.dlt645[fault.device].error_byte = fault.error
            await asyncio.sleep(fault.duration)
            line.dlt645[fault.device].error_byte = None
        case AnswerDelay():
            line.dlt645[fault.device].delay = fault.delay
            await asyncio.sleep(fault.duration)
            line.dlt645[fault.device].delay = 0.0
        case BadAnswers():
            spoiled = line.dlt645[fault.device]

            def spoil() -> None:
                spoiled.bad_answers[fault.kind] += 1

            await _repeat(spoil, fault.every, fault.duration)
            spoiled.bad_answers[fault.kind] = 0
        case DtuRedial():
            line.dtus[fault.device].redial(leave_old_open=not fault.close_old)
        case DtuBadAnswers():
            dtu = line.dtus[fault.device]
            spoil = {"heartbeat": "heartbeat_inside_answers", "garbage": "garbage_before_answers",
                     "half": "half_answers"}[fault.answer]

            def spoil_one() -> None:
                setattr(dtu, spoil, getattr(dtu, spoil) + 1)

            await _repeat(spoil_one, fault.every, fault.duration)
            setattr(dtu, spoil, 0)
        case DeviceDisconnect() if fault.device in line.dtus:
            line.dtus[fault.device].hang_up()
        case DeviceRestart() | DeviceDisconnect() if fault.device in line.scales:
            scale = line.scales[fault.device]
            scale.unplug()  # a scale restart is a power cycle: the port goes, then comes back
            down = fault.downtime if isinstance(fault, DeviceRestart) else fault.duration
            await asyncio.sleep(2.0 if down is None else down)
            scale.replug()
        case FinsEndCode():
            line.fins_plcs[fault.device].end_code = fault.code
            await asyncio.sleep(fault.duration)
            line.fins_plcs[fault.device].end_code = None
        case FinsDelay():
            line.fins_plcs[fault.device].response_delay = fault.delay
            await asyncio.sleep(fault.duration)
            line.fins_plcs[fault.device].response_delay = 0.0
        case FinsBadAnswers():
            fins = line.fins_plcs[fault.device]
            bad = "garbage" if fault.answer == "garbage" else "half_frames"
            setattr(fins, bad, True)
            await asyncio.sleep(fault.duration)
            setattr(fins, bad, False)
        case DeviceSilence() if fault.device in line.fins_plcs:
            line.fins_plcs[fault.device].silent = True
            await asyncio.sleep(fault.duration)
            line.fins_plcs[fault.device].silent = False
        case McEndCode():
            line.mc_plcs[fault.device].end_code = fault.code
            await asyncio.sleep(fault.duration)
            line.mc_plcs[fault.device].end_code = None
        case McDelay():
            line.mc_plcs[fault.device].response_delay = fault.delay
            await asyncio.sleep(fault.duration)
            line.mc_plcs[fault.device].response_delay = 0.0
        case McBadAnswers():
            plc = line.mc_plcs[fault.device]
            bad = "garbage_answers" if fault.answer == "garbage" else "half_answers"
            setattr(plc, bad, 1_000_000)  # every answer while it lasts
            await asyncio.sleep(fault.duration)
            setattr(plc, bad, 0)
        case DeviceSilence() if fault.device in line.mc_plcs:
            line.mc_plcs[fault.device].silent = True
            await asyncio.sleep(fault.duration)
            line.mc_plcs[fault.device].silent = False
        case DeviceRestart() if fault.device in line.nodes:
            line.nodes[fault.device].silent = True
            await asyncio.sleep(fault.downtime)
            line.nodes[fault.device].silent = False
            line.nodes[fault.device].reboot()
        case DeviceRestart():
            sim: Any = (line.meters.get(fault.device) or line.fins_plcs.get(fault.device)
                        or line.mc_plcs.get(fault.device)
                        or line.plcs[fault.device])
            await sim.restart(downtime_s=fault.downtime)
        case DeviceDisconnect() if fault.device in line.nodes:
            line.nodes[fault.device].line.cut = True
            await asyncio.sleep(2.0 if fault.duration is None else fault.duration)
            line.nodes[fault.device].line.cut = False
        case DeviceDisconnect():
            device: Any = (line.meters.get(fault.device) or line.fins_plcs.get(fault.device)
                           or line.mc_plcs.get(fault.device)
                           or line.plcs[fault.device])
            device.drop_connections()
        case SerialGarbage():
            target: Any = line.nodes.get(fault.device) or line.scales[fault.device]
            await _repeat(lambda: target.inject_garbage(fault.bytes), fault.every, fault.duration)
        case PartialLine():
            scale = line.scales[fault.device]
            await _repeat(scale.send_partial_line, fault.every, fault.duration)
        case WrongBaud():
            line.scales[fault.device].wrong_baud = fault.baudrate
            await asyncio.sleep(fault.duration)
            line.scales[fault.device].wrong_baud = None
        case DeviceSilence():
            hung: Any = line.nodes.get(fault.device) or line.scales[fault.device]
            hung.silent = True
            await asyncio.sleep(fault.duration)
            hung.silent = False
        case FirmwareUpdate():
            await _firmware_update(fault, line)
        case Command():
            await _command(fault, line)
        case PlcSetpoint():
            model = (line.fins_plcs[fault.device].model if fault.device in line.fins_plcs
                     else line.mc_plcs[fault.device].model if fault.device in line.mc_plcs
                     else line.plcs[fault.device].model)
            assert model is not None
            if fault.melt_setpoint is not None:
                model.set_melt_setpoint(fault.melt_setpoint)
            if fault.hold_time is not None:
                model.set_hold_time(fault.hold_time)
        case S7PutGetOff():
            s7 = line.plcs[fault.device]
            assert isinstance(s7, S7PlcSimulator)
            s7.put_get = False
            await asyncio.sleep(fault.duration)
            s7.put_get = True
        case GatewayKill():
            await line.gateway.stop(signal.SIGKILL)
            await asyncio.sleep(fault.downtime)
            await line.gateway.start()
    return time.monotonic() - began


async def _repeat(act: Callable[[], object], every: float, duration: float) -> None:
    """``act()`` now and every ``every`` s while ``duration`` lasts."""
    end = time.monotonic() + duration
    while True:
        act()
        if time.monotonic() + every > end:
            break
        await asyncio.sleep(every)


async def _firmware_update(fault: FirmwareUpdate, line: _Line) -> None:
    """Update the node through the gateway's local API while the line keeps producing."""
    assert line.api_url is not None
    record = FirmwareRecord(fault.name, fault.device, fault.version, fault.bad, line.clock())
    line.firmware.append(record)
    await run_firmware_update(record, line.api_url, fault.size, line.clock)


async def _command(fault: Command, line: _Line) -> None:
    """Publish the command as the brain would, wait for its answer, read the device."""
    assert line.brain is not None
    record = CommandRecord(
        fault.name, f"{fault.name}-{uuid.uuid4().hex[:12]}", fault.tag, fault.value, line.clock()
    )
    line.commands.append(record)
    await asyncio.to_thread(line.brain.send, record.id, fault.tag, fault.value)
    answer = await line.brain.answer(record.id, timeout=15.0)
    if answer is not None:
        record.result, record.answered_at = answer[0], answer[1] - line.t0
    record.device_value = line.device_value(fault.tag)


async def _start_devices(
    scenario: Scenario, stack: AsyncExitStack, line: _Line
) -> list[dict[str, Any]]:
    configs: list[dict[str, Any]] = []
    now = time.time()
    writable = any(isinstance(f, Command) for f in scenario.faults)
    for i, dev in enumerate(scenario.devices):
        seed = scenario.seed + i
        if isinstance(dev, Dlt645MeterDevice):
            if dev.line is None:
                configs += await _start_dlt645_line(scenario, dev, stack, line, now)
            continue
        if isinstance(dev, ScaleDevice):
            scale = await stack.enter_async_context(
                ScaleSimulator(dev.mode, rate=dev.rate, seed=seed)
            )
            line.scales[dev.name] = scale
            configs.append(scale_device_config(
                dev.name, scale.serial_path, dev.mode, dev.poll_interval, dev.stale_after
            ))
        elif isinstance(dev, FinsPlcDevice):
            fins_model = InjectionMouldingModel(seed=seed, t0=now,
                                                time_scale=scenario.time_scale)
            fins_plc = await stack.enter_async_context(FinsPlcSimulator(
                fins_model, tcp=dev.transport == "tcp", udp=dev.transport == "udp"))
            line.fins_plcs[dev.name] = fins_plc
            configs.append(fins_device_config(dev.name, fins_plc.port, dev.transport,
                                              dev.poll_interval, dev.timeout, writable))
        elif isinstance(dev, McPlcDevice):
            mc_model = InjectionMouldingModel(seed=seed, t0=now, time_scale=scenario.time_scale)
            mc_plc = await stack.enter_async_context(
                McPlcSimulator(mc_model, series=dev.series, transports=(dev.transport,))
            )
            line.mc_plcs[dev.name] = mc_plc
            configs.append(mc_device_config(
                dev.name, mc_plc.port, dev.series, dev.transport, dev.frame, dev.poll_interval,
                dev.timeout, writable,
            ))
        elif isinstance(dev, McuNodeDevice):
            node = await stack.enter_async_context(McuNodeSimulator(dev.node_id, seed=seed))
            line.nodes[dev.name] = node
            configs.append(
                mcu_node_device_config(dev.name, node.serial_path, dev.node_id, dev.stale_after)
            )
        elif isinstance(dev, MeterDevice):
            model: Any = (
                WaveformMeter(
                    WaveformParams(t0=now, period_s=dev.period_s, time_scale=scenario.time_scale)
                )
                if dev.mode == "waveform"
                else EnergyMeterModel(seed=seed, t0=now, time_scale=scenario.time_scale)
            )
            configs.append(await _start_meter(dev, model, stack, line, writable))
        elif isinstance(dev, S7PlcDevice):
            s7_model = InjectionMouldingModel(seed=seed, t0=now, time_scale=scenario.time_scale)
            s7 = await stack.enter_async_context(S7PlcSimulator(s7_model, port=0, cpu=dev.cpu))
            line.plcs[dev.name] = s7
            configs.append(s7_device_config(dev.name, s7.port, s7.profile.slot,
                                            dev.poll_interval, dev.timeout, writable))
        else:
            plc_model = InjectionMouldingModel(seed=seed, t0=now, time_scale=scenario.time_scale)
            plc = await stack.enter_async_context(
                OpcUaPlcSimulator(plc_model, update_interval=0.05)
            )
            line.plcs[dev.name] = plc
            configs.append(
                plc_device_config(dev.name, plc.endpoint, dev.publishing_interval, writable)
            )
    return configs


async def _start_meter(dev: MeterDevice, model: Any, stack: AsyncExitStack, line: _Line,
                       writable: bool) -> dict[str, Any]:
    """The meter on its transport (behind a DTU dialling the gateway for ``dtu``)."""
    transport = "rtu_over_tcp" if dev.transport == "dtu" else dev.transport
    meter = await stack.enter_async_context(
        ModbusMeterSimulator(model, port=0, transport=transport))
    line.meters[dev.name] = meter
    where: int | str = meter.serial_path if transport == "ascii" else meter.port
    packets = None
    if dev.transport == "dtu":
        where = free_port()
        registration = f"DTU-{dev.name}"
        dtu = await stack.enter_async_context(DtuSimulator(
            "127.0.0.1", where, meter=meter, registration=registration.encode(),
            heartbeat=b"\xfe\xfe", heartbeat_interval=1.0))
        line.dtus[dev.name] = dtu
        packets = {"registration_packet": {"ascii": registration},
                   "heartbeat_packet": {"hex": "FE FE"}}
    return meter_device_config(dev.name, where, dev.poll_interval, dev.timeout, writable,
                               transport=dev.transport, dtu=packets)


async def _start_dlt645_line(scenario: Scenario, first: Dlt645MeterDevice,
                             stack: AsyncExitStack, line: _Line, now: float
                             ) -> list[dict[str, Any]]:
    """Start ``first``'s line with every meter on it (those naming it in ``line``)."""
    members = [(i, d) for i, d in enumerate(scenario.devices) if isinstance(d, Dlt645MeterDevice)
               and (d is first or d.line == first.name)]
    meters = []
    for i, dev in members:
        model = EnergyMeterModel(seed=scenario.seed + i, t0=now, time_scale=scenario.time_scale)
        meter = SimMeter(dev.address or meter_address(i), model, dev.version)
        line.dlt645[dev.name] = meter
        meters.append(meter)
    wire = await stack.enter_async_context(
        Dlt645Line(meters, transport=first.transport, seed=scenario.seed))
    configs = []
    for (_, dev), meter in zip(members, meters, strict=True):
        line.dlt645_lines[dev.name] = wire
        where: str | int = wire.port if first.transport == "tcp" else wire.serial_path
        configs.append(dlt645_device_config(dev.name, where, meter.address, dev.version,
                                            dev.poll_interval, dev.timeout))
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
    line: _Line | None = None
    recorder: TelemetryRecorder | None = None
    t0 = time.time()
    try:
        async with AsyncExitStack() as stack:
            broker = MqttBroker(kind="auto", persistence=True, workdir=folder / "broker")
            await asyncio.to_thread(broker.start)
            stack.push_async_callback(asyncio.to_thread, broker.stop)
            say(f"broker {broker.kind} on {broker.url}")
            sparkplug = scenario.northbound.format == "sparkplug"
            recorder = TelemetryRecorder(
                broker.host,
                broker.port,
                topic_root="spBv1.0" if sparkplug else "chenxing/v1",
                client_id=f"hil-{scenario.name}",
                persistent=True,
            )
            await asyncio.to_thread(recorder.start)
            stack.callback(recorder.stop)
            proxy = await FaultyProxy(broker.host, broker.port, seed=scenario.seed).start()
            stack.push_async_callback(proxy.stop)
            line = _Line(broker, proxy, GatewayProcess(folder / "gateway.yaml"))
            devices = await _start_devices(scenario, stack, line)
            say(f"{plural(len(devices), 'simulated device')} up")
            http_port: int | None = None
            if any(isinstance(f, FirmwareUpdate) for f in scenario.faults):
                http_port = free_port()
                line.api_url = f"http://127.0.0.1:{http_port}"
            write_gateway_config(
                folder,
                scenario.name,
                proxy.port,
                devices,
                scenario.publish_interval,
                install_models(folder, scenario),
                commands=any(isinstance(f, Command) for f in scenario.faults),
                http_port=http_port,
                northbound_format=scenario.northbound.format,
                data_qos=scenario.northbound.data_qos,
            )
            stack.push_async_callback(line.gateway.stop)
            await line.gateway.start()
            say(f"gateway started (pid {line.gateway.proc.pid if line.gateway.proc else '?'})")
            if not await recorder.until(lambda s: bool(s.births), timeout=scenario.startup_timeout):
                raise RuntimeError(
                    f"no birth within {scenario.startup_timeout:g} s; gateway log:\n"
                    + line.gateway.log_path.read_text(errors="replace")[-2000:]
                )
            t0 = line.t0 = time.time()
            say("first birth received: timeline starts")
            if any(isinstance(f, Command) for f in scenario.faults):
                gateway_id = f"hil-{scenario.name}"[:60]
                line.brain = BrainClient(
                    broker.host, broker.port, f"chenxing/v1/hil/line-1/{gateway_id}"
                )
                await asyncio.to_thread(line.brain.start)
                stack.callback(line.brain.stop)
            sampler = asyncio.create_task(
                sample_resources(
                    lambda: (line.gateway.runs, line.gateway.proc.pid)
                    if line.gateway.running and line.gateway.proc else None,
                    line.clock,
                    result.resources,
                    scenario.resource_interval,
                )
            )
            stack.push_async_callback(_cancel, sampler)
            await _run_timeline(scenario, line, result, say)
            say("stopping the gateway (SIGTERM, spool drained)")
            await line.gateway.stop(signal.SIGTERM)
            await recorder.until(  # a Sparkplug NDEATH carries no reason
                lambda s: any(sparkplug or d.get("reason") == "shutdown" for d in s.deaths),
                timeout=10,
            )
            await asyncio.sleep(0.3)
    except Exception as exc:
        log.exception("scenario %s failed to run", scenario.name)
        result.error = f"{type(exc).__name__}: {exc}"
    if line is not None:
        result.commands = line.commands
        result.firmware = line.firmware
    if recorder is not None:
        snap = recorder.snapshot()
        result.recording = Recording(
            t0,
            snap.births,
            snap.deaths,
            snap.data_messages,
            snap.samples,
            result.resources,
            result.commands,
            snap.events,
            result.firmware,
            snap.devices,
        )
        if result.error is None:
            result.results = [evaluate(exp, result.recording) for exp in scenario.expect]
    result.wall_s = time.monotonic() - began
    return result


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(BaseException):
        await task


def scheduled(scenario: Scenario) -> tuple[list[Fault], list[TimelineEntry]]:
    """The faults and timeline entries that start before the end, repeated every
    ``repeat_every`` seconds when the scenario asks for it (soak)."""
    faults: list[Fault] = []
    entries: list[TimelineEntry] = []
    period = scenario.repeat_every
    offset = 0.0
    while offset < scenario.duration:
        faults += [f.model_copy(update={"at": f.at + offset}) for f in scenario.faults
                   if f.at + offset < scenario.duration]  # fmt: skip
        entries += [e.model_copy(update={"at": e.at + offset}) for e in scenario.timeline
                    if e.at + offset < scenario.duration]  # fmt: skip
        if period is None:
            break
        offset += period
    return faults, entries


async def _run_timeline(
    scenario: Scenario, line: _Line, result: ScenarioResult, say: Progress
) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    faults, entries = scheduled(scenario)
    player = TimelinePlayer(
        line.models(), lambda: loop.time() - start, scenario.duration, scenario.seed
    )

    async def one(fault: Fault) -> None:
        await asyncio.sleep(max(0.0, start + fault.at - loop.time()))
        say(f"t={fault.at:5.1f} s  fault: {_label(fault)}")
        began = loop.time() - start
        await _apply(fault, line)
        ended = loop.time() - start
        result.faults.append(FaultWindow(_label(fault), began, max(ended, began + 0.2)))
        say(f"t={ended:5.1f} s  fault over: {_label(fault)}")

    async def step(index: int, entry: TimelineEntry) -> None:
        await asyncio.sleep(max(0.0, start + entry.at - loop.time()))
        say(f"t={entry.at:5.1f} s  timeline: {describe_entry(entry)}")
        began = loop.time() - start
        await player.play(entry, index)
        ended = loop.time() - start
        result.faults.append(FaultWindow(describe_entry(entry), began, max(ended, began + 0.2)))

    tasks = [asyncio.create_task(one(f)) for f in faults]
    tasks += [asyncio.create_task(step(i, e)) for i, e in enumerate(entries)]
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
