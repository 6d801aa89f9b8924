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
from gateway.config.bundles import BundlesConfig
from gateway.config.device import DeviceConfig
from gateway.config.influxdb import InfluxDbConfig
from gateway.config.types import (
    ByteSize,
    Duration,
    Name,
    PositiveDuration,
    SecretRef,
    StrictModel,
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
        description="older name of audit.path (the audit log of every security event); "
        "default {state_dir}/audit.log; relative to the config file",
    )
    verify_timeout: PositiveDuration = Field(
        default=5.0,
        description="how long a write with verify_write waits for a read-back sample",
    )
    max_writes_per_command: int = Field(default=32, ge=1, le=1000)
    config_apply: bool = Field(
        default=False, description="the brain may apply a signed config bundle over MQTT "
        "(config/apply; docs/bundles.md); off unless an engineer opts in"
    )
    model_deploy: bool = Field(
        default=False, description="the brain may deploy a signed model package over MQTT "
        "(model/deploy, into models.dir; docs/bundles.md); off unless an engineer opts in"
    )

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


class HttpTlsConfig(StrictModel):
    """HTTPS for the local API with the gateway's certificate (PEM files)."""

    certificate: Path = Field(
        description="PEM certificate (chain) the API presents, e.g. the gateway's own, with the "
        "box's name or address in its subjectAltName; relative to the config file",
    )
    key: Path = Field(description="PEM private key of the certificate; relative to the "
                      "config file (keep it 0600)")


class HttpAuthConfig(StrictModel):
    """Users, sessions and logins of the local API (docs/security.md)."""

    users_file: Path | None = Field(
        default=None, description="the user store written by `chenxing-gateway users`; default "
        "{state_dir}/users.json; relative to the config file",
    )
    anonymous_loopback: Literal["none", "viewer", "operator"] = Field(
        default="operator",
        description="the role of a request without credentials when the API is bound to "
        "loopback, has no http.token and the request names a loopback host (someone on this "
        "machine); none: everyone logs in. Admin actions always need an admin's login",
    )
    session_ttl: PositiveDuration = Field(
        default=8 * 3600.0, description="a login's session ends this long after the login")
    max_failed_logins: int = Field(
        default=5, ge=1, le=1000,
        description="failed logins of one user name (or 4x as many from one client address) "
        "within failed_login_window; past it logins are refused with 429 until the oldest "
        "failure leaves the window")
    failed_login_window: PositiveDuration = Field(default=300.0)
    min_password_length: int = Field(default=12, ge=8, le=256)


class HttpConfig(StrictModel):
    """Local HTTP API: status page, /healthz, /metrics, tags, writes, firmware, users, audit."""

    enabled: bool = True
    bind: str = Field(default="127.0.0.1", description="address to listen on; loopback by default")
    port: int = Field(default=8321, ge=0, le=65535, description="0 picks a free port")
    token: SecretRef | None = Field(
        default=None, description="shared bearer token: a machine-to-machine credential "
        "(scrapers, the firmware CLI, a local SCADA) with the role token_role; people log in "
        "as users (docs/security.md)",
    )
    token_role: Literal["viewer", "operator"] = Field(
        default="operator", description="what the shared token may do (never admin: admin "
        "actions are done by a named user)")
    tls: HttpTlsConfig | None = Field(
        default=None, description="serve HTTPS instead of HTTP (recommended off loopback: "
        "passwords and session tokens cross the network)")
    auth: HttpAuthConfig = Field(default_factory=HttpAuthConfig)

    def resolved_users_file(self, state_dir: Path) -> Path:
        return self.auth.users_file if self.auth.users_file is not None \
            else state_dir / "users.json"


class AuditConfig(StrictModel):
    """The append-only audit log of security events: commands and writes, firmware updates,
    logins, user changes, config changes, rollbacks and deployments (docs/security.md)."""

    path: Path | None = Field(
        default=None, description="JSON-lines file; default commands.audit_log when set, else "
        "{state_dir}/audit.log; relative to the config file")
    max_bytes: ByteSize = Field(
        default=16 * 1024 * 1024, description="rotate past this size (audit.log.1, .2, ...)")
    files: int = Field(default=5, ge=1, le=1000,
                       description="files kept, the current one included; the oldest is dropped")


class ManagementConfig(StrictModel):
    """Live config changes (docs/live-changes.md): each one is validated, its changed devices
    connect-tested, applied, then watched; a change whose devices do not come up in time,
    or that loses the broker session, is rolled back by itself. Applied live itself."""

    watch: PositiveDuration = Field(
        default=10.0, le=600,
        description="after a change: how long the devices it added or changed get to come up "
        "(connected and a good or uncertain value read) and the births after it to be "
        "confirmed by the broker; past it, the previous version comes back",
    )
    connect_test: bool = Field(
        default=True,
        description="before a change: connect once to each device it adds or whose connection "
        "settings it changes, and refuse the change when one cannot connect; off for devices "
        "that take a single connection (the watch still applies)",
    )
    connect_timeout: PositiveDuration = Field(
        default=5.0, le=120, description="how long a connect test may take per device",
    )
    keep_versions: int = Field(
        default=200, ge=2, le=100_000,
        description="applied versions kept in {state_dir}/config (the oldest go first)",
    )


class LoggingConfig(StrictModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"
    #: the level of every other library's loggers (asyncua, pymodbus, aiohttp, ...): their
    #: INFO records are protocol chatter, not the gateway's story
    libraries: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"


class GatewayConfig(StrictModel):
    """Root of the configuration file."""

    gateway: Identity
    devices: list[DeviceSection] = Field(min_length=1)
    northbound: NorthboundConfig = Field(default_factory=NorthboundConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    commands: CommandsConfig = Field(default_factory=CommandsConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    management: ManagementConfig = Field(default_factory=ManagementConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    bundles: BundlesConfig = Field(
        default_factory=BundlesConfig,
        description="signed bundles from the brain: trusted keys, who may sign what "
        "(docs/bundles.md)",
    )

    def audit_path(self) -> Path:
        """The audit log: ``audit.path``, else the older ``commands.audit_log``, else
        ``{state_dir}/audit.log``."""
        if self.audit.path is not None:
            return self.audit.path
        return self.commands.resolved_audit_log(self.gateway.state_dir)

    @model_validator(mode="after")
    def _one_audit_log(self) -> GatewayConfig:
        if self.audit.path is not None and self.commands.audit_log is not None \
                and self.audit.path != self.commands.audit_log:
            raise ValueError("audit.path and commands.audit_log name two audit logs: keep "
                             "audit.path (commands.audit_log is its older name)")
        return self

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
