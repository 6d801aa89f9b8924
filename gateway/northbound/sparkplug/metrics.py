"""Prometheus families of the Sparkplug edge node (``/metrics``)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily

from gateway.northbound.sparkplug.edge_node import SparkplugCounters

_HELP = {
    "rebirths_requested": "Rebirths requested by NCMD Node Control/Rebirth",
    "dbirths": "DBIRTH messages published",
    "ddeaths": "DDEATH messages published",
    "historical_messages": "Data messages replayed with is_historical",
    "historical_reencoded": "Replayed data messages encoded live, re-encoded as historical",
    "taken_back": "Unacknowledged QoS 1 messages of a dropped connection replayed after births",
    "dead_device_withheld": "Bad-quality samples of dead devices not published (DDEATH says it)",
    "state_messages": "Primary host STATE messages received",
    "bad_state_messages": "Primary host STATE messages ignored as malformed",
}


def sparkplug_metrics(counters: SparkplugCounters) -> Iterator[CounterMetricFamily]:
    for name, text in _HELP.items():
        yield CounterMetricFamily(f"chenxing_sparkplug_{name}", text, value=getattr(counters, name))
