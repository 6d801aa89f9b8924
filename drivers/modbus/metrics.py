"""Prometheus metrics of each Modbus unit (device, unit id), and of the ports 4G DTUs dial
in to, read from the drivers at scrape time.

A TCP gateway to an RS-485 line, or a line with several meters, has one
connection and several unit ids; the device-level error counters do not say
which of them fails. These families do, from :class:`~drivers.modbus.driver.UnitHealth`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from drivers.base import Driver
from drivers.modbus.driver import ModbusDriver, ModbusDtuDriver

#: UnitHealth error kinds that mean "an answer came, but not a usable frame"
BAD_FRAME_KINDS = ("garbled", "decode")
_LABELS = ["device", "unit"]


def modbus_unit_metrics(drivers: Mapping[str, Driver | None]) -> Iterator[Metric]:
    """Per-unit families of every Modbus driver in ``drivers`` (device name -> driver)."""
    requests = CounterMetricFamily(
        "chenxing_modbus_unit_requests",
        "Modbus requests sent, incl. retries and writes",
        labels=_LABELS,
    )
    retries = CounterMetricFamily(
        "chenxing_modbus_unit_retries",
        "Reads sent again after a transient failure",
        labels=_LABELS,
    )
    exceptions = CounterMetricFamily(
        "chenxing_modbus_unit_exceptions",
        "Modbus exception responses by exception code",
        labels=[*_LABELS, "code"],
    )
    timeouts = CounterMetricFamily(
        "chenxing_modbus_unit_timeouts",
        "Requests without an answer in time",
        labels=_LABELS,
    )
    bad_frames = CounterMetricFamily(
        "chenxing_modbus_unit_bad_frames",
        "Answers that were not usable: garbled (no valid frame, e.g. CRC) or decode "
        "(wrong length or function code)",
        labels=[*_LABELS, "kind"],
    )
    skipped = CounterMetricFamily(
        "chenxing_modbus_unit_skipped_requests",
        "Reads not sent because the unit was backed off (their tags BAD)",
        labels=_LABELS,
    )
    backoffs = CounterMetricFamily(
        "chenxing_modbus_unit_backoffs",
        "Times the unit was backed off after failures",
        labels=_LABELS,
    )
    backed_off = GaugeMetricFamily(
        "chenxing_modbus_unit_backed_off",
        "1 while the unit is backed off (not asked)",
        labels=_LABELS,
    )
    backoff_left = GaugeMetricFamily(
        "chenxing_modbus_unit_backoff_remaining_seconds",
        "Seconds until a backed-off unit is asked again (0 when not backed off)",
        labels=_LABELS,
    )
    failures = GaugeMetricFamily(
        "chenxing_modbus_unit_failures_in_a_row",
        "Requests in a row that failed with a timeout or exception 10/11",
        labels=_LABELS,
    )
    now = time.monotonic()  # the event loop's clock: asyncio uses time.monotonic
    for device, driver in drivers.items():
        if not isinstance(driver, ModbusDriver):
            continue
        for unit, health in sorted(driver.units.items()):
            labels = [device, str(unit)]
            requests.add_metric(labels, health.requests)
            retries.add_metric(labels, health.retries)
            timeouts.add_metric(labels, health.errors["timeout"])
            skipped.add_metric(labels, health.errors["skipped"])
            backoffs.add_metric(labels, health.errors["backoff"])
            for kind in BAD_FRAME_KINDS:
                bad_frames.add_metric([*labels, kind], health.errors[kind])
            for kind, count in sorted(health.errors.items()):
                if kind.startswith("exception_"):
                    exceptions.add_metric([*labels, kind.removeprefix("exception_")], count)
            left = max(0.0, health.skip_until - now)
            backed_off.add_metric(labels, 1.0 if left > 0 else 0.0)
            backoff_left.add_metric(labels, left)
            failures.add_metric(labels, health.failures)
    yield from (requests, retries, exceptions, timeouts, bad_frames, skipped, backoffs,
                backed_off, backoff_left, failures)
    yield from _dtu_metrics(drivers)


def _dtu_metrics(drivers: Mapping[str, Driver | None]) -> Iterator[Metric]:
    """What happened on the ports DTUs dial in to, and on each DTU's connection."""
    connections = CounterMetricFamily(
        "chenxing_modbus_dtu_connections",
        "Connections to a DTU listening port by outcome: accepted, registered (replaced: "
        "a DTU's new connection replaced its old one), refused (unknown registration "
        "packet), unregistered (no registration packet in time)",
        labels=["port", "outcome"],
    )
    registrations = CounterMetricFamily(
        "chenxing_modbus_dtu_registrations", "Times the device's DTU registered",
        labels=["device"])
    packets = CounterMetricFamily(
        "chenxing_modbus_dtu_packets_dropped",
        "Heartbeat and registration packets dropped from the DTU's current connection",
        labels=["device"])
    garbage = CounterMetricFamily(
        "chenxing_modbus_dtu_garbage_bytes",
        "Bytes skipped as garbage on the DTU's current connection", labels=["device"])
    seen: set[int] = set()
    for device, driver in drivers.items():
        if not isinstance(driver, ModbusDtuDriver):
            continue
        listener = driver.listener
        if listener is not None and id(listener) not in seen:
            seen.add(id(listener))
            counts = listener.counts
            for outcome in ("accepted", "registered", "replaced", "refused", "unregistered"):
                connections.add_metric([str(listener.port), outcome], getattr(counts, outcome))
        slot = driver.slot
        if slot is not None:
            registrations.add_metric([device], slot.registrations)
            if slot.stream is not None:
                packets.add_metric([device], slot.stream.packets_dropped)
                garbage.add_metric([device], slot.stream.garbage)
    yield from (connections, registrations, packets, garbage)
