"""Run a real Gateway in the test's event loop against real simulators and a real broker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from drivers.registration import DriverRegistry
from drivers.registry import REGISTRY
from gateway.config.loader import load_config_text
from gateway.config.models import GatewayConfig
from gateway.runtime.gateway import Gateway, ShutdownReport
from hil.devices.modbus_meter import meter_tag_configs

METER_TAGS: list[dict[str, Any]] = meter_tag_configs(
    "voltage", "current", "active_power", "energy_import", "temperature", "relay_closed"
)


def gateway_config(
    tmp: Path,
    broker_port: int,
    devices: list[dict[str, Any]],
    http: dict[str, Any] | None = None,
    commands: dict[str, Any] | None = None,
    drivers: DriverRegistry = REGISTRY,
    **northbound: Any,
) -> GatewayConfig:
    body = gateway_body(tmp, broker_port, devices, http, commands, **northbound)
    return load_config_text(json.dumps(body), "test-config.yaml", tmp, drivers)


def gateway_body(
    tmp: Path,
    broker_port: int,
    devices: list[dict[str, Any]],
    http: dict[str, Any] | None = None,
    commands: dict[str, Any] | None = None,
    **northbound: Any,
) -> dict[str, Any]:
    """The config of :func:`gateway_config` as data (a test edits it for a live change)."""
    body: dict[str, Any] = {
        "gateway": {
            "id": "gw-test",
            "site": "plant",
            "line": "line-1",
            "state_dir": str(tmp / "state"),
        },
        "devices": devices,
        "northbound": {
            "format": "json",  # the tests' default; Sparkplug tests pass format="sparkplug"
            "publish_interval": "50ms",
            "mqtt": {
                "host": "127.0.0.1",
                "port": broker_port,
                "reconnect_min": 0.2,
                "reconnect_max": 1.0,
            },
            **northbound,
        },
        "http": {"port": 0, **(http or {})},
    }
    if commands is not None:
        body["commands"] = commands
    return body


def meter_device(name: str, port: int, **kw: Any) -> dict[str, Any]:
    return {
        "name": name,
        "protocol": "modbus_tcp",
        "host": "127.0.0.1",
        "port": port,
        "poll_interval": "100ms",
        "timeout": "500ms",
        "tags": METER_TAGS,
        **kw,
    }


class RunningGateway:
    def __init__(self, gateway: Gateway, task: asyncio.Task[ShutdownReport], stop: asyncio.Event):
        self.gateway = gateway
        self.task = task
        self.stop_event = stop

    async def stop(self) -> ShutdownReport:
        self.stop_event.set()
        return await asyncio.wait_for(self.task, 15)


@asynccontextmanager
async def running(config: GatewayConfig, drivers: DriverRegistry = REGISTRY,
                  config_path: Path | None = None) -> AsyncIterator[RunningGateway]:
    """Run ``config`` until the block ends; with ``config_path`` (the file ``config`` was
    read from) live changes keep that file and the config store in step."""
    stop = asyncio.Event()
    gateway = Gateway(config, config_path.parent if config_path else None, config_path,
                      drivers=drivers)
    task = asyncio.create_task(gateway.run(stop))
    handle = RunningGateway(gateway, task, stop)
    started = asyncio.create_task(gateway.started.wait())
    await asyncio.wait([started, task], timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # it failed to start: raise why
    started.cancel()
    try:
        yield handle
    finally:
        if not task.done():
            await handle.stop()
