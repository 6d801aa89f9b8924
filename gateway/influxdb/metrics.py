"""Prometheus families of the InfluxDB sink, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gateway.influxdb.sink import InfluxSink


def sink_metrics(sink: InfluxSink) -> Iterator[Metric]:
    c = sink.counters
    stats = sink.spool.stats()
    counters = {
        "chenxing_influxdb_points_written": ("Points accepted by InfluxDB (2xx)",
                                             c.points_written),
        "chenxing_influxdb_batches_written": ("Batches accepted by InfluxDB", c.batches_written),
        "chenxing_influxdb_write_errors": ("Failed writes, each retried with backoff",
                                           c.write_errors),
        "chenxing_influxdb_points_rejected": ("Points in batches InfluxDB refused (400/413/422)",
                                              c.points_rejected),
        "chenxing_influxdb_points_dropped": ("Points dropped from the sink's spool (full, age)",
                                             stats.dropped_samples),
        "chenxing_influxdb_spool_write_errors": (
            "Transactions of the sink's spool that failed (disk full, I/O error)",
            getattr(sink.spool, "write_errors", 0)),
        "chenxing_influxdb_restricted_samples_withheld": (
            "Samples of restricted tags not sent to InfluxDB", c.restricted_withheld),
    }  # fmt: skip
    for name, (doc, value) in counters.items():
        yield CounterMetricFamily(name, doc, value=value)
    yield GaugeMetricFamily(
        "chenxing_influxdb_spool_batches", "Batches in the sink's spool (waiting and in flight)",
        value=stats.messages,
    )
    yield GaugeMetricFamily(
        "chenxing_influxdb_spool_bytes", "Line-protocol bytes in the sink's spool",
        value=stats.bytes,
    )
    yield GaugeMetricFamily(
        "chenxing_influxdb_spool_oldest_age_seconds", "Age of the oldest batch held",
        value=stats.oldest_age_s,
    )
    yield GaugeMetricFamily(
        "chenxing_influxdb_buffered_points", "Points gathered, not yet in the spool",
        value=c.buffered_points,
    )
    yield GaugeMetricFamily(
        "chenxing_influxdb_up", "1 when the last write was accepted", value=float(sink.connected)
    )
