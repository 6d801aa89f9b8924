"""Scenario files: the simulated line, faults at given times, and expectations (pydantic)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.config.yaml_model import validate_yaml_text
from gateway.errors import ConfigError, ConfigProblem
from hil.scenario.timeline import TIMELINE_KINDS, TimelineEntry, parameter_names

__all__ = ["Scenario", "load_scenario", "scenario_files"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Seconds = Annotated[float, Field(ge=0)]


class MeterDevice(_Strict):
    """The energy meter on Modbus: over TCP, UDP, ASCII on a pty, RTU through a serial
    device server (``rtu_over_tcp``), or RTU behind a 4G DTU that dials the gateway
    (``dtu``: registration packet ``DTU-<name>``, heartbeat FE FE every second)."""

    kind: Literal["modbus_meter"]
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    transport: Literal["tcp", "udp", "ascii", "rtu_over_tcp", "dtu"] = "tcp"
    mode: Literal["process", "waveform"] = "process"
    period_s: float = Field(default=60.0, gt=0, description="waveform period (model seconds)")
    poll_interval: str = "100ms"
    timeout: str = "500ms"


class PlcDevice(_Strict):
    """The injection-moulding PLC on OPC UA (subscription mode)."""

    kind: Literal["opcua_plc"]
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    publishing_interval: str = "100ms"


class S7PlcDevice(_Strict):
    """The injection-moulding machine on a Siemens S7 PLC (S7comm over ISO-on-TCP, polled)."""

    kind: Literal["s7_plc"]
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    cpu: Literal["s7-1200", "s7-1500", "s7-300", "s7-200smart"] = "s7-1200"
    poll_interval: str = "100ms"
    timeout: str = "500ms"


class McuNodeDevice(_Strict):
    """An MCU sensor node (vibration, temperature, humidity) on a pty serial link."""

    kind: Literal["mcu_node"]
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    node_id: int = Field(default=1, ge=0, le=0xFFFE)
    stale_after: str = Field(default="2s", description="no good frame this long: device down")


class ScaleDevice(_Strict):
    """A weighing scale printing ``ST,GS,+0012.345 kg`` lines on a pty (``serial_line``)."""

    kind: Literal["scale"]
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    mode: Literal["stream", "poll"] = "stream"
    rate: float = Field(default=10.0, gt=0, le=1000, description="stream mode: lines per second")
    poll_interval: str = Field(default="100ms", description="poll mode: how often to ask")
    stale_after: str = Field(default="1s", description="no valid line this long: device down")


class Dlt645MeterDevice(_Strict):
    """A DL/T 645 energy meter fed by the energy-meter model: on an RS-485 pty (meters
    sharing one line name its first device in ``line``), or behind a simulated serial
    device server (``transport: tcp``). Tags: voltage, current, active_power (kW),
    power_factor, energy_import (kWh), machine_state (a vendor identifier), and with
    2007 frequency and temperature."""

    kind: Literal["dlt645_meter"]
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    transport: Literal["serial", "tcp"] = "serial"
    address: str | None = Field(default=None, pattern=r"^[0-9]{12}$",
                                description="default: 0000000000NN, NN its place in devices")
    version: Literal[2007, 1997] = 2007
    line: str | None = Field(default=None, description="an earlier dlt645_meter device whose "
                             "line (pty or serial device server) this meter shares")
    poll_interval: str = "500ms"
    timeout: str = "300ms"


class FinsPlcDevice(_Strict):
    """The injection-moulding PLC as an Omron CJ2 on FINS (polled, over UDP or TCP)."""

    kind: Literal["fins_plc"]
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    transport: Literal["udp", "tcp"] = "tcp"
    poll_interval: str = "100ms"
    timeout: str = "300ms"


class McPlcDevice(_Strict):
    """The injection-moulding PLC as a MELSEC CPU on the MC protocol (SLMP, polled)."""

    kind: Literal["mc_plc"]
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    series: Literal["q", "iq-r", "iq-f"] = "iq-f"
    transport: Literal["tcp", "udp"] = "tcp"
    frame: Literal["3e", "4e"] = "3e"
    poll_interval: str = "100ms"
    timeout: str = "300ms"


Device = Annotated[
    MeterDevice | PlcDevice | S7PlcDevice | McuNodeDevice | ScaleDevice | Dlt645MeterDevice
    | FinsPlcDevice | McPlcDevice,
    Field(discriminator="kind"),
]


class _Fault(_Strict):
    at: Seconds = Field(description="seconds after the gateway's first birth")


class BrokerOutage(_Fault):
    action: Literal["broker_outage"]
    duration: Seconds = 2.0


class NetworkCut(_Fault):
    action: Literal["network_cut"]
    duration: Seconds = 2.0


class NetworkLatency(_Fault):
    action: Literal["network_latency"]
    duration: Seconds = 2.0
    latency: Seconds = Field(description="added one-way delay, seconds")


class NetworkLoss(_Fault):
    action: Literal["network_loss"]
    duration: Seconds = 2.0
    probability: float = Field(ge=0, le=1, description="chance per TCP chunk of a reset")


class ModbusException(_Fault):
    action: Literal["modbus_exception"]
    device: str
    code: int = Field(default=6, ge=1, le=11)
    duration: Seconds = 2.0


class ModbusDelay(_Fault):
    action: Literal["modbus_delay"]
    device: str
    delay: Seconds
    duration: Seconds = 2.0


class MeterError(_Fault):
    """A DL/T 645 meter answers every read with an exception frame carrying ``error``
    (its error byte: 1 other error, 2 no data requested, 4 password wrong)."""

    action: Literal["meter_error"]
    device: str
    error: int = Field(default=1, ge=1, le=255)
    duration: Seconds = 2.0


class AnswerDelay(_Fault):
    """A DL/T 645 meter answers ``delay`` seconds late (past the timeout: answers are lost)."""

    action: Literal["answer_delay"]
    device: str
    delay: Seconds
    duration: Seconds = 2.0


class McEndCode(_Fault):
    """The MELSEC CPU answers every request with end code ``code`` (e.g. 0xC056)."""

    action: Literal["mc_end_code"]
    device: str
    code: int = Field(default=0xC056, ge=1, le=0xFFFF)
    duration: Seconds = 2.0


class McDelay(_Fault):
    """The MELSEC CPU answers every request ``delay`` seconds late."""

    action: Literal["mc_delay"]
    device: str
    delay: Seconds
    duration: Seconds = 2.0


class BadAnswers(_Fault):
    """A DL/T 645 meter spoils one answer every ``every`` s: a wrong ``checksum``, ``half``
    a frame, or a data byte short (``length``)."""

    action: Literal["bad_answers"]
    device: str
    kind: Literal["checksum", "half", "length"] = "checksum"
    every: float = Field(default=0.5, gt=0)
    duration: Seconds = 2.0


class FinsEndCode(_Fault):
    """The Omron PLC answers every memory command with end code ``code`` (e.g. 0x1103)."""

    action: Literal["fins_end_code"]
    device: str
    code: int = Field(default=0x1103, ge=1, le=0xFFFF)
    duration: Seconds = 2.0


class FinsDelay(_Fault):
    """The Omron PLC answers every command ``delay`` seconds late."""

    action: Literal["fins_delay"]
    device: str
    delay: Seconds
    duration: Seconds = 2.0


class FinsBadAnswers(_Fault):
    """The Omron PLC answers with random bytes (``garbage``) or half a frame (``half``)
    for ``duration`` seconds."""

    action: Literal["fins_bad_answers"]
    device: str
    answer: Literal["garbage", "half"] = "garbage"
    duration: Seconds = 2.0


class McBadAnswers(_Fault):
    """The MELSEC CPU answers with random bytes (``garbage``) or half a frame (``half``),
    every answer for ``duration`` seconds."""

    action: Literal["mc_bad_answers"]
    device: str
    answer: Literal["garbage", "half"] = "garbage"
    duration: Seconds = 2.0


class DeviceRestart(_Fault):
    action: Literal["device_restart"]
    device: str
    downtime: Seconds = 1.0


class DeviceDisconnect(_Fault):
    """TCP devices: their client connections are aborted (once). MCU node: the serial
    cable is pulled for ``duration`` seconds (default 2). Scale: its USB port vanishes
    for ``duration`` seconds and comes back at the same path."""

    action: Literal["device_disconnect"]
    device: str
    duration: Seconds | None = None


class SerialGarbage(_Fault):
    """Random bytes on an MCU node's or a scale's serial line: ``bytes`` of them every
    ``every`` s."""

    action: Literal["serial_garbage"]
    device: str
    bytes: int = Field(default=64, ge=1, le=65536)
    every: float = Field(default=0.2, gt=0)
    duration: Seconds = 2.0


class DeviceSilence(_Fault):
    """The MCU node, scale, DL/T 645 meter, Omron PLC or MELSEC CPU hangs: it sends and
    answers nothing for ``duration`` seconds."""

    action: Literal["device_silence"]
    device: str
    duration: Seconds = 3.0


class PartialLine(_Fault):
    """The scale prints half a line, without terminator, every ``every`` s: the next line
    runs into it."""

    action: Literal["partial_line"]
    device: str
    every: float = Field(default=0.5, gt=0)
    duration: Seconds = 0.0


class WrongBaud(_Fault):
    """The scale's line as a receiver at ``baudrate`` sees it (every byte scrambled)."""

    action: Literal["wrong_baud"]
    device: str
    baudrate: int = Field(default=19200, ge=50, le=4_000_000)
    duration: Seconds = 2.0


