"""Configuration of an OPC UA device (a PLC's OPC UA server) and its tags (see README.md)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.device import DeviceConfig, TagConfig
from gateway.config.types import Duration, PositiveDuration, SecretRef, StrictModel
from gateway.types import DataType

#: node id strings as OPC UA writes them: ``ns=2;s=Machine.MeltTemp``, ``i=2258``,
#: ``ns=3;g=<guid>``, ``ns=1;b=<base64>``, or with a namespace URI: ``nsu=urn:x;s=Name``
NODE_ID_PATTERN = r"^(ns=\d+;|nsu=[^;]+;)?(i=\d+|s=.+|g=[0-9A-Fa-f-]{36}|b=.+)$"
#: a browse path below the Objects folder: ``2:Machine/2:MeltTemp``
BROWSE_PATH_PATTERN = r"^(\d+:)?[^/]+(/(\d+:)?[^/]+)*$"

SecurityPolicyName = Literal[
    "None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"
]
SecurityModeName = Literal["None", "Sign", "SignAndEncrypt"]


class DataChangeDeadband(StrictModel):
    """A deadband the OPC UA server applies before it notifies (DataChangeFilter)."""

    type: Literal["absolute", "percent"] = Field(
        description="absolute: in the node's raw unit; percent: of the node's EURange"
    )
    value: float = Field(ge=0, description="the deadband")

    @model_validator(mode="after")
    def _percent_range(self) -> DataChangeDeadband:
        if self.type == "percent" and self.value > 100:
            raise ValueError("a percent deadband is 0..100")
        return self


class OpcUaTagConfig(TagConfig):
    node: str | None = Field(
        default=None,
        json_schema_extra={"pattern": NODE_ID_PATTERN},
        description="node id, e.g. ns=2;s=Machine.MeltTemp (or give browse_path)",
    )
    browse_path: str | None = Field(
        default=None,
        json_schema_extra={"pattern": BROWSE_PATH_PATTERN},
        description="path of browse names below Objects, e.g. 2:Machine/2:MeltTemp",
    )
    index: int | None = Field(
        default=None, ge=0, description="element of an array value (0-based)"
    )
    sampling_interval: Duration | None = Field(
        default=None,
        description="subscription: how often the server samples the node (0 = as fast as it "
        "can); poll: how often the tag is read. Default: the device's publishing_interval "
        "(subscription) or poll_interval (poll)",
    )
    opcua_deadband: DataChangeDeadband | None = Field(
        default=None, description="deadband applied by the server (subscription mode)"
    )

    @field_validator("node")
    @classmethod
    def _node_id(cls, value: str | None) -> str | None:
        if value is not None and not re.match(NODE_ID_PATTERN, value):
            raise ValueError(
                "not a node id: write ns=<index>;s=<name>, ns=<index>;i=<number>, "
                "ns=<index>;g=<guid>, ns=<index>;b=<base64> or nsu=<uri>;s=<name> "
                "(or use browse_path)"
            )
        return value

    @field_validator("browse_path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and not re.match(BROWSE_PATH_PATTERN, value):
            raise ValueError("not a browse path: write <ns>:<Name>/<ns>:<Name>..., "
                             "e.g. 2:Machine/2:MeltTemp")
        return value

    @model_validator(mode="after")
    def _one_address(self) -> OpcUaTagConfig:
        if (self.node is None) == (self.browse_path is None):
            raise ValueError("give exactly one of 'node' or 'browse_path'")
        deadband = self.opcua_deadband
        numeric = self.type not in (DataType.STRING, DataType.BOOL)
        if deadband is not None and deadband.value > 0 and not numeric:
            raise ValueError(f"a deadband needs a numeric tag, not {self.type.value}")
        if self.writable and self.index is not None:
            raise ValueError("an array element tag (index) cannot be writable")
        return self

    @property
    def address(self) -> str:
        """The node as configured: its node id or ``/``-prefixed browse path."""
        return self.node if self.node is not None else f"/{self.browse_path}"


class OpcUaSecurity(StrictModel):
    """Secure channel: policy, mode, the gateway's certificate and which servers it trusts."""

    policy: SecurityPolicyName = Field(default="None", description="security policy")
    mode: SecurityModeName = Field(default="None", description="message security mode")
    certificate: Path | None = Field(
        default=None, description="the gateway's application certificate (DER or PEM)"
    )
    private_key: Path | None = Field(default=None, description="its private key (PEM or DER)")
    private_key_password: SecretRef | None = Field(
        default=None, description="when the key file is encrypted: {env: VAR} or {file: PATH}"
    )
    trust_dir: Path | None = Field(
        default=None,
        description="folder of trusted server certificates (or their CAs), DER or PEM",
    )
    trust_any_server: bool = Field(
        default=False,
        description="commissioning only: accept any server certificate (logged as a warning)",
    )
    application_uri: str | None = Field(
        default=None, description="defaults to the URI in the certificate's subjectAltName"
    )

    @model_validator(mode="after")
    def _consistent(self) -> OpcUaSecurity:
        if (self.policy == "None") != (self.mode == "None"):
            raise ValueError("policy None goes with mode None; a secure policy needs mode "
                             "Sign or SignAndEncrypt")
        if self.policy != "None":
            if self.certificate is None or self.private_key is None:
                raise ValueError(f"policy {self.policy} needs 'certificate' and 'private_key'")
            if self.trust_dir is None and not self.trust_any_server:
                raise ValueError("a secure policy needs 'trust_dir' (trusted server "
                                 "certificates), or trust_any_server: true while commissioning")
        return self


