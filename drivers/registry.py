"""The drivers this gateway speaks: one line per driver package.

Each package declares its drivers in its own ``registration.py``
(``REGISTRATIONS``: :class:`~drivers.registration.DriverRegistration`, with the
config model, the driver, the serial-port use, the metrics and the capabilities).
The config union, the JSON Schema, the runtime, the metrics and the capability
lookups are derived from :data:`REGISTRY`. Adding a driver is its folder plus its
package's line here (drivers/README.md). The order is the order of the config
union and of the JSON Schema.
"""

from __future__ import annotations

from drivers.registration import DriverRegistry

DRIVER_PACKAGES = (
    "drivers.modbus",
    "drivers.opcua",
    "firmware_bridge",
    "drivers.serial_line",
    "drivers.dlt645",
    "drivers.s7",
    "drivers.fins",
    "drivers.mc",
)

REGISTRY = DriverRegistry.from_packages(DRIVER_PACKAGES)