class FirmwareUpdate(_Fault):
    """The runner updates an MCU node's firmware through the gateway's local API
    (``POST /api/firmware/{device}``) while production goes on."""

    action: Literal["firmware_update"]
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", description="for expectations")
    device: str
    version: str = Field(pattern=r"^\d{1,3}\.\d{1,3}\.\d{1,5}$", description="image version")
    size: int = Field(default=16 * 1024, ge=1024, le=1 << 20, description="image bytes")
    bad: bool = Field(default=False, description="the image fails its self-test: rollback")


class Command(_Fault):
    """The runner, as the brain, publishes a ``cmd`` writing ``value`` to ``tag``."""

    action: Literal["command"]
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", description="for expectations")
    tag: str = Field(description="device.tag, e.g. meter.power_limit")
    value: float | bool


class PlcSetpoint(_Fault):
    """A timeline step: the operator (or a drift) changes the PLC's setpoints."""

    action: Literal["plc_setpoint"]
    device: str
    melt_setpoint: float | None = Field(default=None, ge=100, le=350)
    hold_time: float | None = Field(default=None, ge=0.1, le=30)


class S7PutGetOff(_Fault):
    """S7: PUT/GET access switched off for ``duration`` s: the PLC refuses reads and writes
    (error 0x8104), as an S7-1200/1500 whose protection settings were changed."""

    action: Literal["s7_put_get_off"]
    device: str
    duration: Seconds = 2.0