class OpcUaDeviceConfig(DeviceConfig):
    protocol: Literal["opcua"]
    endpoint: str = Field(
        pattern=r"^opc\.tcp://[^/\s]+(/\S*)?$", description="e.g. opc.tcp://10.20.3.50:4840"
    )
    mode: Literal["subscription", "poll"] = Field(
        default="subscription",
        description="subscription: the server reports changes; poll: read every poll_interval",
    )
    publishing_interval: PositiveDuration = Field(
        default=1.0, description="how often the server sends a subscription's notifications"
    )
    queue_size: int = Field(
        default=1, ge=1, le=10_000,
        description="values a monitored item queues between publishes (1 = latest only)",
    )
    keepalive_count: int = Field(
        default=10, ge=1, le=1000,
        description="publishing intervals without data after which the server sends a "
        "keep-alive; 3 missed keep-alives mean the session is dead",
    )
    timeout: PositiveDuration = Field(default=5.0, description="time to wait for one answer")
    session_timeout: PositiveDuration = Field(
        default=60.0, description="the server closes the session after this long without us"
    )
    watchdog_interval: PositiveDuration = Field(
        default=1.0, description="how often the connection is probed (a read of ServerState)"
    )
    unknown_node_retry: PositiveDuration = Field(
        default=30.0,
        description="how often nodes the server does not know (BadNodeIdUnknown) are retried",
    )
    security: OpcUaSecurity = Field(default_factory=OpcUaSecurity)
    username: str | None = Field(default=None, description="user name identity (else anonymous)")
    password: SecretRef | None = Field(default=None, description="{env: VAR} or {file: PATH}")
    tags: list[OpcUaTagConfig] = Field(min_length=1)  # type: ignore[assignment]  # a driver narrows its tags (pydantic validates)

    @model_validator(mode="after")
    def _identity(self) -> OpcUaDeviceConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both 'username' and 'password', or neither (anonymous)")
        return self

    @property
    def address(self) -> str:
        return self.endpoint

    def with_base_dir(self, base: Path) -> OpcUaDeviceConfig:
        sec = self.security

        def rel(p: Path | None) -> Path | None:
            return p if p is None or p.is_absolute() else (base / p).resolve()

        def rel_secret(ref: SecretRef | None) -> SecretRef | None:
            if ref is None or ref.file is None:
                return ref
            return ref.model_copy(update={"file": rel(ref.file)})

        security = sec.model_copy(
            update={
                "certificate": rel(sec.certificate),
                "private_key": rel(sec.private_key),
                "trust_dir": rel(sec.trust_dir),
                "private_key_password": rel_secret(sec.private_key_password),
            }
        )
        return self.model_copy(
            update={"security": security, "password": rel_secret(self.password)}
        )

    def secret_refs(self) -> list[tuple[tuple[str, ...], SecretRef]]:
        refs: list[tuple[tuple[str, ...], SecretRef]] = []
        if self.password is not None:
            refs.append((("password",), self.password))
        if self.security.private_key_password is not None:
            refs.append((("security", "private_key_password"), self.security.private_key_password))
        return refs
