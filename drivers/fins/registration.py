"""Omron FINS as the gateway knows it (listed in :mod:`drivers.registry`)."""

from __future__ import annotations

from drivers.fins.config import FinsDeviceConfig
from drivers.registration import DriverRegistration

REGISTRATIONS = (
    DriverRegistration(
        config=FinsDeviceConfig,
        driver="drivers.fins.driver:FinsDriver",
        writes=True,
        tools={"scan": "drivers.fins.scan_cmd:scan"},
        discovery={"scan": "drivers.fins.scan_cmd:scan_for_api"},
    ),
)
