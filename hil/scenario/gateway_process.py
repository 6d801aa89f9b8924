"""The gateway as a separate process (``chenxing-gateway run -c FILE``) and its config."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from hil.devices.fins_plc import PLC_TAGS as _FINS_TAGS
from hil.devices.mc_plc import Series, mc_tag_configs
from hil.devices.modbus_meter import meter_tag_configs

if TYPE_CHECKING:
    from hil.scenario.model import Scenario

_REFERENCE = Path(__file__).resolve().parents[2] / "edge_models" / "reference"
#: the reference manifests' tag names (device imm1) -> the PLC tags of plc_device_config
_MODEL_TAGS = {
    "MeltTemp": "melt_temp",
    "MouldTemp": "mould_temp",
    "InjectionPressure": "pressure",
    "HoldTime": "hold_time",
    "CycleTime": "cycle_time",
    "PartCount": "parts",
}

__all__ = [
    "GatewayProcess",
    "dlt645_device_config",
    "fins_device_config",
    "install_models",
    "mc_device_config",
    "mcu_node_device_config",
    "meter_device_config",
    "plc_device_config",
    "scale_device_config",
    "write_gateway_config",
]

_METER_TAGS: list[dict[str, Any]] = meter_tag_configs(
    "voltage", "current", "active_power", "frequency", "energy_import", "temperature",
    "machine_state",
)


def meter_device_config(
    name: str, port: int | str, poll_interval: str, timeout: str, writable: bool = False,
    transport: str = "tcp", dtu: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Modbus device entry for the simulated meter; ``writable`` adds the holding
    register ``power_limit`` (kW) as a tag the brain may write (0..100). ``transport``:
    ``tcp``, ``udp``, ``rtu_over_tcp`` (``port`` its TCP port), ``ascii`` (``port`` the
    pty; 8N1, all a pty takes) or ``dtu`` (``port`` the gateway's listen port, ``dtu`` the
    registration and heartbeat packets)."""
    tags = list(_METER_TAGS)
    if writable:
        (limit,) = meter_tag_configs("power_limit")
        tags.append({**limit, "writable": True, "range": [0, 100]})
    entry: dict[str, Any] = {"name": name, "protocol": f"modbus_{transport}"}
    if transport == "ascii":
        entry |= {"port": port, "baudrate": 19200, "bytesize": 8, "parity": "N"}
    elif transport == "dtu":
        entry |= {"listen_host": "127.0.0.1", "listen_port": port, **(dtu or {})}
    else:
        entry |= {"host": "127.0.0.1", "port": port}
    return {**entry, "poll_interval": poll_interval, "timeout": timeout, "tags": tags}


def dlt645_device_config(
    name: str, where: str | int, address: str, version: int, poll_interval: str, timeout: str
) -> dict[str, Any]:
    """A DL/T 645 device entry for a simulated meter: on the pty ``where`` (its line is
    8N1: a pseudo-terminal carries no parity), or behind the serial device server on
    loopback port ``where``. Its tag names are the Modbus meter's, so that the reference
    energy model's manifest maps onto it as it is."""
    from hil.devices.dlt645_meter import MACHINE_STATE_DI, MACHINE_STATE_FORMAT

    tags: list[dict[str, Any]] = [
        {"name": "voltage", "di": "voltage.a"},
        {"name": "current", "di": "current.a"},
        {"name": "active_power", "di": "power.active.total"},
        {"name": "power_factor", "di": "power_factor.total"},
        {"name": "energy_import", "di": "energy.import.total"},
        {"name": "machine_state", "di": MACHINE_STATE_DI[version],
         "format": MACHINE_STATE_FORMAT, "type": "uint16"},
    ]
    if version == 2007:
        tags += [{"name": "frequency", "di": "frequency"},
                 {"name": "temperature", "di": "temperature"}]
    entry: dict[str, Any] = {
        "name": name, "meter_address": address, "version": version,
        "poll_interval": poll_interval, "timeout": timeout, "tags": tags,
    }
    if isinstance(where, int):
        return entry | {"protocol": "dlt645_tcp", "host": "127.0.0.1", "port": where}
    return entry | {"protocol": "dlt645", "port": where, "parity": "N"}


