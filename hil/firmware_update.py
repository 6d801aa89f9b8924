"""Firmware updates for HIL scenarios: one call, whichever side owns the node's port.

- The gateway runs as a separate process (``hil/scenario/gateway_process.py``):
  it owns the serial port, so the update goes through its local API. Enable
  ``http`` in its config (a fixed port) and call :func:`update_via_gateway`.
- No gateway holds the port (a scenario that drives the node on its own):
  :func:`update_on_port` opens the port with a node driver and runs the update.

Both return the result as a dict (``outcome``: ``updated``, ``rolled_back`` or
``already_running``; ``old_version``, ``running_version``, ``image_sha256``,
``resumes``, ``seconds``, ``detail``) and raise :class:`FirmwareUpdateFailed`
when the update is refused or fails. :func:`test_image` builds an MCUboot image
for the simulated node (``bad=True``: it fails its self-test and is rolled back).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from firmware_bridge.config import McuNodeDeviceConfig
from firmware_bridge.image import build_image
from firmware_bridge.standalone import node_session
from firmware_bridge.update import UpdateProgress, UpdateTimeouts, update_firmware
from gateway.errors import DeviceUnreachable, FirmwareApiError, FirmwareUpdateError
from gateway.http_firmware import update_through_gateway

Progress = Callable[[dict[str, Any]], None]


class FirmwareUpdateFailed(Exception):
    """The update was refused or failed; the node still runs a bootable image."""


def test_image(version: tuple[int, int, int], size: int = 64 * 1024, *,
               bad: bool = False) -> bytes:
    """An MCUboot image (firmware_bridge/image.py) the simulated node accepts."""
    return build_image(version, size, bad=bad)


test_image.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


async def update_via_gateway(api_url: str, device: str, image: bytes, *,
                             token: str | None = None, sha256: str | None = None,
                             progress: Progress | None = None) -> dict[str, Any]:
    """Update ``device`` through the running gateway's local API at ``api_url``."""
    try:
        return await update_through_gateway(api_url, device, image, token=token,
                                            sha256=sha256, progress=progress)
    except FirmwareApiError as exc:
        raise FirmwareUpdateFailed(str(exc)) from None


async def update_on_port(device: dict[str, Any] | McuNodeDeviceConfig, image: bytes, *,
                         sha256: str | None = None, progress: Progress | None = None,
                         timeouts: UpdateTimeouts | None = None) -> dict[str, Any]:
    """Open the node's port (no gateway may hold it) and update it.

    ``device``: the ``mcu_node`` device entry as in the gateway config (a dict, e.g.
    from ``mcu_node_device_config``), or its parsed config.
    """
    config = device if isinstance(device, McuNodeDeviceConfig) else \
        McuNodeDeviceConfig.model_validate(device)

    def on_progress(p: UpdateProgress) -> None:
        if progress is not None:
            progress({"phase": str(p.phase), "done": p.done, "total": p.total,
                      "detail": p.detail})

    try:
        async with node_session(config) as driver:
            result = await update_firmware(driver, image, expected_sha256=sha256,
                                           progress=on_progress, timeouts=timeouts)
    except (FirmwareUpdateError, DeviceUnreachable) as exc:
        raise FirmwareUpdateFailed(str(exc)) from None
    return result.as_dict()
