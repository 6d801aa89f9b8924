"""What the gateway knows of the ``test_counter`` driver: this registration, nothing else."""

from __future__ import annotations

from drivers.registration import DriverRegistration
from tests.drivers.throwaway.config import CounterDeviceConfig

REGISTRATIONS = (
    DriverRegistration(
        config=CounterDeviceConfig,
        driver="tests.drivers.throwaway.driver:CounterDriver",
        metrics="tests.drivers.throwaway.driver:counter_metrics",
        tools={"scan": "tests.drivers.throwaway.scan_cmd:scan"},
    ),
)
