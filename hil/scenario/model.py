"""Scenario files: the simulated line, faults at given times, and expectations (pydantic)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.config.loader import validate_yaml_text
from gateway.errors import ConfigError, ConfigProblem

__all__ = ["Scenario", "load_scenario", "scenario_files"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Seconds = Annotated[float, Field(ge=0)]


class MeterDevice(_Strict):
    """The energy meter on Modbus TCP."""

    kind: Literal["modbus_meter"]
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    mode: Literal["process", "waveform"] = "process"
    period_s: float = Field(default=60.0, gt=0, description="waveform period (model seconds)")
    poll_interval: str = "100ms"
    timeout: str = "500ms"


class PlcDevice(_Strict):
    """The injection-moulding PLC on OPC UA (subscription mode)."""

    kind: Literal["opcua_plc"]
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    publishing_interval: str = "100ms"


Device = Annotated[MeterDevice | PlcDevice, Field(discriminator="kind")]


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


class DeviceRestart(_Fault):
    action: Literal["device_restart"]
    device: str
    downtime: Seconds = 1.0


class DeviceDisconnect(_Fault):
    action: Literal["device_disconnect"]
    device: str


class PlcSetpoint(_Fault):
    """A timeline step: the operator (or a drift) changes the PLC's setpoints."""

    action: Literal["plc_setpoint"]
    device: str
    melt_setpoint: float | None = Field(default=None, ge=100, le=350)
    hold_time: float | None = Field(default=None, ge=0.1, le=30)


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
    | GatewayKill,
    Field(discriminator="action"),
]


class Window(_Strict):
    """``between: [from, to]`` in seconds after the first birth (sample timestamps)."""

    between: tuple[float, float] | None = None


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


Expectation = Annotated[
    TagValue | TagQuality | LatencyP99 | NoSequenceGaps | DeviceDeathRebirth | ModelAlarm,
    Field(discriminator="type"),
]


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
    devices: list[Device] = Field(min_length=1)
    faults: list[Fault] = Field(default_factory=list)
    expect: list[Expectation] = Field(min_length=1)
    models: list[Literal["quality"]] = Field(
        default_factory=list,
        description="reference edge models to enable (their tag paths mapped to the first PLC)",
    )
    plots: list[str] = Field(default_factory=list, description="tags plotted in the report")


def _checks(
    data: object, file: str, lines: dict[tuple[str | int, ...], int]
) -> list[ConfigProblem]:
    """Faults must name a device of the scenario of the right kind."""
    from gateway.config.loader import line_of

    problems: list[ConfigProblem] = []
    if not isinstance(data, dict):
        return problems
    kinds = {d.get("name"): d.get("kind") for d in data.get("devices") or [] if isinstance(d, dict)}
    for i, fault in enumerate(data.get("faults") or []):
        if not isinstance(fault, dict) or "device" not in fault:
            continue
        path = ("faults", i, "device")
        name = fault["device"]
        if name not in kinds:
            problems.append(
                ConfigProblem(
                    file, line_of(lines, path), path, f"no device named {name!r} in this scenario"
                )
            )
        elif str(fault.get("action", "")).startswith("plc_") and kinds[name] != "opcua_plc":
            problems.append(
                ConfigProblem(file, line_of(lines, path), path, f"{name!r} is not an opcua_plc")
            )
        elif str(fault.get("action", "")).startswith("modbus_") and kinds[name] != "modbus_meter":
            problems.append(
                ConfigProblem(file, line_of(lines, path), path, f"{name!r} is not a modbus_meter")
            )
        if (fault.get("at") or 0) > (data.get("duration") or 0):
            p = ("faults", i, "at")
            problems.append(ConfigProblem(file, line_of(lines, p), p, "after the scenario ends"))
    return problems


def _strip_tags(exc: ConfigError) -> ConfigError:
    """Drop the union tags pydantic puts in error locations (``faults.0.broker_outage.x``)."""
    tags = {"modbus_meter", "opcua_plc"} | set(_TAGS)
    fixed = [
        ConfigProblem(p.file, p.line, tuple(x for x in p.path if x not in tags), p.message)
        for p in exc.problems
    ]
    return ConfigError(fixed)


_TAGS = (
    "broker_outage",
    "network_cut",
    "network_latency",
    "network_loss",
    "modbus_exception",
    "modbus_delay",
    "device_restart",
    "device_disconnect",
    "gateway_kill",
    "plc_setpoint",
    "tag_value",
    "tag_quality",
    "latency_p99",
    "no_sequence_gaps",
    "device_death_rebirth",
    "model_alarm",
)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; :class:`ConfigError` names file, line and key."""
    path = Path(path)
    try:
        return validate_yaml_text(Scenario, path.read_text(), str(path), _checks)
    except ConfigError as exc:
        raise _strip_tags(exc) from None


def scenario_files(folder: str | Path | None = None) -> list[Path]:
    """The shipped scenarios (``hil/scenarios/*.yaml``), sorted."""
    root = Path(folder) if folder else Path(__file__).resolve().parent.parent / "scenarios"
    return sorted(root.glob("*.yaml"))
