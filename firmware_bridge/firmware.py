"""MCU nodes' firmware updates as the gateway sees them (:class:`drivers.firmware.FirmwareUpdates`).

The registration of ``mcu_node`` names :data:`MCU_FIRMWARE`; the gateway's firmware
command, local API route and CLI reach :mod:`firmware_bridge.update` only through
it. Importing this module is cheap: smpclient (:mod:`firmware_bridge.update`,
about 0.3 s of CPU the first time) is imported by the methods that need it, which
the gateway calls from a thread or awaits.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from firmware_bridge.config import McuNodeDeviceConfig

if TYPE_CHECKING:
    from drivers.base import Driver
    from drivers.firmware import CheckedImage, FirmwareProgress, FirmwareResult, FirmwareUpdates
    from firmware_bridge.config import NodeFirmwareConfig
    from firmware_bridge.driver import McuNodeDriver
    from gateway.config.device import DeviceConfig


class McuNodeFirmware:
    """MCUboot images over MCUmgr SMP, on the port the node's driver owns."""

    device_kind = "MCU node"

    def allow_list(self, device: DeviceConfig) -> NodeFirmwareConfig | None:
        return device.firmware if isinstance(device, McuNodeDeviceConfig) else None

    def check_image(self, image: bytes, sha256: str | None = None) -> CheckedImage:
        from firmware_bridge.update import check_image

        return check_image(image, sha256)

    def unavailable(self, driver: Driver) -> str | None:
        node = _node_driver(driver)
        if not node.connected or node.node is None:
            return f"{driver.device_name} is not connected to its node"
        return None

    def running(self, driver: Driver) -> bool:
        return _node_driver(driver).smp_sink is not None

    def reported_version(self, driver: Driver) -> str | None:
        from firmware_bridge.driver import McuNodeDriver

        hello = driver.node if isinstance(driver, McuNodeDriver) else None
        return None if hello is None else ".".join(map(str, hello.firmware))

    async def update(self, driver: Driver, image: bytes | CheckedImage, *,
                     expected_sha256: str | None = None,
                     progress: Callable[[FirmwareProgress], None] | None = None,
                     timeouts: Any = None) -> FirmwareResult:
        from firmware_bridge.image import FirmwareImage
        from firmware_bridge.update import update_firmware

        if not isinstance(image, bytes | FirmwareImage):
            raise TypeError(f"not an MCU node image: {type(image).__name__}")
        return await update_firmware(_node_driver(driver), image,
                                     expected_sha256=expected_sha256,
                                     progress=progress, timeouts=timeouts)

    def session(self, device: DeviceConfig) -> AbstractAsyncContextManager[Driver]:
        from firmware_bridge.standalone import node_session

        if not isinstance(device, McuNodeDeviceConfig):
            raise TypeError(f"{device.name} is not an MCU node")
        return node_session(device)


def _node_driver(driver: Driver) -> McuNodeDriver:
    from firmware_bridge.driver import McuNodeDriver
    from gateway.errors import FirmwareUpdateError

    if not isinstance(driver, McuNodeDriver):
        raise FirmwareUpdateError(f"{driver.device_name}: not an MCU node")
    return driver


#: what the ``mcu_node`` registration names (mypy checks it against the capability)
MCU_FIRMWARE: FirmwareUpdates = McuNodeFirmware()
