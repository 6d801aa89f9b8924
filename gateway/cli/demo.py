"""``chenxing-gateway demo``: simulated line -> gateway -> real MQTT broker -> subscriber.

Starts the simulated moulding line of the config (gateway/cli/demo_line.py: energy
meters, the injection-moulding PLC over OPC UA, an MCU sensor node on a pty, the
reference edge models and a scripted drift), an MQTT broker (Mosquitto when installed,
else an embedded broker), the gateway in this process and a recording subscriber whose
view is a live table with the latest decoded messages and the model alarms. The
subscriber reads the config's contract: Sparkplug B (the default; tag paths through the
birth aliases) or JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rich.console import Group, JustifyMethod
from rich.live import Live
from rich.table import Table
from rich.text import Text

from gateway.cli.demo_line import model_names, start_line
from gateway.cli.demo_view import alarms_raised, alarms_text, messages_text, models_reported
from gateway.config.models import GatewayConfig
from gateway.runtime.gateway import Gateway
from hil.broker import MqttBroker
from hil.recorder import ReceivedSample, TelemetryRecorder

SPARKPLUG_ROOT = "spBv1.0"


@dataclass(slots=True)
class DemoSummary:
    seconds: float
    broker: str
    format: str
    births: int
    messages: int
    samples: int
    tags: int
    errors: int
    devices_configured: list[str]
    devices_reported: list[str] = field(default_factory=list)
    models_configured: list[str] = field(default_factory=list)
    models_reported: list[str] = field(default_factory=list)
    status_page: str = ""
    #: model alarms seen raised (``energy/energy_anomaly``)
    alarms: list[str] = field(default_factory=list)

    @property
    def all_devices_reported(self) -> bool:
        """Every configured device and every edge model sent telemetry."""
        return (set(self.devices_configured) <= set(self.devices_reported)
                and set(self.models_configured) <= set(self.models_reported))

    def as_dict(self) -> dict[str, object]:
        return {
            "seconds": round(self.seconds, 1),
            "broker": self.broker,
            "format": self.format,
            "births": self.births,
            "messages": self.messages,
            "samples": self.samples,
            "tags": self.tags,
            "errors": self.errors,
            "devices_configured": self.devices_configured,
            "devices_reported": self.devices_reported,
            "models_configured": self.models_configured,
            "models_reported": self.models_reported,
            "status_page": self.status_page,
            "alarms": self.alarms,
            "ok": self.all_devices_reported,
        }

    def line(self) -> str:
        verdict = "OK" if self.all_devices_reported else "INCOMPLETE"
        missing = sorted(set(self.devices_configured) - set(self.devices_reported))
        missing += sorted(f"model {m}" for m in set(self.models_configured)
                          - set(self.models_reported))
        tail = f" missing={','.join(missing)}" if missing else ""
        return (
            f"demo {verdict}: {self.seconds:.1f}s via {self.broker} ({self.format}): "
            f"messages={self.messages} "
            f"samples={self.samples} tags={self.tags} errors={self.errors} "
            f"devices={len(self.devices_reported)}/{len(self.devices_configured)} "
            f"models={len(self.models_reported)}/{len(self.models_configured)}{tail}"
        )


def _wire(config: GatewayConfig, broker: MqttBroker, ports: dict[str, int],
          contract: Literal["json", "sparkplug"] | None) -> GatewayConfig:
    """Point the config at the started broker and simulators; ``contract`` overrides
    ``northbound.format``."""
    devices = [
        d.model_copy(update={"port": ports[d.name]}) if d.name in ports else d
        for d in config.devices
    ]
    mqtt = config.northbound.mqtt.model_copy(update={"host": broker.host, "port": broker.port})
    # the demo's broker lives for one run, so do its spool and state (demos may run side by
    # side, and an installed demo config sits in a folder the user cannot write)
    spool = config.northbound.spool.model_copy(update={"path": broker.workdir / "spool.db"})
    identity = config.gateway.model_copy(update={"state_dir": broker.workdir})
    update: dict[str, object] = {"mqtt": mqtt, "spool": spool}
    if contract is not None:
        update["format"] = contract
    northbound = config.northbound.model_copy(update=update)
    http = config.http.model_copy(update={"port": 0})
    return config.model_copy(update={"gateway": identity, "devices": devices,
                                     "northbound": northbound, "http": http})


def _recorder(config: GatewayConfig, broker: MqttBroker) -> TelemetryRecorder:
    """A subscriber for the config's contract."""
    nb = config.northbound
    root = SPARKPLUG_ROOT if nb.format == "sparkplug" else nb.topic_root
    return TelemetryRecorder(broker.host, broker.port, root)


def _device_tags(snap_latest: dict[str, ReceivedSample], devices: set[str]
                 ) -> dict[str, ReceivedSample]:
    """The latest sample of every device tag (not Sparkplug node metrics)."""
    return {t: s for t, s in snap_latest.items() if t.split(".", 1)[0] in devices}


def _footer(duration: float | None) -> str:
    """The live view's last line: how the demo ends."""
    if duration is None:
        return "Ctrl-C to stop"
    return f"ends by itself after {duration:g} s (Ctrl-C ends it sooner)"


