"""Options of ``chenxing-ingest``: a small YAML file and/or command-line options."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from gateway.config.broker_url import BrokerUrl
from gateway.config.influxdb import Precision, check_http_url, check_measurement_template
from gateway.config.models import MqttConfig, MqttTlsConfig
from gateway.config.plain_errors import plain_errors
from gateway.config.types import (
    Name,
    PositiveDuration,
    SecretRef,
    StrictModel,
    is_loopback,
)
from gateway.config.yaml_model import line_of, parse_yaml
from gateway.config.yaml_reader import KeyPath
from gateway.errors import ConfigError, ConfigProblem

#: the telemetry contracts a reader understands
Format = Literal["json", "sparkplug"]
FORMATS: tuple[Format, ...] = ("json", "sparkplug")

class IngestInfluxConfig(StrictModel):
    url: str = Field(description="InfluxDB v2 write API base URL, e.g. http://influxdb:8086")
    bucket: str = Field(min_length=1)
    org: str = ""
    token: SecretRef | None = None
    precision: Precision = "ms"
    measurement: str = Field(
        default="{device}",
        description="{device} (Sparkplug: the device id, or the edge node id for node "
        "metrics), {gateway} (JSON gateway id / Sparkplug edge node), {site}, {line}",
    )
    unsigned_integers: bool = Field(
        default=True,
        description="uint64 values as unsigned fields (uint=…u); false for a target that "
        "refuses the 'u' suffix (see the gateway's northbound.influxdb.unsigned_integers)",
    )
    batch_size: int = Field(default=5000, ge=1, le=100_000)
    flush_interval: PositiveDuration = 1.0
    timeout: PositiveDuration = 10.0
    retry_min: PositiveDuration = 1.0
    retry_max: PositiveDuration = 30.0
    max_pending_points: int = Field(
        default=1_000_000, ge=1,
        description="points held in memory while InfluxDB is unreachable; past it the "
        "oldest are dropped and counted",
    )  # fmt: skip

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value)

    @field_validator("measurement")
    @classmethod
    def _template(cls, value: str) -> str:
        return check_measurement_template(value)


_LEVEL = r"(\+|[^#+/]+)"
Classification = Literal["public", "internal", "restricted"]
Grade = Literal["general", "important", "core"]
#: the gateway's tag classification -> the national data grade (brain_reader/README.md)
DEFAULT_GRADING: dict[Classification, Grade] = {
    "public": "general", "internal": "general", "restricted": "important"}


class AllowList(StrictModel):
    """Gateways whose data is read; messages of any other are refused and counted."""

    gateways: list[str] = Field(
        default_factory=list,
        description="JSON contract gateways as site/line/gateway; + matches any one level",
    )
    edge_nodes: list[str] = Field(
        default_factory=list,
        description="Sparkplug edge nodes as group/edge_node; + matches any one level",
    )

    @field_validator("gateways")
    @classmethod
    def _gateways(cls, value: list[str]) -> list[str]:
        return [_pattern(v, 3, "site/line/gateway") for v in value]

    @field_validator("edge_nodes")
    @classmethod
    def _edge_nodes(cls, value: list[str]) -> list[str]:
        return [_pattern(v, 2, "group/edge_node") for v in value]


def _pattern(value: str, levels: int, shape: str) -> str:
    parts = value.split("/")
    if len(parts) != levels or not all(re.fullmatch(_LEVEL, p) for p in parts):
        raise ValueError(f"{value!r} is not {shape} (+ for any one level)")
    return value


class IngestHttpConfig(StrictModel):
    """The catalog's HTTP endpoint (GET /catalog, /catalog/export.json|csv|aas.json)."""

    enabled: bool = False
    bind: str = Field(default="127.0.0.1", description="loopback by default")
    port: int = Field(default=8331, ge=0, le=65535, description="0 picks a free port")
    token: SecretRef | None = Field(
        default=None, description="bearer token, required when bound beyond loopback"
    )

    @model_validator(mode="after")
    def _token_off_loopback(self) -> IngestHttpConfig:
        if self.enabled and not is_loopback(self.bind) and self.token is None:
            raise ValueError(f"binding the catalog endpoint to {self.bind} exposes it beyond "
                             "this machine: set http.token ({env: VAR} or {file: PATH})")
        return self


