"""Configuration of a Siemens S7 device and its tags (see README.md in this folder)."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cached_property
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from drivers.s7.address import Area, S7Address, parse_address
from gateway.config.device import DeviceConfig, TagConfig
from gateway.config.spelling import closest_encoding, unknown
from gateway.config.types import Name, PositiveDuration, StrictModel
from gateway.types import DataType

__all__ = ["CONNECTION_TYPES", "DEFAULT_GROUP", "S7DeviceConfig", "S7PollGroup", "S7TagConfig"]

ConnectionType = Literal["op", "basic", "pg"]
#: the connection type's code, the high byte of the remote TSAP
CONNECTION_TYPES: dict[str, int] = {"pg": 0x01, "op": 0x02, "basic": 0x03}
DEFAULT_GROUP = "default"
_TSAP_RE = re.compile(r"^(?:0x)?([0-9a-f]{1,2})\.?([0-9a-f]{2})$", re.IGNORECASE)
_READ_ONLY_AREAS = {Area.I: "inputs (I) are written by the process image, not by a client",
                    Area.T: "timers are read-only", Area.C: "counters are read-only"}


#: poll group names of the device being validated, so that a tag naming an unknown group
#: is reported at the tag's own line
_GROUPS_IN_SCOPE: ContextVar[frozenset[str] | None] = ContextVar("s7_groups", default=None)


@contextmanager
def _groups_in_scope(names: frozenset[str] | None) -> Iterator[None]:
    token = _GROUPS_IN_SCOPE.set(names)
    try:
        yield
    finally:
        _GROUPS_IN_SCOPE.reset(token)


def parse_tsap(value: Any) -> int:
    """A TSAP as the engineering tools show it: ``0x0301``, ``03.01``, ``0301`` or 769."""
    if isinstance(value, bool):
        raise ValueError("a TSAP is two bytes, e.g. '03.01' or '0x0301'")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and (match := _TSAP_RE.match(value.strip())):
        number = int(match.group(1) + match.group(2), 16)
    else:
        raise ValueError(f"{value!r} is not a TSAP: write two bytes, e.g. '03.01' or '0x0301'")
    if not 0 <= number <= 0xFFFF:
        raise ValueError(f"a TSAP is two bytes (0x0000..0xFFFF), not {value!r}")
    return number


class S7PollGroup(StrictModel):
    """Tags read together at their own interval."""

    name: Name = Field(description="group name, unique in the device; tags name it in poll_group")
    interval: PositiveDuration = Field(description="how often the group's tags are read")


class S7TagConfig(TagConfig):
    address: str = Field(
        description="S7 address: DB1.DBD4:REAL, DB1.DBX0.1, DB2.DB0:STRING[20], MW10:INT, "
        "I0.1, QB0, VW100:INT (S7-200 SMART), T5, C3 (drivers/s7/README.md)")
    # None until the address's S7 type fills it in (a validator): mypy sees the base's type
    type: DataType | None = Field(  # type: ignore[assignment]
        default=None,
        description="published type; follows from the address's S7 type (REAL: float32, INT: "
        "int16, DATE_AND_TIME: string ...); if given it must agree")
    encoding: str = Field(
        default="latin-1",
        description="text encoding of STRING and CHAR tags (e.g. gbk for Chinese text)")
    poll_group: str = Field(default=DEFAULT_GROUP, description="a poll group of the device")

    @model_validator(mode="before")
    @classmethod
    def _type_from_address(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("address"), str):
            try:
                published = parse_address(data["address"]).type.published
            except ValueError:
                return data  # the address field says what is wrong
            if data.get("type") is None:
                data = {**data, "type": published.value}
        return data

    @field_validator("address")
    @classmethod
    def _valid_address(cls, value: str) -> str:
        return parse_address(value).text()

    @field_validator("poll_group")
    @classmethod
    def _known_group(cls, value: str) -> str:
        groups = _GROUPS_IN_SCOPE.get()
        if groups is not None and value not in groups:
            raise ValueError(unknown("poll group", value, sorted(groups), "the device has:"))
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            close = closest_encoding(value)
            hint = f"; did you mean {close!r}?" if close else ""
            raise ValueError(
                f"unknown text encoding {value!r}{hint} (e.g. latin-1, gbk, utf-8)") from None
        return value

    @model_validator(mode="after")
    def _check_tag(self) -> S7TagConfig:
        s7 = self.s7
        if self.type is not s7.type.published:
            raise ValueError(
                f"type {self.type.value if self.type else None!r} does not agree with the "
                f"address {s7.text()}, published as {s7.type.published.value} (leave type "
                "out: it follows from the address)")
        if self.writable and s7.area in _READ_ONLY_AREAS:
            raise ValueError(f"{s7.text()}: {_READ_ONLY_AREAS[s7.area]}; writable must be false")
        return self

    @cached_property
    def s7(self) -> S7Address:
        """The parsed address."""
        return parse_address(self.address)


class S7DeviceConfig(DeviceConfig):
    protocol: Literal["s7"]
    host: str = Field(description="IP address or host name of the PLC")
    port: int = Field(default=102, ge=1, le=65535, description="ISO-on-TCP port (102)")
    rack: int = Field(default=0, ge=0, le=7, description="rack of the CPU (0 almost always)")
    slot: int = Field(
        default=1, ge=0, le=31,
        description="slot of the CPU: S7-300 2; S7-1200/1500 and S7-200 SMART 1 (or 0); "
        "S7-400 as in the hardware configuration")
    connection_type: ConnectionType = Field(
        default="op",
        description="op (as an HMI), basic (S7 basic) or pg (as programming software). Not "
        "pg unless needed: an S7-200 SMART or S7-300 often has one PG connection, and the "
        "gateway holding it locks the engineer's programming software out")
    local_tsap: int | None = Field(
        default=None, description="local TSAP, e.g. '01.00' (default 0x0100)")
    remote_tsap: int | None = Field(
        default=None,
        description="remote TSAP, e.g. '03.01'; replaces connection_type, rack and slot "
        "(its high byte is the connection type, its low byte rack * 32 + slot)")
    pdu_size: int = Field(
        default=960, ge=240, le=960,
        description="PDU size asked for; the PLC answers with its own (240 for an S7-1200 or "
        "S7-200 SMART) and requests are planned for the answer")
    timeout: PositiveDuration = Field(default=2.0, description="time to wait for one answer")
    max_items: int = Field(
        default=20, ge=1, le=255, description="variables in one read request at most (20 "
        "suits S7-300/400; the PDU size limits it further)")
    max_gap: int = Field(
        default=8, ge=0, le=256,
        description="unused bytes one read may span to join two tags of the same area")
    poll_groups: list[S7PollGroup] = Field(
        default_factory=list,
        description="extra poll groups [{name, interval}]; poll_interval is the 'default' group")
    tags: list[S7TagConfig] = Field(min_length=1)  # type: ignore[assignment]  # a driver narrows its tags

    @model_validator(mode="wrap")
    @classmethod
    def _scope_groups(cls, data: Any, handler: Any) -> Any:
        names: frozenset[str] | None = None
        if isinstance(data, dict) and isinstance(data.get("poll_groups", []), list):
            given = [g.get("name") if isinstance(g, dict) else getattr(g, "name", None)
                     for g in data.get("poll_groups", [])]
            named = [n for n in given if isinstance(n, str)]
            if len(named) == len(given):
                names = frozenset({DEFAULT_GROUP, *named})
        with _groups_in_scope(names):
            return handler(data)

    @field_validator("local_tsap", "remote_tsap", mode="before")
    @classmethod
    def _tsap(cls, value: Any) -> Any:
        return None if value is None else parse_tsap(value)

    @model_validator(mode="after")
    def _check_device(self) -> S7DeviceConfig:
        seen = {DEFAULT_GROUP}
        for group in self.poll_groups:
            if group.name in seen:
                raise ValueError(f"poll group {group.name!r} is defined twice (or is 'default')")
            seen.add(group.name)
        for tag in self.tags:
            if tag.poll_group not in seen:
                refused = unknown("poll group", tag.poll_group, sorted(seen), "the device has:")
                raise ValueError(f"tag {tag.name!r}: {refused}")
        return self

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def tsaps(self) -> tuple[int, int]:
        """(local, remote) TSAP as sent in the connection request."""
        local = 0x0100 if self.local_tsap is None else self.local_tsap
        if self.remote_tsap is not None:
            return local, self.remote_tsap
        return local, CONNECTION_TYPES[self.connection_type] << 8 | self.rack << 5 | self.slot

    def describe_connection(self) -> str:
        local, remote = self.tsaps
        kinds = {code: name for name, code in CONNECTION_TYPES.items()}
        kind = kinds.get(remote >> 8, f"type 0x{remote >> 8:02X}")
        return (f"{self.address} rack {(remote >> 5) & 7} slot {remote & 31} as {kind.upper()} "
                f"(TSAP {_tsap_text(local)} -> {_tsap_text(remote)})")

    def interval_of(self, group: str) -> float:
        if group == DEFAULT_GROUP:
            return self.poll_interval
        return next(g.interval for g in self.poll_groups if g.name == group)


def _tsap_text(tsap: int) -> str:
    return f"{tsap >> 8:02X}.{tsap & 0xFF:02X}"
