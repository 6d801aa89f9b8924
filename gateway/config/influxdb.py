"""``northbound.influxdb``: the optional InfluxDB sink (InfluxDB v2 write API)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from gateway.config.types import ByteSize, PositiveDuration, SecretRef, StrictModel

Precision = Literal["s", "ms", "us", "ns"]


def check_http_url(url: str) -> str:
    """An ``http://`` or ``https://`` base URL (no path: /api/v2/write is appended)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid InfluxDB URL {url!r}: write http://host:8086 or https://…")
    return url.rstrip("/")


class InfluxSpoolConfig(StrictModel):
    path: Path | None = Field(
        default=None,
        description="SQLite file; default {state_dir}/influxdb-spool.db; relative to the "
        "config file",
    )
    max_bytes: ByteSize = Field(
        default=256 * 2**20, description="line-protocol bytes held; past it the oldest drop"
    )
    max_age: PositiveDuration = Field(
        default=168 * 3600.0, description="batches older than this are dropped and counted"
    )

    def resolved_path(self, state_dir: Path) -> Path:
        return self.path if self.path is not None else state_dir / "influxdb-spool.db"


class InfluxDbConfig(StrictModel):
    """Every published sample also goes to an InfluxDB v2 write API (InfluxDB 2/3,
    VictoriaMetrics, …), spooled on disk until the server answered 2xx."""

    enabled: bool = True
    url: str = Field(description="base URL, e.g. http://influxdb:8086")
    org: str = Field(default="", description="organisation (InfluxDB 2); may stay empty elsewhere")
    bucket: str = Field(min_length=1, description="bucket (database) written to")
    token: SecretRef | None = Field(
        default=None, description="API token: {env: VAR} or {file: PATH}"
    )
    precision: Precision = Field(default="ms", description="timestamp precision written")
    measurement: str = Field(
        default="{device}",
        min_length=1,
        description="measurement name; {device}, {gateway}, {site} and {line} are replaced",
    )
    unsigned_integers: bool = Field(
        default=True,
        description="write uint64 tags as unsigned fields (uint=…u), exact over their whole "
        "range (InfluxDB 2/3, VictoriaMetrics); false for a target that refuses the 'u' suffix "
        "(InfluxDB 1.x): then uint=…i up to 2**63-1 and the digits in 'text' above it",
    )
    batch_size: int = Field(default=5000, ge=1, le=100_000, description="points per write")
    flush_interval: PositiveDuration = Field(
        default=1.0, description="points are gathered this long into one write"
    )
    timeout: PositiveDuration = Field(default=10.0, description="of one HTTP write")
    retry_min: PositiveDuration = Field(default=1.0, description="first retry delay")
    retry_max: PositiveDuration = Field(default=60.0, description="longest retry delay")
    spool: InfluxSpoolConfig = Field(default_factory=InfluxSpoolConfig)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value)

    @field_validator("measurement")
    @classmethod
    def _known_fields(cls, value: str) -> str:
        return check_measurement_template(value)


def check_measurement_template(value: str) -> str:
    """A measurement name template may use only {device}, {gateway}, {site} and {line}."""
    try:
        value.format(device="d", gateway="g", site="s", line="l")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"measurement {value!r}: only {{device}}, {{gateway}}, {{site}}, {{line}} may "
            f"be used ({exc})"
        ) from None
    return value
