"""Southbound protocol drivers behind one interface (:mod:`drivers.base`)."""

from drivers.base import ConnectionLost, DeviceUnreachable, Driver, DriverError, PollGroup

__all__ = ["ConnectionLost", "DeviceUnreachable", "Driver", "DriverError", "PollGroup"]
