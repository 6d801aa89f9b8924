"""The ``firmware_update`` action: update an MCU node through the running gateway's local API
(hil/firmware_update.py) and keep what came of it for the expectations."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from hil.firmware_update import FirmwareUpdateFailed, test_image, update_via_gateway

__all__ = ["FirmwareRecord", "run_firmware_update"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class FirmwareRecord:
    """One update the runner asked for (times: scenario seconds)."""

    name: str
    device: str
    version: str
    bad: bool
    started_at: float
    ended_at: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    phases: list[str] = field(default_factory=list)


async def run_firmware_update(
    record: FirmwareRecord, api_url: str, size: int, clock: Any
) -> FirmwareRecord:
    """Build the image, send it through the gateway, fill in ``record``; never raises for a
    refused or failed update (the expectation reports it)."""
    major, minor, patch = (int(x) for x in record.version.split("."))
    image = test_image((major, minor, patch), size, bad=record.bad)

    def on_progress(event: dict[str, Any]) -> None:
        phase = str(event.get("phase"))
        if not record.phases or record.phases[-1] != phase:
            record.phases.append(phase)

    began = time.monotonic()
    try:
        record.result = await update_via_gateway(
            api_url, record.device, image, progress=on_progress
        )
    except FirmwareUpdateFailed as exc:
        record.error = str(exc)
    except (OSError, aiohttp.ClientError, TimeoutError) as exc:  # gateway down, port taken
        record.error = f"the gateway's API at {api_url} did not answer: {exc}"
    record.ended_at = clock()
    log.info("firmware update %s of %s: %s in %.2f s", record.name, record.device,
             record.result["outcome"] if record.result else record.error,
             time.monotonic() - began)
    return record
