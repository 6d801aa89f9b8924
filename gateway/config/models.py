"""The gateway configuration: one YAML file validated into these typed models.

The JSON Schema in ``config/gateway.schema.json`` is generated from here by
``chenxing-gateway config schema``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, create_model, model_validator

from drivers.registration import DriverRegistry
from drivers.registry import REGISTRY
from gateway.config.broker_url import BrokerAddress, BrokerUrl, parse_broker_url
from gateway.config.device import DeviceConfig
from gateway.config.influxdb import InfluxDbConfig
from gateway.config.types import (
    ByteSize,
    Duration,
    Name,
    PositiveDuration,
    SecretRef,
    StrictModel,
    is_loopback,
)

if TYPE_CHECKING:
    #: code outside a driver's folder sees a device through the common base only (and the
    #: registry's capability lookups); that is what lets a driver be added without it
    DeviceSection = DeviceConfig
else:
    #: the discriminated union of the registered drivers' device configs
    DeviceSection = REGISTRY.device_section


class Identity(StrictModel):
    """Who this gateway is; used in topics, births and the client id."""

    id: Name = Field(description="gateway id, unique in the site")
    site: Name = Field(description="plant or site code")
    line: Name = Field(description="production line")
    description: str = ""
    state_dir: Path = Field(
        default=Path("var"),
        description="folder for the gateway's state (sequence numbers, spool); "
        "relative to the config file",
    )


class MqttTlsConfig(StrictModel):
    """TLS to the broker; with ``certificate`` and ``key`` also mutual TLS."""

    ca: Path | None = Field(
        default=None,
        description="PEM file of the CA(s) that signed the broker's certificate; default the "
        "system's trusted CAs; relative to the config file",
    )
    certificate: Path | None = Field(
        default=None, description="PEM client certificate for mutual TLS (with key)"
    )
    key: Path | None = Field(default=None, description="PEM private key of the certificate")
    insecure_skip_verify: bool = Field(
        default=False,
        description="accept any broker certificate and host name (testing only: it allows a "
        "man in the middle)",
    )

    @model_validator(mode="after")
    def _cert_with_key(self) -> MqttTlsConfig:
        if (self.certificate is None) != (self.key is None):
            raise ValueError("a client certificate needs its key: set both or neither")
        return self


class MqttConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    urls: list[BrokerUrl] | None = Field(
        default=None,
        min_length=1,
        description="brokers for failover, tried in order, instead of host/port: "
        "['mqtts://a:8883', 'mqtt://b:1883']; mqtts:// uses tls (default: the system's CAs)",
    )
    client_id: str | None = Field(default=None, description="defaults to chenxing-{gateway id}")
    protocol: Literal["3.1.1", "5"] | None = Field(
        default=None,
        description="MQTT version; default '5' when commands are enabled (the command "
        "subscription uses retain-as-published, so a retained command is recognised and "
        "never executed), otherwise '3.1.1'",
    )
    username: str | None = None
    password: SecretRef | None = Field(default=None, description="{env: VAR} or {file: PATH}")
    keepalive: PositiveDuration = 30.0
    qos: Literal[0, 1] = Field(
        default=1, description="format json: QoS of data, birth and death messages (Sparkplug "
        "uses the specification's QoS and sparkplug.data_qos)"
    )
    reconnect_min: PositiveDuration = Field(default=1.0, description="first reconnect delay")
    reconnect_max: PositiveDuration = Field(default=60.0, description="longest reconnect delay")
    tls: MqttTlsConfig | None = Field(
        default=None, description="TLS (port usually 8883); host names are verified"
    )

    @model_validator(mode="after")
    def _urls_or_host(self) -> MqttConfig:
        if self.urls is not None and {"host", "port"} & self.model_fields_set:
            raise ValueError("set either urls (several brokers) or host and port, not both")
        return self

    def brokers(self) -> list[BrokerAddress]:
        """The brokers in the order they are tried."""
        if self.urls is None:
            return [BrokerAddress(self.host, self.port, self.tls is not None)]
        return [parse_broker_url(url) for url in self.urls]


class OutboxConfig(StrictModel):
    max_messages: int = Field(
        default=10_000,
        ge=1,
        description="with the spool disabled: messages held in memory while the broker is "
        "unreachable; past it the oldest is dropped and counted",
    )
    max_inflight: int = Field(default=32, ge=1, le=65535, description="unacknowledged publishes")


class SpoolConfig(StrictModel):
    """The disk spool: every outbound message is on disk until the broker acknowledged it."""

    enabled: bool = Field(
        default=True,
        description="false keeps messages in memory only (outbox.max_messages); they are lost "
        "when the process dies",
    )
    path: Path | None = Field(
        default=None,
        description="SQLite file; default {state_dir}/spool.db; relative to the config file",
    )
    max_bytes: ByteSize = Field(
        default=256 * 2**20,
        description="payload bytes held (an integer or e.g. '256MiB'); past it the oldest "
        "messages are dropped and counted",
    )
    max_age: PositiveDuration = Field(
        default=168 * 3600.0,
        description="messages older than this are dropped and counted (default '168h')",
    )
    replay_rate: float = Field(
        default=100.0,
        gt=0,
        description="messages/s replayed from the backlog after a reconnect, interleaved "
        "with live data",
    )

    def resolved_path(self, state_dir: Path) -> Path:
        return self.path if self.path is not None else state_dir / "spool.db"


class SparkplugConfig(StrictModel):
    """Sparkplug B 3.0 Edge Node settings (``northbound.format: sparkplug``)."""

    group_id: Name | None = Field(default=None, description="Sparkplug group id; default the site")
    edge_node_id: Name | None = Field(
        default=None, description="Sparkplug edge node id; default the gateway id"
    )
    primary_host_id: Name | None = Field(
        default=None,
        description="primary host application id: births wait for its STATE online and data "
        "is held (sent later flagged historical) while it is offline",
    )
    data_datatypes: bool = Field(
        default=False,
        description="put each metric's datatype in NDATA/DDATA too (the specification lets "
        "data omit it: the birth defines it); for hosts that decode values only with it, such "
        "as Eclipse Tahu's JavaScript codec sparkplug-payload 1.0.3",
    )
    data_qos: Literal[0, 1] = Field(
        default=0,
        description="QoS of NDATA/DDATA: 0 as the specification requires; 1 (outside the "
        "strict specification) keeps data in the spool until the broker acknowledged it",
    )


class NorthboundConfig(StrictModel):
    format: Literal["json", "sparkplug"] = Field(
        default="sparkplug", description="payload contract: sparkplug (Sparkplug B 3.0, the "
        "default, docs/contract-sparkplug.md) or json (docs/contract-json.md)"
    )
    sparkplug: SparkplugConfig = Field(default_factory=SparkplugConfig)
    topic_root: str = Field(
        default="chenxing/v1",
        pattern=r"^[^#+]+$",
        description="format json: topics are {topic_root}/{site}/{line}/{gateway}/"
        "{birth|data|death}",
    )
    publish_interval: Duration = Field(
        default=0.2, description="samples are gathered this long into one data message"
    )
    max_samples_per_message: int = Field(default=2000, ge=1, le=100_000)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    spool: SpoolConfig = Field(default_factory=SpoolConfig)
    publish_restricted: bool = Field(
        default=False,
        description="publish tags classified 'restricted' in births and data; by default "
        "they never leave the gateway",
    )
    influxdb: InfluxDbConfig | None = Field(
        default=None, description="optional InfluxDB sink (v2 write API), see docs/influxdb-sink.md"
    )


class CommandsConfig(StrictModel):
    """Writes from the brain (Sparkplug NCMD/DCMD or the JSON ``cmd`` topic): off unless enabled."""

    enabled: bool = Field(
        default=False, description="subscribe to the command topics: Sparkplug NCMD/DCMD, or "
        "{topic_root}/{site}/{line}/{gateway}/cmd with format json"
    )
    audit_log: Path | None = Field(
        default=None,
        description="append-only JSON-lines audit of every command and write; default "
        "{state_dir}/audit.log; relative to the config file",
    )
    verify_timeout: PositiveDuration = Field(
        default=5.0,
        description="how long a write with verify_write waits for a read-back sample",
    )
    max_writes_per_command: int = Field(default=32, ge=1, le=1000)

    def resolved_audit_log(self, state_dir: Path) -> Path:
        return self.audit_log if self.audit_log is not None else state_dir / "audit.log"


class ModelsConfig(StrictModel):
    """Edge models: a folder of ``.onnx`` files with their manifests."""

    enabled: bool = False
    dir: Path = Field(default=Path("models"), description="relative to the config file")
    device: Name = Field(
        default="models",
        description="synthetic device holding the model output tags: {device}.{model}/{output}",
    )
    watch_interval: Duration = Field(
        default=2.0, description="poll the folder for changed models this often; 0: only on "
        "SIGHUP or a reload command"
    )
    tick: PositiveDuration = Field(
        default=0.1, description="how often due inferences are gathered and run (one batched "
        "run per model)"
    )
    window_capacity: int = Field(
        default=4096, ge=16, le=1_000_000,
        description="samples kept per input tag for the feature windows",
    )
    inline_budget: Duration = Field(
        default=0.0005, ge=0, le=0.01,
        description="a tick's inferences may run on the event loop, skipping the hand-off to "
        "the inference thread, while each model has proven tiny (its last runs each under this "
        "CPU time) and their estimated total is under it; 0 = always in the inference thread "
        "(see edge_models/README.md)",
    )


class HttpConfig(StrictModel):
    """Local HTTP API: /healthz and /metrics."""

    enabled: bool = True
    bind: str = Field(default="127.0.0.1", description="address to listen on; loopback by default")
    port: int = Field(default=8321, ge=0, le=65535, description="0 picks a free port")
    token: SecretRef | None = Field(
        default=None, description="bearer token required when bound to a non-loopback address"
    )

    @model_validator(mode="after")
    def _token_off_loopback(self) -> HttpConfig:
        if self.enabled and not is_loopback(self.bind) and self.token is None:
            raise ValueError(
                f"binding the local API to {self.bind} exposes it beyond this machine: "
                "set http.token ({env: VAR} or {file: PATH})"
            )
        return self


class LoggingConfig(StrictModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class GatewayConfig(StrictModel):
    """Root of the configuration file."""

    gateway: Identity
    devices: list[DeviceSection] = Field(min_length=1)
    northbound: NorthboundConfig = Field(default_factory=NorthboundConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    commands: CommandsConfig = Field(default_factory=CommandsConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @model_validator(mode="after")
    def _mqtt_protocol(self) -> GatewayConfig:
        """Resolve the MQTT version left unset: 5 with commands (under 3.1.1 a broker
        forwards a retained publish to a connected subscriber as if it were not retained,
        so only MQTT 5's retain-as-published lets the gateway refuse retained commands).
        An explicit 3.1.1 with commands is refused by the loader's cross-section checks."""
        mqtt = self.northbound.mqtt
        if mqtt.protocol is not None:
            return self
        protocol = "5" if self.commands.enabled else "3.1.1"
        northbound = self.northbound.model_copy(
            update={"mqtt": mqtt.model_copy(update={"protocol": protocol})})
        return self.model_copy(update={"northbound": northbound})


@functools.cache
def gateway_config_model(drivers: DriverRegistry) -> type[GatewayConfig]:
    """The config model whose devices are the configs of ``drivers``: :class:`GatewayConfig`
    itself for the gateway's own :data:`~drivers.registry.REGISTRY`."""
    if drivers is REGISTRY:
        return GatewayConfig
    # a union made at run time from the registrations: mypy cannot name it as a type
    devices = (list[drivers.device_section], Field(min_length=1))  # type: ignore[name-defined]
    model: type[GatewayConfig] = create_model(
        "GatewayConfig", __base__=GatewayConfig, __doc__=GatewayConfig.__doc__,
        __module__=__name__, devices=devices)
    return model