def fins_device_config(name: str, port: int, transport: str, poll_interval: str,
                       timeout: str, writable: bool = False) -> dict[str, Any]:
    """A ``fins`` device entry for the simulated Omron PLC (hil/devices/fins_plc.py);
    ``writable`` lets the brain write ``hold_time`` (0.1..30 s) and ``melt_setpoint``
    (100..350 degC)."""
    ranges = {"hold_time": [0.1, 30], "melt_setpoint": [100, 350]}
    tags = [{**t, "writable": True, "range": ranges[str(t["name"])]}
            if writable and t["name"] in ranges else dict(t) for t in _FINS_TAGS]
    return {
        "name": name,
        "protocol": "fins",
        "host": "127.0.0.1",
        "port": port,
        "transport": transport,
        "poll_interval": poll_interval,
        "timeout": timeout,
        "tags": tags,
    }


def plc_device_config(
    name: str, endpoint: str, publishing_interval: str, writable: bool = False
) -> dict[str, Any]:
    """An OPC UA device entry (subscription) for the simulated moulding machine;
    ``writable`` lets the brain write ``hold_time`` (0.1..30 s) and ``melt_setpoint``."""
    node = "ns=2;s=Machine."
    hold: dict[str, Any] = {
        "name": "hold_time", "node": node + "HoldTime", "type": "float64", "unit": "s"
    }
    extra: list[dict[str, Any]] = []
    if writable:
        hold |= {"writable": True, "range": [0.1, 30]}
        extra.append({"name": "melt_setpoint", "node": node + "MeltTempSetpoint",
                      "type": "float64", "unit": "degC", "writable": True, "range": [100, 350]})
    return {
        "name": name,
        "protocol": "opcua",
        "endpoint": endpoint,
        "publishing_interval": publishing_interval,
        "timeout": "1s",
        "watchdog_interval": "500ms",
        "tags": [
            {"name": "melt_temp", "node": node + "MeltTemp", "type": "float64", "unit": "degC"},
            {"name": "mould_temp", "node": node + "MouldTemp", "type": "float64", "unit": "degC"},
            {
                "name": "pressure",
                "node": node + "InjectionPressure",
                "type": "float64",
                "unit": "bar",
            },
            {"name": "cycle_time", "node": node + "CycleTime", "type": "float64", "unit": "s"},
            {"name": "parts", "node": node + "PartCount", "type": "uint32"},
            hold,
            {"name": "state", "node": node + "State", "type": "string"},
            *extra,
        ],
    }


def s7_device_config(
    name: str, port: int, slot: int, poll_interval: str, timeout: str, writable: bool = False
) -> dict[str, Any]:
    """An S7 device entry for the simulated moulding machine (memory: hil/README.md);
    ``writable`` lets the brain write ``hold_time`` (0.1..30 s) and ``melt_setpoint``."""
    hold: dict[str, Any] = {"name": "hold_time", "address": "DB2.DBD4:REAL", "unit": "s"}
    extra: list[dict[str, Any]] = []
    if writable:
        hold |= {"writable": True, "range": [0.1, 30]}
        extra.append({"name": "melt_setpoint", "address": "DB2.DBD0:REAL", "unit": "degC",
                      "writable": True, "range": [100, 350]})
    return {
        "name": name,
        "protocol": "s7",
        "host": "127.0.0.1",
        "port": port,
        "slot": slot,
        "poll_interval": poll_interval,
        "timeout": timeout,
        "tags": [
            {"name": "melt_temp", "address": "DB1.DBD0:REAL", "unit": "degC"},
            {"name": "mould_temp", "address": "DB1.DBD4:REAL", "unit": "degC"},
            {"name": "pressure", "address": "DB1.DBD8:REAL", "unit": "bar"},
            {"name": "cycle_time", "address": "DB1.DBD12:REAL", "unit": "s"},
            {"name": "parts", "address": "DB1.DBD16:DINT"},
            {"name": "phase", "address": "DB1.DBW20:INT"},
            {"name": "running", "address": "DB1.DBX22.0"},
            {"name": "state", "address": "DB1.DB24:STRING[16]"},
            {"name": "cycle_start", "address": "DB1.DB42:DT"},
            {"name": "door_closed", "address": "I0.0"},
            {"name": "cycle_timer", "address": "T5", "unit": "s"},
            {"name": "part_counter", "address": "C3"},
            {"name": "serial_big", "address": "DB3.DB34:ULINT"},
            hold,
            *extra,
        ],
    }