def _table(recorder: TelemetryRecorder, gateway: Gateway, header: str,
           footer: str = "Ctrl-C to stop") -> Group:
    snap = recorder.snapshot()
    shown = {*gateway.runners, gateway.config.models.device}  # devices and model outputs
    latest = _device_tags(snap.latest, shown)
    now_ms = time.time_ns() // 1_000_000
    table = Table(expand=False, title=None)
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("tag", "left"),
        ("value", "right"),
        ("unit", "left"),
        ("quality", "left"),
        ("age", "right"),
    )
    for col, justify in columns:
        table.add_column(col, justify=justify)
    for tag in sorted(latest):
        s = latest[tag]
        info = gateway.catalog.get(tag)
        value = (
            "—"
            if s.value is None
            else (f"{s.value:.3f}" if isinstance(s.value, float) else str(s.value))
        )
        style = {"good": "green", "bad": "red", "stale": "yellow", "uncertain": "yellow"}.get(
            s.quality, ""
        )
        table.add_row(
            tag,
            value,
            info.unit if info else "",
            Text(s.quality, style=style),
            f"{(now_ms - s.ts_ms) / 1000:.1f}s",
        )
    states = ", ".join(f"{n}={r.stats.state.value}" for n, r in gateway.runners.items())
    if gateway.http_port:
        header += f"\nstatus page http://127.0.0.1:{gateway.http_port}/"
    status = Text(
        f"{header}\nmessages={len(snap.data_messages)} samples={len(snap.samples)} "
        f"births={len(snap.births)} devices: {states}\n{footer}"
    )
    return Group(status, table, Text(messages_text(snap.data_messages)),
                 alarms_text(latest, gateway.config.models.device))


async def run_demo(
    config: GatewayConfig,
    config_dir: Path,
    duration: float | None,
    broker_choice: str,
    live: bool,
    contract: Literal["json", "sparkplug"] | None = None,
) -> DemoSummary:
    """Run the demo line; ``contract`` overrides the config's ``northbound.format``."""
    kinds: dict[str, Literal["auto", "mosquitto", "amqtt"]] = {
        "auto": "auto", "mosquitto": "mosquitto", "embedded": "amqtt"}  # fmt: skip
    kind = kinds[broker_choice]
    broker = MqttBroker(kind=kind)
    broker.start()
    simulators = contextlib.AsyncExitStack()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    try:
        line = await start_line(config, config_dir, simulators)
        wired = _wire(line.wire(config), broker, {}, contract)
        recorder = _recorder(wired, broker)
        await asyncio.to_thread(recorder.start)
        gateway = Gateway(wired, config_dir)
        gw_task = asyncio.create_task(gateway.run(stop))
        if duration is not None:
            loop.call_later(duration, stop.set)
        header = (f"chenxing-edge demo ({wired.northbound.format}): broker {broker.kind} "
                  f"at {broker.url}" + (f"\n{line.script}" if line.script else ""))
        if not live:
            await _say_status_page(gateway, stop)
        if live:
            footer = _footer(duration)
            with Live(
                _table(recorder, gateway, header, footer), refresh_per_second=4, transient=False
            ) as view:
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.5)
                    view.update(_table(recorder, gateway, header, footer))
        await gw_task
        await asyncio.sleep(0.2)  # let the last acknowledged messages reach the subscriber
        recorder.stop()
        snap = recorder.snapshot()
        configured = [d.name for d in config.devices if d.enabled]
        models = model_names(wired, config_dir)
        latest = _device_tags(snap.latest, set(configured))
        samples = sum(s.tag.split(".", 1)[0] in configured for s in snap.samples)
        devices_reported = sorted(
            {t.split(".", 1)[0] for t, s in latest.items() if s.quality == "good"}
        )
        errors = sum(sum(r.driver.errors.values()) for r in gateway.runners.values() if r.driver)
        errors += sum(r.stats.crashes for r in gateway.runners.values()) + snap.undecodable
        return DemoSummary(
            seconds=time.monotonic() - started,
            broker=broker.kind,
            format=wired.northbound.format,
            births=len(snap.births),
            messages=len(snap.data_messages),
            samples=samples,
            tags=len(latest),
            errors=errors,
            devices_configured=configured,
            devices_reported=devices_reported,
            models_configured=models,
            models_reported=models_reported(snap.latest, wired.models.device),
            alarms=alarms_raised(snap.samples, wired.models.device),
            status_page=(f"http://127.0.0.1:{gateway.http_port}/" if gateway.http_port
                         else ""),
        )
    finally:
        with contextlib.suppress(Exception):
            await simulators.aclose()
        broker.close()


async def _say_status_page(gateway: Gateway, stop: asyncio.Event) -> None:
    """Without the live table: the status page's address on stderr once it listens."""
    started = asyncio.ensure_future(gateway.started.wait())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait([started, stopped], return_when=asyncio.FIRST_COMPLETED)
    for waiter in (started, stopped):
        waiter.cancel()
    if gateway.http_port:
        print(f"status page: http://127.0.0.1:{gateway.http_port}/", file=sys.stderr)
