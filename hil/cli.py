"""``chenxing-hil``: run simulated devices and a broker for hardware-in-the-loop work."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import FrameType
from typing import Any, TypeVar, cast

import click

from hil import modbus_generic_cmd
from hil.broker import BrokerKind, MqttBroker
from hil.devices.modbus_meter import ModbusMeterSimulator
from hil.process.energy_meter import (
    EnergyMeterModel,
    MeterModel,
    WaveformMeter,
    WaveformParams,
)
from hil.scenario import cli as scenario_cli

log = logging.getLogger("hil.cli")


def _setup_logging(level: str) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(name)s: %(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=True)],
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
    help="Logging level (logs go to stderr).",
)
def main(log_level: str) -> None:
    """Simulated devices on real protocols, and an MQTT broker, for HIL tests."""
    _setup_logging(log_level)


_host_option = click.option(
    "--host", default="127.0.0.1", show_default=True, help="Listen address."
)


_time_scale_option = click.option(
    "--time-scale",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Model seconds per wall-clock second.",
)


F = TypeVar("F", bound=Callable[..., Any])


def _port_option(default: int) -> Callable[[F], F]:
    return click.option(
        "--port",
        type=click.IntRange(0, 65535),
        default=default,
        show_default=True,
        help="TCP port (0 = pick a free one).",
    )


def _serve_until_signal(
    simulator: AbstractAsyncContextManager[Any], banner: Callable[[], str], name: str
) -> None:
    """Run a simulator until SIGINT or SIGTERM, printing ``banner()`` once it is up."""

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with simulator:
            click.echo(banner())
            await stop.wait()
        log.info("%s stopped", name)

    try:
        asyncio.run(serve())
    except OSError as exc:
        raise click.ClickException(str(exc)) from exc


@main.group()
def sim() -> None:
    """Run a simulated device in the foreground until Ctrl-C."""


@sim.command("modbus-meter")
@_host_option
@_port_option(5020)
@click.option(
    "--unit",
    "device_id",
    type=click.IntRange(1, 247),
    default=1,
    show_default=True,
    help="Modbus unit id.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Process model seed.")
@click.option(
    "--rtu",
    is_flag=True,
    help="Modbus RTU on a pty pair instead of TCP; prints the serial device for the gateway.",
)
@click.option(
    "--transport",
    type=click.Choice(["tcp", "udp", "rtu", "ascii", "rtu_over_tcp"]),
    default=None,
    help="tcp (default), udp, rtu or ascii (on a pty pair), rtu_over_tcp (RTU frames on "
    "TCP: a meter behind a serial device server). --rtu is --transport rtu.",
)
@click.option(
    "--baudrate", type=int, default=19200, show_default=True, help="Serial line speed (rtu, ascii)."
)
@click.option(
    "--mode",
    type=click.Choice(["process", "waveform"]),
    default="process",
    show_default=True,
    help="Seeded process model or exact test waveforms.",
)
@_time_scale_option
@click.option(
    "--period",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Waveform period in model seconds (waveform mode).",
)
def modbus_meter(
    host: str,
    port: int,
    device_id: int,
    seed: int,
    rtu: bool,
    transport: str | None,
    baudrate: int,
    mode: str,
    time_scale: float,
    period: float,
) -> None:
    """Energy meter on Modbus TCP, UDP, RTU, ASCII or RTU over TCP (register map:
    hil/README.md)."""
    t0 = time.time()
    model: MeterModel
    if mode == "waveform":
        model = WaveformMeter(WaveformParams(t0=t0, period_s=period, time_scale=time_scale))
    else:
        model = EnergyMeterModel(seed=seed, t0=t0, time_scale=time_scale)
    simulator = ModbusMeterSimulator(
        model, host=host, port=port, device_id=device_id, rtu=rtu, baudrate=baudrate,
        transport=cast(Any, transport),
    )
    _serve_until_signal(
        simulator, lambda: _meter_banner(simulator, mode, seed), "modbus-meter"
    )


def _meter_banner(simulator: ModbusMeterSimulator, mode: str, seed: int) -> str:
    detail = f"seed {seed}" if mode == "process" else "waveform"
    if simulator.rtu:
        return (
            f"modbus-meter on {simulator.transport.upper()} {simulator.serial_path} "
            f"({simulator.baudrate} baud 8N1, unit {simulator.device_id}, {detail})"
        )
    over = "" if simulator.transport == "tcp" else f"{simulator.transport}, "
    return (f"modbus-meter listening on {simulator.address} ({over}unit {simulator.device_id}, "
            f"{detail})")


def _packet(text: str | None, hex_text: str | None, what: str) -> bytes | None:
    if text is not None and hex_text is not None:
        raise click.BadParameter(f"give the {what} as text or as hex, not both")
    if hex_text is not None:
        try:
            return bytes.fromhex(hex_text.replace(" ", ""))
        except ValueError:
            raise click.BadParameter(f"{what}: pairs of hex digits") from None
    return text.encode() if text is not None else None


@sim.command("dtu")
@click.option("--gateway", "gateway", default="127.0.0.1:9000", show_default=True,
              metavar="HOST:PORT", help="Where the DTU dials: the gateway's listen port.")
@click.option("--registration", "registration", default="DTU-0001", show_default=True,
              help="Registration packet as text.")
@click.option("--registration-hex", default=None, help="Registration packet in hex instead.")
@click.option("--no-registration", is_flag=True, help="Send no registration packet.")
@click.option("--heartbeat", "heartbeat", default="HB", show_default=True,
              help="Heartbeat packet as text.")
@click.option("--heartbeat-hex", default=None, help="Heartbeat packet in hex instead.")
@click.option("--heartbeat-interval", type=click.FloatRange(min=0.01), default=30.0,
              show_default=True, help="Seconds between heartbeats.")
@click.option("--unit", "device_id", type=click.IntRange(1, 247), default=1,
              show_default=True, help="Modbus unit id of the meter on the DTU's line.")
@click.option("--line", "line", default=None, metavar="HOST:PORT",
              help="Relay to this RTU-over-TCP server instead of the simulated meter.")
@click.option("--seed", type=int, default=0, show_default=True, help="Process model seed.")
@click.option("--mode", type=click.Choice(["process", "waveform"]), default="process",
              show_default=True, help="Seeded process model or exact test waveforms.")
@_time_scale_option
def dtu(gateway: str, registration: str, registration_hex: str | None, no_registration: bool,
        heartbeat: str, heartbeat_hex: str | None, heartbeat_interval: float, device_id: int,
        line: str | None, seed: int, mode: str, time_scale: float) -> None:
    """A 4G DTU that dials the gateway, registers, sends heartbeats and passes Modbus RTU
    to the energy meter on its RS-485 port (hil/devices/modbus_dtu.py)."""
    from hil.devices.modbus_dtu import DtuSimulator

    host, _, port_text = gateway.rpartition(":")
    if not host or not port_text.isdigit():
        raise click.BadParameter("HOST:PORT, e.g. 192.168.1.10:9000", param_hint="--gateway")
    relay_to: tuple[str, int] | None = None
    if line is not None:
        line_host, _, line_port = line.rpartition(":")
        if not line_host or not line_port.isdigit():
            raise click.BadParameter("HOST:PORT", param_hint="--line")
        relay_to = (line_host, int(line_port))
    packet = None if no_registration else _packet(
        None if registration_hex else registration, registration_hex, "registration")
    beat = _packet(None if heartbeat_hex else heartbeat, heartbeat_hex, "heartbeat")
    t0 = time.time()
    model: MeterModel = (WaveformMeter(WaveformParams(t0=t0, time_scale=time_scale))
                         if mode == "waveform"
                         else EnergyMeterModel(seed=seed, t0=t0, time_scale=time_scale))
    meter = ModbusMeterSimulator(model, device_id=device_id, transport="rtu_over_tcp")
    simulator = DtuSimulator(host, int(port_text), meter=meter, registration=packet,
                             heartbeat=beat, heartbeat_interval=heartbeat_interval, seed=seed,
                             own_meter=True, line=relay_to)
    _serve_until_signal(
        simulator,
        lambda: f"dtu dialling {gateway} (registration {packet!r}, heartbeat {beat!r} every "
        f"{heartbeat_interval:g} s; "
        + (f"relaying to {line})" if line else f"unit {device_id} behind it, {mode})"),
        "dtu",
    )


@sim.command("opcua-plc")
@_host_option
@_port_option(4840)
@click.option("--seed", type=int, default=0, show_default=True, help="Process model seed.")
@_time_scale_option
@click.option(
    "--security",
    multiple=True,
    default=("None",),
    show_default=True,
    help="Endpoint to offer, repeatable: None, Basic256Sha256_Sign, "
    "Basic256Sha256_SignAndEncrypt, Aes128_Sha256_RsaOaep_..., Aes256_Sha256_RsaPss_...",
)
@click.option(
    "--user", "users", multiple=True, metavar="NAME:PASSWORD",
    help="Accept this user name and password (repeatable); anonymous stays allowed.",
)
@click.option("--scale", type=click.IntRange(0), default=0, show_default=True,
              help="Extra Scale.Vnnnnn variables, for benchmarks.")
@click.option("--scale-rate", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="Updates per second of the scale variables.")
def opcua_plc(
    host: str, port: int, seed: int, time_scale: float, security: tuple[str, ...],
    users: tuple[str, ...], scale: int, scale_rate: float,
) -> None:
    """Injection-moulding machine PLC on OPC UA (address space: hil/README.md)."""
    from hil.devices.opcua_plc import OpcUaPlcSimulator
    from hil.netutil import free_port
    from hil.process.injection_moulding import InjectionMouldingModel

    if logging.getLogger().level > logging.DEBUG:  # asyncua's info logs drown the rest
        logging.getLogger("asyncua").setLevel(logging.WARNING)
    accounts = dict(u.split(":", 1) for u in users if ":" in u)
    try:
        simulator = OpcUaPlcSimulator(
            InjectionMouldingModel(seed=seed, time_scale=time_scale),
            host=host, port=port or free_port(host), security=security, users=accounts,
            scale=scale, scale_rate=scale_rate,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--security") from exc

    _serve_until_signal(
        simulator,
        lambda: f"opcua-plc listening on {simulator.endpoint} (seed {seed}, "
        f"{', '.join(simulator.security)})",
        "opcua-plc",
    )


@sim.command("s7")
@_host_option
@_port_option(1102)
@click.option("--cpu", type=click.Choice(["s7-1200", "s7-1500", "s7-300", "s7-200smart"]),
              default="s7-1200", show_default=True,
              help="CPU family: PDU size, slot, order number, connection limits.")
@click.option("--seed", type=int, default=0, show_default=True, help="Process model seed.")
@_time_scale_option
@click.option("--put-get-off", is_flag=True,
              help="Refuse reads and writes as an S7-1200/1500 with PUT/GET access off.")
@click.option("--optimized-db", "optimized", type=int, multiple=True,
              help="A DB with optimized block access (reads answer 'address out of range').")
@click.option("--delay", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Seconds before every answer (a slow PLC).")
def s7(host: str, port: int, cpu: str, seed: int, time_scale: float, put_get_off: bool,
       optimized: tuple[int, ...], delay: float) -> None:
    """Injection-moulding machine on a Siemens S7 PLC, S7comm over ISO-on-TCP (memory
    layout: hil/README.md)."""
    from hil.devices.s7_plc import S7PlcSimulator
    from hil.process.injection_moulding import InjectionMouldingModel

    simulator = S7PlcSimulator(InjectionMouldingModel(seed=seed, time_scale=time_scale),
                               host=host, port=port, cpu=cpu)
    simulator.put_get = not put_get_off
    simulator.optimized_dbs.update(optimized)
    simulator.response_delay = delay
    profile = simulator.profile
    _serve_until_signal(
        simulator,
        lambda: f"s7 {cpu} listening on {simulator.address} (rack 0 slot {profile.slot}, PDU "
        f"{simulator.pdu_size}, seed {seed}{', PUT/GET off' if put_get_off else ''})",
        "s7",
    )


@sim.command("fins")
@_host_option
@_port_option(9600)
@click.option("--node", type=click.IntRange(1, 254), default=1, show_default=True,
              help="The PLC's FINS node.")
@click.option("--transport", "transports", multiple=True, type=click.Choice(["tcp", "udp"]),
              default=("tcp", "udp"), show_default=True, help="Repeatable; both by default.")
@click.option("--model", "model_name", default="CJ2M-CPU33", show_default=True,
              help="The CPU model CONTROLLER DATA READ answers.")
@click.option("--seed", type=int, default=0, show_default=True, help="Process model seed.")
@click.option("--delay", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Seconds each answer waits, as a CPU answering within its cycle.")
@_time_scale_option
def fins(host: str, port: int, node: int, transports: tuple[str, ...], model_name: str,
         seed: int, delay: float, time_scale: float) -> None:
    """Injection-moulding machine on an Omron PLC, FINS over TCP (node-address handshake)
    and UDP (memory map: hil/devices/fins_plc.py)."""
    from hil.devices.fins_plc import FinsPlcSimulator
    from hil.process.injection_moulding import InjectionMouldingModel

    simulator = FinsPlcSimulator(
        InjectionMouldingModel(seed=seed, time_scale=time_scale), host=host, port=port,
        node=node, tcp="tcp" in transports, udp="udp" in transports, model_name=model_name,
    )
    simulator.response_delay = delay
    _serve_until_signal(
        simulator,
        lambda: f"fins listening on {simulator.address} ({'+'.join(transports)}, node {node}, "
        f"{model_name}, seed {seed})",
        "fins",
    )


@sim.command("mc")
@_host_option
@_port_option(5002)
@click.option("--series", type=click.Choice(["q", "iq-r", "iq-f"]), default="iq-f",
              show_default=True, help="CPU series: its model name, limits, X/Y base.")
@click.option("--transport", "transports", multiple=True, type=click.Choice(["tcp", "udp"]),
              default=("tcp", "udp"), show_default=True, help="Repeatable; both by default.")
@click.option("--seed", type=int, default=0, show_default=True, help="Process model seed.")
@click.option("--delay", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Seconds each answer waits, as a CPU answering at the end of its scan.")
@_time_scale_option
def mc(host: str, port: int, series: str, transports: tuple[str, ...], seed: int,
       delay: float, time_scale: float) -> None:
    """Injection-moulding machine on a MELSEC CPU, MC protocol (SLMP) 3E/4E binary frames
    (device map: hil/README.md)."""
    from hil.devices.mc_plc import MODELS, McPlcSimulator
    from hil.process.injection_moulding import InjectionMouldingModel

    simulator = McPlcSimulator(
        InjectionMouldingModel(seed=seed, time_scale=time_scale), series=series,  # type: ignore[arg-type]  # click.Choice
        host=host, port=port, transports=transports,
    )
    simulator.response_delay = delay
    _serve_until_signal(
        simulator,
        lambda: f"mc listening on {simulator.address} ({'+'.join(transports)}, {series}: "
        f"{MODELS[series][0]}, seed {seed})",
        "mc",
    )


@sim.command("mcu-node")
@click.option("--node-id", type=click.IntRange(0, 0xFFFE), default=1, show_default=True,
              help="The node's id.")
@click.option("--seed", type=int, default=0, show_default=True, help="Signal seed.")
@click.option("--sample-interval", type=click.IntRange(1, 60_000), default=100,
              show_default=True, help="Milliseconds between samples.")
@click.option("--samples-per-frame", type=click.IntRange(1, 42), default=5, show_default=True,
              help="Samples per sensor in one READINGS frame.")
@click.option("--heartbeat-interval", type=click.IntRange(100, 60_000), default=1000,
              show_default=True, help="Milliseconds between heartbeats when idle.")
def mcu_node(
    node_id: int, seed: int, sample_interval: int, samples_per_frame: int,
    heartbeat_interval: int,
) -> None:
    """MCU sensor node (vibration, temperature, humidity) on a pty (firmware_bridge/PROTOCOL.md)."""
    from hil.devices.mcu_node import McuNodeSimulator, NodeSettings

    settings = NodeSettings(sample_interval, samples_per_frame, heartbeat_interval)
    simulator = McuNodeSimulator(node_id=node_id, seed=seed, settings=settings)

    _serve_until_signal(
        simulator,
        lambda: f"mcu-node {node_id} on {simulator.serial_path} (115200 baud 8N1, "
        f"seed {seed}, {sample_interval} ms x {samples_per_frame})",
        "mcu-node",
    )


@sim.command("mcu-bus")
@click.option("--nodes", default="1,2,3", show_default=True,
              help="Comma-separated node ids sharing the line.")
@click.option("--seed", type=int, default=0, show_default=True, help="Signal seed of the first.")
def mcu_bus(nodes: str, seed: int) -> None:
    """Several MCU sensor nodes on one pty: an RS-485 line (firmware_bridge/PROTOCOL.md)."""
    from hil.devices.mcu_node import McuNodeBus

    try:
        ids = [int(n) for n in nodes.split(",")]
        bus = McuNodeBus(ids, seed=seed)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--nodes") from None
    _serve_until_signal(bus, lambda: f"mcu-bus nodes {nodes} on {bus.serial_path}", "mcu-bus")


@sim.command("dlt645")
@click.option("--meters", default="000000000001", show_default=True,
              help="Comma-separated 12-digit addresses of the meters on the line.")
@click.option("--tcp", is_flag=True,
              help="A serial device server on TCP (--host, --port) instead of a pty line.")
@_host_option
@_port_option(8899)
@click.option("--version", "version", type=click.Choice(["2007", "1997"]), default="2007",
              show_default=True, help="DL/T 645 version the meters speak.")
@click.option("--seed", type=int, default=0, show_default=True, help="Process model seed.")
@click.option("--mode", type=click.Choice(["process", "waveform"]), default="process",
              show_default=True, help="Seeded process model or exact test waveforms.")
@_time_scale_option
@click.option("--baudrate", type=click.IntRange(300, 115200), default=None,
              help="Pace the pty like a line at this speed (default: as fast as it goes).")
def dlt645(meters: str, tcp: bool, host: str, port: int, version: str, seed: int, mode: str,
           time_scale: float, baudrate: int | None) -> None:
    """DL/T 645 electricity meters on one RS-485 pty, or behind a serial device server on TCP
    (hil/devices/dlt645_meter.py)."""
    from hil.devices.dlt645_meter import Dlt645Line, SimMeter

    t0 = time.time()
    try:
        sims = []
        for i, address in enumerate(a.strip() for a in meters.split(",")):
            model: MeterModel = (
                WaveformMeter(WaveformParams(t0=t0, time_scale=time_scale))
                if mode == "waveform"
                else EnergyMeterModel(seed=seed + i, t0=t0, time_scale=time_scale))
            sims.append(SimMeter(address, model, 2007 if version == "2007" else 1997))
        line = Dlt645Line(sims, transport="tcp" if tcp else "serial", host=host, port=port,
                          seed=seed, baudrate=baudrate)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--meters") from None

    def banner() -> str:
        where = f"{line.host}:{line.port} (serial device server)" if tcp \
            else f"{line.serial_path} (RS-485 pty)"
        return f"dlt645 meters {meters} (DL/T 645-{version}, {mode}) on {where}"

    _serve_until_signal(line, banner, "dlt645")


@sim.command("scale")
@click.option("--mode", type=click.Choice(["stream", "poll"]), default="stream",
              show_default=True, help="stream: print lines at --rate; poll: answer --command.")
@click.option("--rate", type=click.FloatRange(0.1, 1000), default=10.0, show_default=True,
              help="Lines per second in stream mode.")
@click.option("--seed", type=int, default=0, show_default=True, help="Weight sequence seed.")
@click.option("--unit", default="kg", show_default=True, help="Weight unit printed.")
@click.option("--command", "poll_command", default="SI", show_default=True,
              help="Poll command answered in poll mode (sent with CR LF).")
def scale(mode: str, rate: float, seed: int, unit: str, poll_command: str) -> None:
    """Weighing scale printing 'ST,GS,+0012.345 kg' lines on a pty (hil/devices/scale.py)."""
    from hil.devices.scale import ScaleSimulator

    simulator = ScaleSimulator(
        mode="poll" if mode == "poll" else "stream", rate=rate, seed=seed, unit=unit,
        poll_command=poll_command.encode() + b"\r\n",
    )
    what = f"{rate:g} lines/s" if mode == "stream" else f"answers {poll_command!r}+CRLF"
    _serve_until_signal(
        simulator,
        lambda: f"scale on {simulator.serial_path} (-> {simulator.line.gateway_path}, "
        f"9600 baud 8N1, {mode}, {what}, seed {seed})",
        "scale",
    )


def _raise_keyboard_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@main.command()
@_host_option
@_port_option(1883)
@click.option(
    "--kind",
    type=click.Choice(["auto", "mosquitto", "amqtt"]),
    default="auto",
    show_default=True,
    help="Mosquitto if installed (auto), or the embedded amqtt.",
)
def broker(host: str, port: int, kind: str) -> None:
    """Run an MQTT broker in the foreground until Ctrl-C."""
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        mqtt = MqttBroker(host=host, port=port, kind=cast(BrokerKind, kind))
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        try:
            mqtt.start()
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"{mqtt.kind} broker listening on {mqtt.url} (log: {mqtt.log_path})")
        while mqtt.running:
            time.sleep(0.5)
        raise click.ClickException(f"{mqtt.kind} exited unexpectedly:\n{mqtt.log_tail()}")
    except KeyboardInterrupt:
        log.info("stopping broker")
    finally:
        mqtt.close()
        signal.signal(signal.SIGTERM, previous)


main.add_command(scenario_cli.list_scenarios)
main.add_command(scenario_cli.validate)
main.add_command(scenario_cli.run)
sim.add_command(modbus_generic_cmd.modbus)

if __name__ == "__main__":
    main()
