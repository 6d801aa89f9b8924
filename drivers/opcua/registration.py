"""OPC UA as the gateway knows it (listed in :mod:`drivers.registry`)."""

from __future__ import annotations

from drivers.opcua.config import OpcUaDeviceConfig
from drivers.registration import DriverRegistration

REGISTRATIONS = (
    DriverRegistration(
        config=OpcUaDeviceConfig,
        driver="drivers.opcua.driver:OpcUaDriver",
        writes=True,
        discovery={"browse": "drivers.opcua.browse_cmd:browse_for_api"},
        tools={
            "browse": "drivers.opcua.browse_cmd:browse",
            "certs": "drivers.opcua.certs_cmd:certs",
        },
    ),
)
