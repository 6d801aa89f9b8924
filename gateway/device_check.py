"""One device connected to once, read once and closed: ``chenxing-gateway check`` for each
device, and the config API's connection test (``POST /api/config/test-connection``), in
the same words."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from drivers.base import Driver
from drivers.error_words import describe_errors
from drivers.registration import DriverRegistry
from drivers.registry import REGISTRY
from gateway.config.device import DeviceConfig
from gateway.errors import DriverError
from gateway.listen_ports import ListenPorts
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

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
                f"connected, but {counted(len(bad), 'tag')} not good: {', '.join(bad)}",
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


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