class IngestConfig(StrictModel):
    brokers: list[BrokerUrl] = Field(
        default_factory=lambda: ["mqtt://127.0.0.1:1883"], min_length=1,
        description="tried in order (failover), mqtt:// or mqtts://",
    )  # fmt: skip
    group: Name = Field(
        default="chenxing-ingest",
        description="readers with the same group share the work (one writer per gateway)",
    )
    client_id: str = Field(default_factory=lambda: f"chenxing-ingest-{uuid.uuid4().hex[:8]}")
    username: str | None = None
    password: SecretRef | None = None
    tls: MqttTlsConfig | None = None
    formats: list[Format] = Field(default_factory=lambda: list(FORMATS), min_length=1)
    topic_root: str = Field(default="chenxing/v1", pattern=r"^[^#+]+$")
    sparkplug_group: str = Field(
        default="+", pattern=r"^(\+|[^#+/]+)$", description="Sparkplug group id, or + for all"
    )
    sequence_check: bool = Field(default=True, description="count gaps and duplicates")
    primary_host_id: str | None = Field(
        default=None, pattern=r"^[^#+/]+$",
        description="act as this Sparkplug primary host: publish spBv1.0/STATE/{id} (the "
        "gateways' sparkplug.primary_host_id)",
    )  # fmt: skip
    allow: AllowList | None = Field(
        default=None, description="only these gateways (none: every gateway)"
    )
    state_dir: str = Field(
        default="ingest-state", description="folder of the catalog (catalog.sqlite)"
    )
    catalog: bool = Field(default=True, description="keep the catalog from births")
    grading: dict[Classification, Grade] = Field(
        default_factory=lambda: dict(DEFAULT_GRADING),
        description="tag classification -> national data grade (brain_reader/README.md)",
    )  # fmt: skip
    http: IngestHttpConfig = Field(default_factory=IngestHttpConfig)
    takeover_buffer: int = Field(
        default=10_000, ge=1,
        description="messages kept per gateway another reader writes, until it commits "
        "them (what this reader writes if that one dies)",
    )  # fmt: skip
    rebirth: bool = Field(
        default=True,
        description="ask a Sparkplug edge node for a rebirth (NCMD) on unknown aliases",
    )
    rebirth_holdoff: PositiveDuration = Field(
        default=5.0, description="at most one rebirth request per edge node this often"
    )
    report_interval: PositiveDuration = 10.0
    reconnect_min: PositiveDuration = 0.5
    reconnect_max: PositiveDuration = 30.0
    influxdb: IngestInfluxConfig | None = Field(
        default=None, description="where points are written; without it they are only counted"
    )

    def mqtt(self) -> MqttConfig:
        """The MQTT 5 connection (as the gateway's, with its TLS)."""
        return MqttConfig(
            urls=list(self.brokers), client_id=self.client_id, protocol="5",
            username=self.username, password=self.password, tls=self.tls,
            reconnect_min=self.reconnect_min, reconnect_max=self.reconnect_max,
        )  # fmt: skip

    def subscriptions(self) -> tuple[tuple[str, int], ...]:
        """Every reader of the group hears every message (see cluster.py for why); the
        group's own control topics come first."""
        subs: list[tuple[str, int]] = []
        if "json" in self.formats:
            root = self.topic_root.rstrip("/")
            subs += [(f"{root}/+/+/+/{kind}", 1) for kind in ("birth", "death", "data")]
        if "sparkplug" in self.formats:
            base = f"spBv1.0/{self.sparkplug_group}"
            subs += [(f"{base}/{kind}/#", 1)
                     for kind in ("NBIRTH", "DBIRTH", "NDEATH", "DDEATH", "NDATA", "DDATA")]
        return tuple(subs)


def load_ingest_config(path: Path | None, overrides: dict[str, Any]) -> IngestConfig:
    """The YAML file (if any) with command-line ``overrides`` (None: not given) on top;
    raises :class:`ConfigError` listing every problem with file, line and key."""
    data: dict[str, Any] = {}
    lines: dict[KeyPath, int] = {}
    file = "<command line>"
    if path is not None:
        file = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            problem = ConfigProblem(file, 0, (), f"cannot read: {exc.strerror}")
            raise ConfigError([problem]) from None
        parsed = parse_yaml(text, file)
        if parsed.problems:
            raise ConfigError(parsed.problems)
        if not isinstance(parsed.data, dict):
            raise ConfigError([ConfigProblem(file, 1, (), "the top level must be a mapping")])
        data, lines = dict(parsed.data), parsed.lines
    given = {k: v for k, v in overrides.items() if v is not None and k != "influxdb"}
    data.update(given)
    influx = {k: v for k, v in (overrides.get("influxdb") or {}).items() if v is not None}
    if influx:
        data["influxdb"] = {**(data.get("influxdb") or {}), **influx}
    try:
        return IngestConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for loc, message in plain_errors(IngestConfig, data, exc.errors()):
            from_cli = loc[:1] and (loc[0] in given or (loc[0] == "influxdb" and loc[1:2]
                                                        and loc[1] in influx))  # fmt: skip
            where = "<command line>" if from_cli or path is None else file
            problems.append(ConfigProblem(where, 0 if where != file else line_of(lines, loc),
                                          loc, message))  # fmt: skip
        raise ConfigError(problems) from None
