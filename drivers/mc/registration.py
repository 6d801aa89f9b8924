"""The MC protocol (SLMP) driver as the gateway knows it (listed in :mod:`drivers.registry`)."""

from __future__ import annotations

from drivers.mc.config import McDeviceConfig
from drivers.registration import DriverRegistration

REGISTRATIONS = (
    DriverRegistration(
        config=McDeviceConfig,
        driver="drivers.mc.driver:McDriver",
        writes=True,
        tools={"scan": "drivers.mc.scan_cmd:scan"},
        discovery={"scan": "drivers.mc.scan_cmd:scan_for_api"},
    ),
)
