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
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np

from drivers.base import Driver
from drivers.error_words import describe_errors
from drivers.registration import DriverRegistry
from drivers.registry import REGISTRY
from gateway import exit_codes
from gateway.cli.config_option import config_option
from gateway.config.device import DeviceConfig
from gateway.config.loader import load_config
from gateway.config.models import GatewayConfig, MqttConfig, MqttTlsConfig
from gateway.config.secrets import resolve_secret
from gateway.errors import ConfigError, DriverError
from gateway.listen_ports import ListenPorts
from gateway.logsetup import setup_logging
from gateway.serial_ports import SerialPorts
from gateway.tags import TagCatalog
from gateway.types import QUALITY_NAMES, Quality, SampleBatch

log = logging.getLogger(__name__)


@dataclass(slots=True)
class TagReading:
    """One value read by the check (published units: scale and offset applied)."""

    path: str
    value: float | int | str | None  # int: a 64-bit integer tag, exact
    unit: str
    quality: str


@dataclass(slots=True)
class DeviceCheck:
    """The outcome for one device."""

    name: str
    protocol: str
    ok: bool
    reason: str
    readings: list[TagReading] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    #: what the device says it is, where its protocol tells (Driver.identity)
    identity: str | None = None


@dataclass(slots=True)
class BrokerCheck:
    """The outcome for the broker."""

    url: str
    ok: bool
    reason: str


def _scaled(catalog: TagCatalog, tag_id: int, raw: object) -> float | int | str | None:
    cfg = catalog[tag_id].config
    if isinstance(raw, str):
        return raw
    if raw is None:
        return None
    wide = catalog.wide.get(tag_id)
    if wide is not None and isinstance(raw, int | np.integer) and not isinstance(raw, bool):
        return int(raw) * wide.scale + wide.offset  # exact, as the pipeline publishes it
    if not isinstance(raw, int | float | np.integer | np.floating):
        return str(raw)
    value = float(raw)
    if math.isnan(value):
        return None
    scaled = value * cfg.scale
    return scaled + cfg.offset if cfg.offset else scaled  # -0.0 + 0.0 would be +0.0


async def _read_once(driver: Driver, timeout: float) -> list[SampleBatch]:
    """One poll of every group, or the first notifications of a subscription."""
    groups = driver.poll_groups()
    if groups:
        batches = []
        for group in groups:
            async with asyncio.timeout(timeout):
                batches.append(await driver.read(group))
        return batches
    wanted = set(driver.tag_ids)
    seen: set[int] = set()
    got: list[SampleBatch] = []
    all_seen = asyncio.Event()

    def emit(batch: SampleBatch) -> None:
        got.append(batch)
        seen.update(int(i) for i in batch.tag_ids)
        if wanted <= seen:
            all_seen.set()

    task = asyncio.create_task(driver.subscribe(emit))
    waiter = asyncio.create_task(all_seen.wait())
    try:
        await asyncio.wait([task, waiter], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (task, waiter):
            t.cancel()
        await asyncio.wait([task, waiter])
    if task.done() and not task.cancelled():
        failure = task.exception()
        if failure is not None:
            raise failure
    return got


async def _identity(driver: Driver, timeout: float) -> str | None:
    """The device's identity, or why it could not be read (never raises for the device)."""
    try:
        async with asyncio.timeout(timeout):
            return await driver.identity()
    except TimeoutError:
        return f"unknown (no answer within {timeout:g} s)"
    except DriverError as exc:
        return f"unknown ({exc})"


async def check_device(device: DeviceConfig, catalog: TagCatalog, timeout: float,
                       ports: SerialPorts, drivers: DriverRegistry = REGISTRY,
                       listen_ports: ListenPorts | None = None,
                       say: Callable[[str], None] | None = None) -> DeviceCheck:
    """Connect once, read once, close. Never raises. ``ports``, ``listen_ports``: shared by
    the devices checked at once, as in the gateway (devices on one serial line share its
    port, DTUs dial in to one listening port). ``say``: told at once when the connect waits
    for the device to call in (a DTU), which may take a while."""
    name, protocol = device.name, device.protocol
    try:
        driver = drivers.create_driver(device, catalog, ports, listen_ports)
    except Exception as exc:  # a config the driver cannot use
        return DeviceCheck(name, protocol, False, f"cannot create the driver: {exc}")
    try:
        awaited = driver.awaited_peer()
        if awaited is not None and say is not None:
            say(f"device {name}: waiting up to {timeout:g} s for {awaited} "
                "(--timeout to wait longer)")
        try:
            async with asyncio.timeout(timeout):
                await driver.connect()
        except TimeoutError:
            if awaited is not None:
                return DeviceCheck(name, protocol, False, f"waited {timeout:g} s for "
                                   f"{awaited}; it did not (--timeout to wait longer)")
            return DeviceCheck(name, protocol, False, f"connect timed out after {timeout:g} s")
        except DriverError as exc:
            return DeviceCheck(name, protocol, False, str(exc))
        identity = await _identity(driver, timeout)
        try:
            batches = await _read_once(driver, timeout)
        except TimeoutError:
            return DeviceCheck(name, protocol, False,
                               f"connected, but no values within {timeout:g} s")
        except DriverError as exc:
            return DeviceCheck(name, protocol, False, f"connected, but reading failed: {exc}")
        latest: dict[int, tuple[object, int]] = {}
        for batch in batches:
            for i, tag_id in enumerate(batch.tag_ids):
                latest[int(tag_id)] = (batch.values[i], int(batch.quality[i]))
        readings = []
        bad: list[str] = []
        for tag_id in driver.tag_ids:
            tag = catalog[tag_id]
            raw, q = latest.get(tag_id, (None, -1))
            quality = QUALITY_NAMES[q] if 0 <= q < len(QUALITY_NAMES) else "no value"
            readings.append(TagReading(tag.path, _scaled(catalog, tag_id, raw), tag.unit, quality))
            if q != Quality.GOOD:
                bad.append(tag.name)
        errors = {k: v for k, v in driver.errors.items() if v}
        if bad:
            reason = "; ".join([
                f"connected, but {_counted(len(bad), 'tag')} not good: {', '.join(bad)}",
                *describe_errors(errors),
            ])
            return DeviceCheck(name, protocol, False, reason, readings, errors, identity)
        return DeviceCheck(name, protocol, True, "connected and read", readings, errors, identity)
    except Exception as exc:  # a driver bug: report it, never crash the check
        log.debug("device %s: check failed", name, exc_info=True)
        return DeviceCheck(name, protocol, False, f"internal error: {exc!r}")
    finally:
        with contextlib.suppress(Exception):
            await driver.close()


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


def _counted(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


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
    lines.append("all checks passed" if not failed else f"{_counted(failed, 'check')} failed")
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