class DtuRedial(_Fault):
    """The meter's DTU dials the gateway again (its 4G link dropped): the old connection is
    left open and dead, or closed (``close_old``)."""

    action: Literal["dtu_redial"]
    device: str
    close_old: bool = False


class DtuBadAnswers(_Fault):
    """The meter's DTU spoils one answer every ``every`` s: its ``heartbeat`` inside the
    answer, ``garbage`` before it, or ``half`` of it only."""

    action: Literal["dtu_bad_answers"]
    device: str
    answer: Literal["heartbeat", "garbage", "half"] = "heartbeat"
    every: float = Field(default=0.3, gt=0)
    duration: Seconds = 2.0


class GatewayKill(_Fault):
    action: Literal["gateway_kill"]
    downtime: Seconds = 1.0


Fault = Annotated[
    BrokerOutage
    | NetworkCut
    | NetworkLatency
    | NetworkLoss
    | ModbusException
    | ModbusDelay
    | DeviceRestart
    | DeviceDisconnect
    | PlcSetpoint
    | S7PutGetOff
    | GatewayKill
    | SerialGarbage
    | DeviceSilence
    | PartialLine
    | WrongBaud
    | FirmwareUpdate
    | Command
    | MeterError
    | AnswerDelay
    | BadAnswers
    | FinsEndCode
    | FinsDelay
    | FinsBadAnswers
    | McEndCode
    | McDelay
    | McBadAnswers
    | DtuRedial
    | DtuBadAnswers,
    Field(discriminator="action"),
]


class Window(_Strict):
    """``between: [from, to]`` in seconds after the first birth (sample timestamps)."""

    between: tuple[float, float] | None = None

    @field_validator("between")
    @classmethod
    def _ordered(cls, between: tuple[float, float] | None) -> tuple[float, float] | None:
        if between is not None and between[0] > between[1]:
            raise ValueError(f"an empty window: {between[0]:g} is after {between[1]:g}")
        return between


class TagValue(Window):
    type: Literal["tag_value"]
    tag: str
    value: float
    tolerance: float = Field(ge=0)
    min_samples: int = Field(default=1, ge=1)


class TagQuality(Window):
    type: Literal["tag_quality"]
    tag: str
    quality: Literal["good", "bad", "uncertain", "stale"]
    min_samples: int = Field(default=1, ge=1)


