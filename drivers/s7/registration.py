"""Siemens S7 (S7comm over ISO-on-TCP) as the gateway knows it (see :mod:`drivers.registry`)."""

from __future__ import annotations

from drivers.registration import DriverRegistration
from drivers.s7.config import S7DeviceConfig

REGISTRATIONS = (
    DriverRegistration(
        config=S7DeviceConfig,
        driver="drivers.s7.driver:S7Driver",
        writes=True,
        tools={"scan": "drivers.s7.scan_cmd:scan"},
        discovery={"scan": "drivers.s7.scan_cmd:scan_for_api"},
        family="s7",
    ),
)
