"""The firmware-update capability: what the gateway's firmware routes need of a driver.

A driver whose devices take firmware updates names an object implementing
:class:`FirmwareUpdates` in its registration (``firmware="package.module:NAME"``).
The brain's ``firmware_update`` command (``gateway/commands/firmware.py``), the local
API's ``POST /api/firmware/{device}`` (``gateway/http_firmware.py``) and
``chenxing-gateway firmware upload`` reach an update only through it, so they name
no driver. MCU nodes implement it in ``firmware_bridge/firmware.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from drivers.base import Driver
    from gateway.config.device import DeviceConfig

#: :attr:`FirmwareResult.outcome` when the device came back on its old image
ROLLED_BACK = "rolled_back"


class AllowedImage(Protocol):
    """One image the brain may install: a file name in the firmware folder and its hash."""

    @property
    def file(self) -> str: ...

    @property
    def sha256(self) -> str: ...


class FirmwareAllowList(Protocol):
    """A device's ``firmware`` block: the only images the brain may install on it."""

    @property
    def folder(self) -> Path: ...

    @property
    def allow(self) -> Sequence[AllowedImage]: ...


class CheckedImage(Protocol):
    """An image that passed :meth:`FirmwareUpdates.check_image`."""

    @property
    def version_text(self) -> str: ...

    @property
    def size(self) -> int: ...


class FirmwareProgress(Protocol):
    """Where an update is: ``done`` of ``total`` bytes in ``phase``."""

    @property
    def phase(self) -> str: ...

    @property
    def done(self) -> int: ...

    @property
    def total(self) -> int: ...

    @property
    def detail(self) -> str: ...


class FirmwareResult(Protocol):
    """How an update ended. ``outcome``: ``updated``, ``rolled_back`` (a result, not an
    error: the device refused the new image and runs the old one) or ``already_running``."""

    @property
    def outcome(self) -> str: ...

    @property
    def old_version(self) -> str: ...

    @property
    def running_version(self) -> str: ...

    @property
    def detail(self) -> str: ...

    def as_dict(self) -> dict[str, Any]: ...


class FirmwareUpdates(Protocol):
    """Firmware updates of one driver's devices.

    ``device_kind`` names such a device in messages ("MCU node"). Methods that may
    import the update's libraries the first time (``check_image``, ``update``,
    ``session``) are called from a thread or awaited: the event loop keeps polling.
    """

    device_kind: str

    def allow_list(self, device: DeviceConfig) -> FirmwareAllowList | None:
        """The device's allow-list for updates from the brain (None: not enabled)."""

    def check_image(self, image: bytes, sha256: str | None = None) -> CheckedImage:
        """The parsed image; raise :class:`ImageRefused` when it cannot be sent."""

    def unavailable(self, driver: Driver) -> str | None:
        """Why an update cannot start on ``driver`` now (not connected), or None."""

    def running(self, driver: Driver) -> bool:
        """An update of ``driver``'s device is in progress."""

    def reported_version(self, driver: Driver) -> str | None:
        """The firmware version the device says it runs (None until it said): the births'
        inventory."""

    async def update(self, driver: Driver, image: bytes | CheckedImage, *,
                     expected_sha256: str | None = None,
                     progress: Callable[[FirmwareProgress], None] | None = None,
                     timeouts: Any = None) -> FirmwareResult:
        """Update the device behind ``driver`` (connected, in the gateway or a session);
        raise :class:`ImageRefused` before anything is sent, :class:`FirmwareUpdateError`
        when the device does not cooperate."""

    def session(self, device: DeviceConfig) -> AbstractAsyncContextManager[Driver]:
        """A connected driver of ``device`` outside a running gateway (the CLI's direct
        upload); raise :class:`~gateway.errors.DeviceUnreachable` when it cannot connect."""
