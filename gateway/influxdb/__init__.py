"""InfluxDB v2 write API: line protocol, a retrying writer, the gateway's sink."""

from gateway.errors import InfluxBatchRefused, InfluxWriteFailed
from gateway.influxdb.line_protocol import BatchEncoder, series_prefix
from gateway.influxdb.writer import InfluxTarget, InfluxWriter, write_until_done

__all__ = [
    "BatchEncoder",
    "InfluxBatchRefused",
    "InfluxTarget",
    "InfluxWriteFailed",
    "InfluxWriter",
    "series_prefix",
    "write_until_done",
]
