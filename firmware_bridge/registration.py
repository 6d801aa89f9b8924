"""MCU sensor nodes (protocol ``mcu_node``) as the gateway knows them (listed in
:mod:`drivers.registry`)."""

from __future__ import annotations

from drivers.registration import DriverRegistration
from firmware_bridge.config import McuNodeDeviceConfig

REGISTRATIONS = (
    DriverRegistration(
        config=McuNodeDeviceConfig,
        driver="firmware_bridge.driver:McuNodeDriver",
        serial="shared",  # the nodes of one RS-485 line share its port
        firmware="firmware_bridge.firmware:MCU_FIRMWARE",
    ),
)
