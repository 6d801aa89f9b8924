"""Prometheus metrics of each serial-line instrument, read from the drivers at scrape time.

The device-level error counters (``chenxing_device_errors``) say what went wrong;
this family says how much went right, so that a bad-frame rate can be computed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, Metric

from drivers.base import Driver
from drivers.serial_line.driver import SerialLineDriver


def serial_line_metrics(drivers: Mapping[str, Driver | None]) -> Iterator[Metric]:
    """``chenxing_serial_frames{device, outcome="ok"|"bad"}`` of every serial-line driver."""
    frames = CounterMetricFamily(
        "chenxing_serial_frames",
        "Frames received from serial-line instruments: ok (parsed) or bad (rejected)",
        labels=["device", "outcome"],
    )
    any_driver = False
    for name, driver in drivers.items():
        if isinstance(driver, SerialLineDriver):
            any_driver = True
            frames.add_metric([name, "ok"], driver.frames_ok)
            frames.add_metric([name, "bad"], driver.frames_bad)
    if any_driver:
        yield frames