#: the MELSEC PLC's tags in scenarios: the machine's values, its texts, inputs and outputs
_MC_TAGS = ("melt_temp", "mould_temp", "pressure", "cycle_time", "parts", "phase", "state",
            "zone1_temp", "producing", "mould_closed", "cycle_start", "inject_valve",
            "temp_alarm", "always_on")


def mc_device_config(name: str, port: int, series: Series, transport: str, frame: str,
                     poll_interval: str, timeout: str, writable: bool = False) -> dict[str, Any]:
    """An ``mc`` device entry for the simulated MELSEC CPU; ``writable`` lets the brain
    write ``hold_time`` (0.1..30 s) and ``melt_setpoint`` (100..350 degC)."""
    tags = mc_tag_configs(series, *_MC_TAGS)
    setpoints = mc_tag_configs(series, "hold_time", "melt_setpoint")
    if writable:
        ranges = {"hold_time": [0.1, 30], "melt_setpoint": [100, 350]}
        setpoints = [{**t, "writable": True, "range": ranges[str(t["name"])]} for t in setpoints]
    return {
        "name": name,
        "protocol": "mc",
        "host": "127.0.0.1",
        "port": port,
        "transport": transport,
        "frame": frame,
        "plc_series": series,
        "poll_interval": poll_interval,
        "timeout": timeout,
        "tags": [*tags, *setpoints],
    }


def mcu_node_device_config(name: str, port: str, node_id: int, stale_after: str) -> dict[str, Any]:
    """An ``mcu_node`` device entry for the simulated sensor node on ``port`` (its pty)."""
    return {
        "name": name,
        "protocol": "mcu_node",
        "port": port,
        "node_id": node_id,
        "stale_after": stale_after,
        "hello_timeout": "1s",
        "tags": [
            {"name": "vibration", "sensor": "vibration_rms", "unit": "mm/s"},
            {"name": "temperature", "sensor": "temperature", "unit": "degC"},
            {"name": "humidity", "sensor": "humidity", "unit": "%RH"},
        ],
    }


def scale_device_config(
    name: str, port: str, mode: str, poll_interval: str, stale_after: str
) -> dict[str, Any]:
    """A ``serial_line`` device entry for the simulated scale on ``port`` (its pty)."""
    entry: dict[str, Any] = {
        "name": name,
        "protocol": "serial_line",
        "port": port,
        "baudrate": 9600,
        "mode": mode,
        "stale_after": stale_after,
        "framing": {"terminator": "\\r\\n", "max_frame": 64},
        "parser": {
            "regex": r"(?P<stable>ST|US),(?P<mode>GS|NT),(?P<weight>[+-]\d+\.\d+) *(?P<unit>\w+)"
        },
        "tags": [
            {"name": "weight", "type": "float64", "field": "weight", "unit": "kg"},
            {"name": "stable", "type": "bool", "field": "stable", "map": {"ST": True, "US": False}},
        ],
    }
    if mode == "poll":
        entry |= {"poll_command": "SI\\r\\n", "poll_interval": poll_interval,
                  "response_timeout": "300ms"}
    return entry


