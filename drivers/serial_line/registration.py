"""Serial-line instruments as the gateway knows them (listed in :mod:`drivers.registry`)."""

from __future__ import annotations

from drivers.registration import DriverRegistration
from drivers.serial_line.config import SerialLineDeviceConfig

REGISTRATIONS = (
    DriverRegistration(
        config=SerialLineDeviceConfig,
        driver="drivers.serial_line.driver:SerialLineDriver",
        serial="exclusive",  # an instrument talks on its port alone
        metrics="drivers.serial_line.metrics:serial_line_metrics",
    ),
)
