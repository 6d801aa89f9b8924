"""``chenxing-gateway check``: connect to every enabled device and the broker once.

No retries and bounded timeouts: each device gets one connect and one poll of
every poll group (or, for subscription drivers, the first notifications of its
tags); all devices are checked concurrently, then the broker (TCP/TLS connect
and CONNACK). Exit 0 only when everything passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from drivers.registration import DriverRegistry
from drivers.registry import REGISTRY
from gateway import exit_codes
from gateway.cli.config_option import config_option
from gateway.config.loader import load_config
from gateway.config.models import GatewayConfig, MqttConfig, MqttTlsConfig
from gateway.config.secrets import resolve_secret
from gateway.device_check import DeviceCheck, check_device, counted
from gateway.errors import ConfigError
from gateway.listen_ports import ListenPorts
from gateway.logsetup import setup_logging
from gateway.serial_ports import SerialPorts
from gateway.tags import TagCatalog

log = logging.getLogger(__name__)


@dataclass(slots=True)
class BrokerCheck:
    """The outcome for the broker."""

    url: str
    ok: bool
    reason: str


def check_broker(config: MqttConfig, gateway_id: str, config_dir: Path | None,
                 timeout: float) -> BrokerCheck:
    """Connect once (TCP, TLS, CONNACK) with a client id of its own; blocking."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from gateway.northbound.mqtt_link import describe_connect_error, tls_context

    broker = config.brokers()[0]  # with northbound.mqtt.urls: the first one
    url = broker.url
    v5 = config.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"chenxing-check-{gateway_id}-{os.getpid()}",
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else True,
    )
    client.connect_timeout = timeout
    try:
        if broker.tls:
            tls = config.tls or MqttTlsConfig()
            client.tls_set_context(tls_context(tls))
            if tls.insecure_skip_verify:
                client.tls_insecure_set(True)
        if config.username is not None:
            password = (resolve_secret(config.password, config_dir)
                        if config.password is not None else None)
            client.username_pw_set(config.username, password)
    except (OSError, ConfigError) as exc:
        return BrokerCheck(url, False, str(exc))
    answered = threading.Event()
    result: list[str] = []
    accepted: list[bool] = []

    def on_connect(_c: object, _u: object, _f: object, reason: object, _p: object) -> None:
        accepted.append(not getattr(reason, "is_failure", False))
        result.append(str(reason))
        answered.set()

    client.on_connect = on_connect
    try:
        client.connect(broker.host, broker.port, keepalive=max(5, int(config.keepalive)))
    except Exception as exc:  # socket, DNS, TLS
        return BrokerCheck(url, False, describe_connect_error(exc))
    try:
        deadline = timeout
        while not answered.is_set() and deadline > 0:
            rc = client.loop(timeout=0.1)
            deadline -= 0.1
            if rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN) and not answered.is_set():
                return BrokerCheck(url, False,
                                   f"connection closed before CONNACK ({mqtt.error_string(rc)})")
        if not answered.is_set():
            return BrokerCheck(url, False, f"no CONNACK within {timeout:g} s")
        if accepted[0]:
            return BrokerCheck(url, True, f"CONNACK: {result[0]}")
        return BrokerCheck(url, False, f"CONNACK refused: {result[0]}")
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()
        with contextlib.suppress(Exception):
            sock = client.socket()
            if sock is not None:
                sock.close()


async def run_checks(config: GatewayConfig, config_dir: Path | None, timeout: float,
                     drivers: DriverRegistry = REGISTRY,
                     say: Callable[[str], None] | None = None,
                     ) -> tuple[list[DeviceCheck], BrokerCheck]:
    """Every enabled device concurrently, the broker alongside in a worker thread."""
    devices = [d for d in config.devices if d.enabled]
    catalog = TagCatalog(devices)
    broker = asyncio.create_task(asyncio.to_thread(
        check_broker, config.northbound.mqtt, config.gateway.id, config_dir, timeout))
    ports = SerialPorts()
    listen_ports = ListenPorts()
    try:
        results = await asyncio.gather(*(
            check_device(d, catalog, timeout, ports, drivers, listen_ports, say)
            for d in devices))
    finally:
        listen_ports.close()
    return list(results), await broker


def _format_value(value: float | int | str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float | np.floating):
        return f"{value:.6g}"
    return str(value)


def report(devices: list[DeviceCheck], broker: BrokerCheck, skipped: tuple[str, ...] = ()) -> str:
    """The human-readable report; ``skipped``: names of disabled devices."""
    lines = [f"device {name}: skipped (enabled: false)" for name in skipped]
    for d in devices:
        lines.append(f"device {d.name} ({d.protocol}): {'OK' if d.ok else 'FAILED'}: {d.reason}")
        if d.identity is not None:
            lines.append(f"    identity: {d.identity}")
        for r in d.readings:
            unit = f" {r.unit}" if r.unit else ""
            lines.append(f"    {r.path} = {_format_value(r.value)}{unit} ({r.quality})")
    lines.append(f"broker {broker.url}: {'OK' if broker.ok else 'FAILED'}: {broker.reason}")
    failed = sum(not d.ok for d in devices) + (not broker.ok)
    lines.append("all checks passed" if not failed else f"{counted(failed, 'check')} failed")
    return "\n".join(lines)


@click.command()
@config_option()
@click.option("--timeout", type=float, default=10.0, show_default=True,
              help="seconds for each step (connect, read, CONNACK)")
def check(config_path: str, timeout: float) -> None:
    """Connect to every enabled device and the broker once; report and read one value each."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(exit_codes.CONFIG_INVALID) from None
    setup_logging("ERROR", config.logging.format)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # its reasons are in the report
    config_dir = Path(config_path).resolve().parent
    devices, broker = asyncio.run(run_checks(config, config_dir, timeout,
                                             say=lambda text: click.echo(text, err=True)))
    skipped = tuple(d.name for d in config.devices if not d.enabled)
    click.echo(report(devices, broker, skipped))
    if not broker.ok or not all(d.ok for d in devices):
        raise SystemExit(exit_codes.CHECK_FAILED)