def write_gateway_config(
    folder: Path,
    name: str,
    mqtt_port: int,
    devices: list[dict[str, Any]],
    publish_interval: str,
    models: bool = False,
    commands: bool = False,
    http_port: int | None = None,
    northbound_format: str = "json",
    data_qos: int = 0,
) -> Path:
    """Write the gateway's YAML (JSON is YAML) for a scenario; return its path. The
    northbound format is always explicit (the gateway's default is Sparkplug B); the local
    API listens on loopback ``http_port`` when given (firmware updates go through it)."""
    # scenario time is compressed: a device back after its fault is reconnected within 1 s
    devices = [{"reconnect_max": "1s", **d} for d in devices]
    body: dict[str, Any] = {
        "gateway": {
            "id": f"hil-{name}"[:60],
            "site": "hil",
            "line": "line-1",
            "state_dir": "state",
        },
        "devices": devices,
        "northbound": {
            "format": northbound_format,
            "publish_interval": publish_interval,
            "mqtt": {
                "host": "127.0.0.1",
                "port": mqtt_port,
                "reconnect_min": 0.2,
                "reconnect_max": 0.5,
            },
            "spool": {"replay_rate": 500},
        },
        "http": {"enabled": False}
        if http_port is None
        else {"enabled": True, "bind": "127.0.0.1", "port": http_port},
    }
    if northbound_format == "sparkplug":
        body["northbound"]["sparkplug"] = {"data_qos": data_qos}
    if commands:
        body["commands"] = {"enabled": True}
    if models:
        body["models"] = {"enabled": True, "dir": "models", "watch_interval": 0}
    path = folder / "gateway.yaml"
    path.write_text(json.dumps(body, indent=2))
    return path


class GatewayProcess:
    """``python -m gateway.cli.main run -c FILE``; each run logs to ``gateway-N.log``."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.runs = 0
        self.proc: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        """Log file of the current (or last) run."""
        return self.config.parent / f"gateway-{self.runs}.log"

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        """Start a new run."""
        self.runs += 1
        self._close_log()
        self._log = self.log_path.open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.cli.main",
            "run",
            "-c",
            str(self.config),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=self._log,
            stdin=asyncio.subprocess.DEVNULL,
            cwd=str(self.config.parent),
        )

    async def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Send ``sig`` and wait; SIGKILL when it does not end within ``timeout``."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return None if proc is None else proc.returncode
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        self._close_log()
        return proc.returncode

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def install_models(folder: Path, scenario: Scenario) -> bool:
    """Copy the scenario's reference models into ``folder/models``, their tag paths mapped to
    the scenario's first PLC (``imm1.*``) and first meter (``imm-meter.*``); return whether
    any model is enabled."""
    if not scenario.models:
        return False
    plc = next((d.name for d in scenario.devices if d.kind == "opcua_plc"), None)
    meter = next((d.name for d in scenario.devices
                  if d.kind in ("modbus_meter", "dlt645_meter")), None)
    target = folder / "models"
    target.mkdir(parents=True, exist_ok=True)
    for name in scenario.models:
        text = (_REFERENCE / f"{name}.yaml").read_text()
        if "imm1." in text and plc is None:
            raise ValueError(f"the {name} reference model needs an opcua_plc device")
        if "imm-meter." in text and meter is None:
            raise ValueError(f"the {name} reference model needs a modbus_meter or dlt645_meter "
                             "device")
        for ref, tag in _MODEL_TAGS.items():
            text = text.replace(f"imm1.{ref}", f"{plc}.{tag}")
        text = text.replace("imm-meter.", f"{meter}.")
        (target / f"{name}.yaml").write_text(text)
        (target / f"{name}.onnx").write_bytes((_REFERENCE / f"{name}.onnx").read_bytes())
    return True