class LatencyP99(Window):
    type: Literal["latency_p99"]
    max: Seconds = Field(description="bound on the 99th percentile, seconds")
    tag_prefix: str = ""


class NoSequenceGaps(_Strict):
    type: Literal["no_sequence_gaps"]
    sessions: int | None = Field(default=None, ge=1, description="expected gateway runs")


class DeviceDeathRebirth(Window):
    type: Literal["device_death_rebirth"]
    device: str


class ModelAlarm(Window):
    type: Literal["model_alarm"]
    tag: str = Field(description="the model's alarm output tag")
    threshold: float = 0.5
    raised: bool = Field(default=True, description="false: the alarm must NOT be raised")


class CommandRoundTrip(_Strict):
    """The ``cmd-result`` of a command action arrives with ``status`` within ``within`` s;
    optionally the written value is then seen in telemetry and held by the device."""

    type: Literal["command_round_trip"]
    command: str = Field(description="the name of a command action")
    status: Literal["accepted", "rejected", "failed"] = "accepted"
    within: Seconds = 2.0
    telemetry: bool = Field(default=False, description="a good sample of the written value")
    on_device: bool = Field(default=False, description="the simulated device holds the value")
    tolerance: float = Field(default=1e-3, ge=0)


class MaxGap(Window):
    """Telemetry without gaps: between consecutive good samples of each tag (of
    ``tag_prefix``) no more than ``max`` seconds, in the window."""

    type: Literal["max_gap"]
    tag_prefix: str
    max: Seconds = Field(gt=0)
    min_tags: int = Field(default=1, ge=1, description="tags that must have samples")


class FirmwareUpdateExpect(_Strict):
    """The ``firmware_update`` action named ``update`` ended with ``outcome``, the node then
    runs ``version``, and (``resume_within``) its readings arrive again that soon after."""

    type: Literal["firmware_update"]
    update: str = Field(description="the name of a firmware_update action")
    outcome: Literal["updated", "rolled_back", "already_running"] = "updated"
    version: str | None = Field(default=None, description="the version running afterwards")
    within: Seconds | None = Field(default=None, description="the update took at most this")
    resume_within: Seconds | None = Field(
        default=5.0, description="a good reading of the node this soon after the update"
    )


class ResourceGrowth(_Strict):
    """Memory and file-descriptor growth of each gateway run (soak): the median of the last
    quarter of the samples minus the median of the first quarter, after ``warmup`` s."""

    type: Literal["resource_growth"]
    max_rss_mb: float = Field(gt=0)
    max_fds: int = Field(ge=0)
    warmup: Seconds = 30.0


Expectation = Annotated[
    TagValue
    | TagQuality
    | LatencyP99
    | NoSequenceGaps
    | DeviceDeathRebirth
    | ModelAlarm
    | CommandRoundTrip
    | ResourceGrowth
    | MaxGap
    | FirmwareUpdateExpect,
    Field(discriminator="type"),
]


class Northbound(_Strict):
    """What the gateway publishes: the JSON contract or Sparkplug B (the recorder follows)."""

    format: Literal["json", "sparkplug"] = "json"
    data_qos: Literal[0, 1] = Field(
        default=0, description="sparkplug: QoS of DDATA (1: spooled until the broker's PUBACK)"
    )


