"""DL/T 645 meters as the gateway knows them (listed in :mod:`drivers.registry`)."""

from __future__ import annotations

from drivers.dlt645.config import Dlt645SerialDeviceConfig, Dlt645TcpDeviceConfig
from drivers.registration import DriverRegistration

_TOOLS = {"scan": "drivers.dlt645.scan_cmd:scan"}

REGISTRATIONS = (
    DriverRegistration(
        config=Dlt645SerialDeviceConfig,
        driver="drivers.dlt645.driver:Dlt645SerialDriver",
        serial="shared",  # the meters of one RS-485 line share its port
        writes=True,
        tools=_TOOLS,
        family="dlt645",
    ),
    DriverRegistration(
        config=Dlt645TcpDeviceConfig,
        driver="drivers.dlt645.driver:Dlt645TcpDriver",
        writes=True,
        tools=_TOOLS,
        family="dlt645",
    ),
)
