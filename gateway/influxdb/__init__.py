"""InfluxDB v2 write API: line protocol, a retrying writer, the gateway's sink."""

from gateway.influxdb.line_protocol import BatchEncoder, series_prefix
from gateway.influxdb.writer import (
    InfluxTarget,
    InfluxWriter,
    WriteFailed,
    WriteRejected,
    write_until_done,
)

__all__ = [
    "BatchEncoder",
    "InfluxTarget",
    "InfluxWriter",
    "WriteFailed",
    "WriteRejected",
    "series_prefix",
    "write_until_done",
]