class Scenario(_Strict):
    """One production situation, its faults and what must hold."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = ""
    ci: bool = Field(default=True, description="part of the CI set (false: on demand, soak)")
    seed: int = 0
    time_scale: float = Field(default=1.0, gt=0, description="process model time compression")
    duration: float = Field(gt=0, description="seconds after the gateway's first birth")
    startup_timeout: float = Field(default=30.0, gt=0)
    publish_interval: str = "100ms"
    northbound: Northbound = Field(default_factory=Northbound)
    devices: list[Device] = Field(min_length=1)
    faults: list[Fault] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(
        default_factory=list, description="steps, ramps, drifts, noise and machine states"
    )
    repeat_every: float | None = Field(
        default=None, gt=0, description="faults and timeline repeat with this period (soak)"
    )
    resource_interval: float = Field(
        default=2.0, gt=0, description="seconds between RSS / fd samples of the gateway"
    )
    expect: list[Expectation] = Field(min_length=1)
    models: list[Literal["quality", "energy", "energy_per_part"]] = Field(
        default_factory=list,
        description="reference edge models to enable (their tag paths mapped to the first PLC "
        "and the first meter)",
    )
    plots: list[str] = Field(default_factory=list, description="tags plotted in the report")


#: expectations that read what only the JSON contract carries (sessions, device states, cmd)
_JSON_ONLY = ("no_sequence_gaps", "device_death_rebirth", "command_round_trip")

_FAULT_KINDS = {
    "plc_": ("opcua_plc", "s7_plc", "fins_plc", "mc_plc"),
    "s7_": ("s7_plc",),
    "modbus_": ("modbus_meter",),
    "dtu_": ("modbus_meter",),
    "fins_": ("fins_plc",),
    "mc_": ("mc_plc",),
    "serial_garbage": ("mcu_node", "scale", "dlt645_meter"),
    "device_silence": ("mcu_node", "scale", "dlt645_meter", "fins_plc", "mc_plc"),
    "meter_error": ("dlt645_meter",),
    "answer_delay": ("dlt645_meter",),
    "bad_answers": ("dlt645_meter",),
    "partial_line": ("scale",),
    "wrong_baud": ("scale",),
    "firmware_update": ("mcu_node",),
}


def _entries(data: dict, key: str) -> list[tuple[int, dict]]:
    """The mappings of list ``key`` with their indexes (anything else: pydantic reports it)."""
    items = data.get(key)
    if not isinstance(items, list):
        return []
    return [(i, item) for i, item in enumerate(items) if isinstance(item, dict)]


def _name(value: object) -> str | None:
    """A name referenced by an entry; ``None`` when it is not a string (pydantic says so)."""
    return value if isinstance(value, str) else None


def _checks(
    data: object, file: str, lines: dict[tuple[str | int, ...], int]
) -> list[ConfigProblem]:
    """Cross-references: faults, timeline entries and expectations name a device (or command)
    of this scenario, of a kind that has what they act on; nothing happens after the end.
    Runs on the raw data, also when pydantic found problems: values of a wrong type are
    skipped here (pydantic reports them), never a crash."""
    from gateway.config.yaml_model import line_of

    problems: list[ConfigProblem] = []
    if not isinstance(data, dict):
        return problems

    def problem(path: tuple[str | int, ...], message: str) -> None:
        problems.append(ConfigProblem(file, line_of(lines, path), path, message))

    def after_end(entry: dict) -> bool:
        at = entry.get("at")
        return isinstance(at, int | float) and isinstance(duration, int | float) and at > duration

    devices = [d for _, d in _entries(data, "devices") if _name(d.get("name"))]
    kinds = {d["name"]: d.get("kind") for d in devices}
    modes = {d["name"]: d.get("mode", "process") for d in devices}
    transports = {d["name"]: d.get("transport") for d in devices}
    duration = data.get("duration")
    commands: set[str] = set()
    updates: set[str] = set()
    for i, fault in _entries(data, "faults"):
        action = str(fault.get("action", ""))
        if action == "firmware_update" and (update := _name(fault.get("name"))) is not None:
            if update in updates:
                problem(("faults", i, "name"), f"a second firmware_update named {update!r}")
            updates.add(update)
        if action == "command":
            if (command := _name(fault.get("name"))) is not None:
                commands.add(command)
            device = str(fault.get("tag", "")).partition(".")[0]
            if device not in kinds:
                problem(("faults", i, "tag"), f"no device named {device!r} in this scenario")
        if (name := _name(fault.get("device"))) is not None:
            wanted = next((k for p, k in _FAULT_KINDS.items() if action.startswith(p)), None)
            if name not in kinds:
                problem(("faults", i, "device"), f"no device named {name!r} in this scenario")
            elif wanted and kinds[name] not in wanted:
                kinds_text = " or ".join([", ".join(wanted[:-1]), wanted[-1]] if len(wanted) > 1
                                         else wanted)
                problem(("faults", i, "device"), f"{name!r} is not a {kinds_text}")
            elif action.startswith("dtu_") and transports.get(name) != "dtu":
                problem(("faults", i, "device"), f"{name!r} is not behind a DTU "
                        "(transport: dtu)")
        if after_end(fault):
            problem(("faults", i, "at"), "after the scenario ends")
    for i, dev in _entries(data, "devices"):
        shared = dev.get("line")
        if dev.get("kind") == "dlt645_meter" and shared is not None:
            earlier = [d for _, d in _entries(data, "devices")[:i]]
            owner = next((d for d in earlier if d.get("name") == shared), None)
            if owner is None or owner.get("kind") != "dlt645_meter" or owner.get("line"):
                problem(("devices", i, "line"), f"{shared!r} is not an earlier dlt645_meter "
                        "device with a line of its own")
            elif owner.get("transport", "serial") != dev.get("transport", "serial") \
                    or owner.get("version", 2007) != dev.get("version", 2007):
                problem(("devices", i, "line"), f"meters sharing {shared!r}'s line need its "
                        "transport and version")
    for i, entry in _entries(data, "timeline"):
        name = _name(entry.get("device"))
        if name not in kinds:
            problem(("timeline", i, "device"), f"no device named {name!r} in this scenario")
            continue
        if entry.get("kind") not in TIMELINE_KINDS:
            continue
        if kinds[name] in ("mcu_node", "scale") or modes[name] == "waveform":
            problem(("timeline", i, "device"), f"{name!r} has no process model to change")
        elif "param" in entry and entry["param"] not in parameter_names(str(kinds[name])):
            allowed = ", ".join(parameter_names(str(kinds[name])))
            problem(("timeline", i, "param"), f"{kinds[name]} has no parameter "
                    f"{entry['param']!r}; one of: {allowed}")
        if after_end(entry):
            problem(("timeline", i, "at"), "after the scenario ends")
    references = {  # expectation type: (its key, the names it may take, what they name)
        "command_round_trip": ("command", commands, "command action"),
        "device_death_rebirth": ("device", kinds, "device"),
        "firmware_update": ("update", updates, "firmware_update action"),
    }
    for i, exp in _entries(data, "expect"):
        if (ref := references.get(str(exp.get("type")))) is not None:
            key, known, what = ref
            if _name(exp.get(key)) not in known:
                problem(("expect", i, key), f"no {what} named {exp.get(key)!r}")
    northbound = data.get("northbound")
    if isinstance(northbound, dict) and northbound.get("format") == "sparkplug":
        for i, exp in _entries(data, "expect"):
            if exp.get("type") in _JSON_ONLY:
                problem(("expect", i, "type"), f"{exp['type']} needs northbound format json "
                        "(it reads the JSON contract's sessions, sequences or device states)")
        if commands:
            problem(("northbound", "format"), "command actions need northbound format json")
    models = data.get("models") if isinstance(data.get("models"), list) else []
    needs = {"quality": ("opcua_plc",), "energy": ("modbus_meter", "dlt645_meter"),
             "energy_per_part": ("opcua_plc",)}
    for i, model in enumerate(models):
        wanted_kinds = needs.get(str(model), ())
        if wanted_kinds and not set(wanted_kinds) & set(kinds.values()):
            problem(("models", i), f"the {model} model needs a {' or '.join(wanted_kinds)} "
                    "device")
    if "energy_per_part" in models and "modbus_meter" not in kinds.values():
        problem(("models",), "the energy_per_part model needs a modbus_meter device")
    return problems


def _union_tags(union: object, key: str) -> set[str]:
    """The discriminator values (``Literal`` of ``key``) of a pydantic union type."""
    members = get_args(get_args(union)[0])
    return {get_args(m.model_fields[key].annotation)[0] for m in members}


#: the union tags pydantic puts in error locations (``faults.0.broker_outage.x``)
_TAGS = (
    _union_tags(Device, "kind")
    | _union_tags(Fault, "action")
    | _union_tags(Expectation, "type")
    | set(TIMELINE_KINDS)
)


def _strip_tags(exc: ConfigError) -> ConfigError:
    """Drop the union tags pydantic puts in error locations (``faults.0.broker_outage.x``)."""

    def strip(path: tuple[str | int, ...]) -> tuple[str | int, ...]:
        # the tag sits between a list index and a key (faults.0.command.tag); a key that
        # ends the path is a key (expect.0.command)
        return tuple(
            x for i, x in enumerate(path)
            if not (x in _TAGS and 0 < i < len(path) - 1 and isinstance(path[i - 1], int))
        )

    fixed = [dataclasses.replace(p, path=strip(p.path)) for p in exc.problems]
    return ConfigError(fixed)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; :class:`ConfigError` names file, line and key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem(str(path), 0, (), f"cannot read: {exc}")]) from None
    try:
        return validate_yaml_text(Scenario, text, str(path), _checks)
    except ConfigError as exc:
        raise _strip_tags(exc) from None


def scenario_files(folder: str | Path | None = None) -> list[Path]:
    """The shipped scenarios (``hil/scenarios/*.yaml``), sorted."""
    root = Path(folder) if folder else Path(__file__).resolve().parent.parent / "scenarios"
    return sorted(root.glob("*.yaml"))
