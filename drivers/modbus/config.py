"""Configuration of a Modbus device and its tags (see README.md in this folder).

One device model per transport, each its own ``protocol`` (the config union's
discriminator): ``modbus_tcp``, ``modbus_udp``, ``modbus_rtu`` and ``modbus_ascii``
(serial lines), ``modbus_rtu_over_tcp`` (a serial device server) and ``modbus_dtu``
(4G DTUs that dial in to the gateway). They share every key of
:class:`ModbusDeviceConfig` (unit id, timeout, retries, poll groups, request limits, tags);
the transport's keys are its own, so a misplaced key is an error at its line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.device import DeviceConfig, TagConfig
from gateway.config.spelling import unknown
from gateway.config.types import Name, PositiveDuration, StrictModel
from gateway.serial_ports import LineSettings
from gateway.types import DataType

Table = Literal["holding", "input", "coil", "discrete"]
#: order of the bytes of a multi-register value, A being the most significant byte.
#: ABCD = big endian (Modbus default), CDAB = word swapped, BADC = byte swapped,
#: DCBA = little endian
ByteOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]
Parity = Literal["N", "E", "O"]

#: registers per value of the fixed-size register types
REGISTER_TYPES = {
    DataType.INT16: 1,
    DataType.UINT16: 1,
    DataType.INT32: 2,
    DataType.UINT32: 2,
    DataType.FLOAT32: 2,
    DataType.INT64: 4,
    DataType.UINT64: 4,
    DataType.FLOAT64: 4,
}
DEFAULT_GROUP = "default"

#: poll group names of the device being validated, so that a tag naming an unknown
#: group is reported at the tag's own line
_GROUPS_IN_SCOPE: ContextVar[frozenset[str] | None] = ContextVar("modbus_groups", default=None)


@contextmanager
def _groups_in_scope(names: frozenset[str] | None) -> Iterator[None]:
    token = _GROUPS_IN_SCOPE.set(names)
    try:
        yield
    finally:
        _GROUPS_IN_SCOPE.reset(token)


def retries_field(default: int) -> Any:
    """The ``retries`` key, whose default differs by transport (a serial line garbles)."""
    return Field(default=default, ge=0, le=5, description="times a request is sent again "
                 "after a timeout, a garbled or short answer or exception 5/6 (busy) before "
                 "its tags go BAD")


class PollGroupConfig(StrictModel):
    """Tags read together at their own interval."""

    name: Name = Field(description="group name, unique in the device; tags name it in poll_group")
    interval: PositiveDuration = Field(description="how often the group's tags are read")


class ModbusTagConfig(TagConfig):
    table: Table = Field(default="holding", description="holding, input, coil or discrete")
    address: int = Field(ge=0, le=65535, description="0-based register or bit address")
    byte_order: ByteOrder = Field(default="ABCD", description="for values over several registers")
    unit_id: int | None = Field(
        default=None, ge=0, le=255, description="Modbus unit id; default the device's unit_id"
    )
    poll_group: str = Field(
        default=DEFAULT_GROUP, description="name of a poll group of the device (poll_groups)"
    )
    bit: int | None = Field(
        default=None, ge=0, le=15, description="bool tag on a register: bit number, 0 = LSB"
    )
    length: int | None = Field(
        default=None, ge=1, le=125, description="string tags: registers (2 characters each)"
    )
    clamp: tuple[float, float] | None = Field(
        default=None,
        description="[min, max] in published units: values outside are clamped and UNCERTAIN",
    )

    @field_validator("poll_group")
    @classmethod
    def _known_group(cls, value: str) -> str:
        groups = _GROUPS_IN_SCOPE.get()
        if groups is not None and value not in groups:
            raise ValueError(unknown("poll group", value, sorted(groups), "the device has:"))
        return value

    @model_validator(mode="after")
    def _type_fits_table(self) -> ModbusTagConfig:
        count = REGISTER_TYPES.get(self.type)
        if (count is not None and self.bit is None and self.length is None
                and (self.table == "holding" or self.table == "input")):  # fmt: skip
            # the usual tag, a number on registers: what the checks below come to for it
            # (100,000 tags: 0.31 -> 0.08 s)
            if self.address + count > 65536:
                raise ValueError("the value runs past register 65535")
            if self.writable and self.table == "input":
                raise ValueError("input tags are read-only in Modbus; writable must be false")
            if self.clamp is not None and self.clamp[0] > self.clamp[1]:
                raise ValueError(f"clamp minimum {self.clamp[0]} is above maximum {self.clamp[1]}")
            return self
        bit_table = self.table in ("coil", "discrete")
        if bit_table and self.type is not DataType.BOOL:
            raise ValueError(f"a {self.table} tag is a single bit: its type must be bool")
        if bit_table and self.bit is not None:
            raise ValueError(f"bit is for bool tags on registers, not on {self.table} tags")
        if not bit_table:
            if self.type is DataType.BOOL and self.bit is None:
                raise ValueError(
                    f"a bool tag on a {self.table} register needs bit: 0..15 "
                    "(0 = least significant)"
                )
            if self.type is not DataType.BOOL and self.bit is not None:
                raise ValueError("bit is only for tags of type bool")
            if self.type is DataType.STRING and self.length is None:
                raise ValueError("a string tag needs length: its number of registers")
            allowed = {DataType.BOOL, DataType.STRING, *REGISTER_TYPES}
            if self.type not in allowed:
                kinds = (*REGISTER_TYPES, DataType.BOOL, DataType.STRING)
                names = ", ".join(t.value for t in kinds)
                raise ValueError(f"a {self.table} register tag has type one of {names}")
        if self.length is not None and self.type is not DataType.STRING:
            raise ValueError("length is only for tags of type string")
        if self.type is DataType.STRING and self.byte_order not in ("ABCD", "BADC"):
            raise ValueError(
                "a string's byte_order is ABCD (high byte first) or BADC (low byte first)"
            )
        if self.address + self.register_count > 65536:
            raise ValueError("the value runs past register 65535")
        if self.writable and self.table in ("input", "discrete"):
            raise ValueError(f"{self.table} tags are read-only in Modbus; writable must be false")
        if self.writable and self.bit is not None:
            raise ValueError(
                "a bit inside a register cannot be written safely (the other 15 bits would be "
                "overwritten); write the register as a uint16 tag or use a coil"
            )
        if self.clamp is not None:
            if self.type in (DataType.BOOL, DataType.STRING):
                raise ValueError(f"clamp is for numbers, not for {self.type.value} tags")
            if self.clamp[0] > self.clamp[1]:
                raise ValueError(f"clamp minimum {self.clamp[0]} is above maximum {self.clamp[1]}")
        return self

    @property
    def register_count(self) -> int:
        if self.table in ("coil", "discrete") or self.type is DataType.BOOL:
            return 1
        if self.type is DataType.STRING:
            return self.length or 1
        return REGISTER_TYPES[self.type]


class ModbusDeviceConfig(DeviceConfig):
    """Keys shared by the Modbus devices of every transport."""

    unit_id: int = Field(default=1, ge=0, le=255, description="Modbus unit (slave) id")
    timeout: PositiveDuration = Field(default=1.0, description="time to wait for one answer")
    retries: int = retries_field(0)
    poll_groups: list[PollGroupConfig] = Field(
        default_factory=list,
        description="extra poll groups [{name, interval}]; poll_interval is the 'default' group",
    )
    write_multiple: bool = Field(
        default=False,
        description="always write with FC15/FC16, for devices without FC5/FC6",
    )
    max_request_registers: int = Field(default=125, ge=1, le=125)
    max_request_bits: int = Field(default=2000, ge=1, le=2000)
    max_gap: int = Field(
        default=0,
        ge=0,
        le=124,
        description="unused registers (or bits) a request may span to join two tags",
    )
    tags: list[ModbusTagConfig] = Field(min_length=1)  # type: ignore[assignment]  # a driver narrows its tags (pydantic validates)

    @model_validator(mode="wrap")
    @classmethod
    def _scope_groups(cls, data: Any, handler: Any) -> Any:
        names: frozenset[str] | None = None
        if isinstance(data, dict) and isinstance(data.get("poll_groups", []), list):
            given = [
                g.get("name") if isinstance(g, dict) else getattr(g, "name", None)
                for g in data.get("poll_groups", [])
            ]
            named = [n for n in given if isinstance(n, str)]
            if len(named) == len(given):
                names = frozenset({DEFAULT_GROUP, *named})
        with _groups_in_scope(names):
            return handler(data)

    @model_validator(mode="after")
    def _check_device(self) -> ModbusDeviceConfig:
        seen: set[str] = {DEFAULT_GROUP}
        for group in self.poll_groups:
            if group.name in seen:
                raise ValueError(f"poll group {group.name!r} is defined twice (or is 'default')")
            seen.add(group.name)
        for tag in self.tags:
            if tag.poll_group not in seen:  # tags given as objects skip the tag-level check
                refused = unknown("poll group", tag.poll_group, sorted(seen), "the device has:")
                raise ValueError(f"tag {tag.name!r}: {refused}")
            too_long = tag.register_count > self.max_request_registers
            if tag.table in ("holding", "input") and too_long:
                raise ValueError(
                    f"tag {tag.name!r} spans {tag.register_count} registers, more than "
                    f"max_request_registers ({self.max_request_registers})"
                )
        return self

    def interval_of(self, group: str) -> float:
        """Seconds between polls of ``group``."""
        if group == DEFAULT_GROUP:
            return self.poll_interval
        return next(g.interval for g in self.poll_groups if g.name == group)

    def unit_of(self, tag: ModbusTagConfig) -> int:
        return self.unit_id if tag.unit_id is None else tag.unit_id


class ModbusTcpDeviceConfig(ModbusDeviceConfig):
    protocol: Literal["modbus_tcp"]
    host: str = Field(description="IP address or host name of the device")
    port: int = Field(default=502, ge=1, le=65535)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class ModbusUdpDeviceConfig(ModbusDeviceConfig):
    """Modbus TCP frames (MBAP header) in UDP datagrams."""

    protocol: Literal["modbus_udp"]
    host: str = Field(description="IP address or host name of the device")
    port: int = Field(default=502, ge=1, le=65535)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class ModbusSerialDeviceConfig(ModbusDeviceConfig):
    """Keys of a device on a serial line (RTU or ASCII framing)."""

    port: str = Field(description="serial device, e.g. /dev/ttyUSB0; devices on one bus share it")
    baudrate: int = Field(default=9600, ge=300, le=4_000_000)
    parity: Parity = Field(default="N", description="N (none), E (even) or O (odd)")
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    retries: int = retries_field(1)

    @property
    def address(self) -> str:
        return self.port

    @property
    def line_settings(self) -> LineSettings:
        """(baudrate, bytesize, parity, stopbits): must agree between devices on one bus."""
        return LineSettings(self.baudrate, self.bytesize, self.parity, self.stopbits)

    def describe_line(self) -> str:
        return f"{self.port} {self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


class ModbusRtuDeviceConfig(ModbusSerialDeviceConfig):
    """Modbus RTU on a serial line (binary frames with a CRC)."""

    protocol: Literal["modbus_rtu"]


class ModbusAsciiDeviceConfig(ModbusSerialDeviceConfig):
    """Modbus ASCII on a serial line (``:`` hex text with an LRC, CR LF); 7E1 by default,
    as the specification has it."""

    protocol: Literal["modbus_ascii"]
    bytesize: Literal[7, 8] = 7
    parity: Parity = Field(default="E", description="N (none), E (even) or O (odd)")


#: longest registration or heartbeat packet, in bytes
MAX_PACKET_BYTES = 256


class PacketConfig(StrictModel):
    """A packet a DTU or serial device server puts into the stream besides Modbus: its
    registration packet or its heartbeat. Exactly one of ``hex``, ``ascii``, ``pattern``."""

    hex: str | None = Field(
        default=None, description="the packet's bytes in hex, spaces allowed: 'FE 01 A0'")
    ascii: str | None = Field(
        default=None, description="the packet as ASCII text, e.g. 'DTU-0017' (YAML escapes "
        "such as \\r\\n in double quotes are its bytes)")
    pattern: str | None = Field(
        default=None, description="a Python regular expression over the packet's bytes, "
        "e.g. 'IMEI:86\\d{13}' (\\xNN for bytes that are no ASCII)")

    @model_validator(mode="after")
    def _exactly_one(self) -> PacketConfig:
        given = [k for k in ("hex", "ascii", "pattern") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a packet is exactly one of hex, ascii or pattern")
        if self.hex is not None:
            digits = "".join(self.hex.split())
            if not re.fullmatch(r"(?:[0-9A-Fa-f]{2})+", digits):
                raise ValueError(f"hex {self.hex!r}: pairs of hex digits (spaces allowed)")
            if len(digits) // 2 > MAX_PACKET_BYTES:
                raise ValueError(f"a packet is at most {MAX_PACKET_BYTES} bytes")
        if self.ascii is not None:
            if not self.ascii or not self.ascii.isascii():
                raise ValueError("ascii: a non-empty ASCII text (use hex for other bytes)")
            if len(self.ascii) > MAX_PACKET_BYTES:
                raise ValueError(f"a packet is at most {MAX_PACKET_BYTES} bytes")
        if self.pattern is not None:
            self.compiled_pattern()
        return self

    def literal(self) -> bytes | None:
        """The packet's bytes when given as hex or ascii (None for a pattern)."""
        if self.hex is not None:
            return bytes.fromhex("".join(self.hex.split()))
        if self.ascii is not None:
            return self.ascii.encode("ascii")
        return None

    def compiled_pattern(self) -> re.Pattern[bytes]:
        """The pattern as a bytes regular expression; ValueError when it is none."""
        assert self.pattern is not None
        if not self.pattern.isascii():
            raise ValueError("pattern: ASCII only; write other bytes as \\xNN")
        try:
            compiled = re.compile(self.pattern.encode("ascii"), re.DOTALL)
        except re.error as exc:
            raise ValueError(f"pattern {self.pattern!r} is no regular expression: {exc}") from None
        if compiled.match(b"") is not None:
            raise ValueError(f"pattern {self.pattern!r} matches no bytes at all, so it would "
                             "match anywhere: it must need at least one byte")
        return compiled

    def describe(self) -> str:
        if self.hex is not None:
            return f"hex {' '.join(f'{b:02X}' for b in self.literal() or b'')}"
        if self.ascii is not None:
            return f"ascii {self.ascii!r}"
        return f"pattern {self.pattern!r}"


class ModbusRtuOverTcpDeviceConfig(ModbusDeviceConfig):
    """Modbus RTU frames (CRC, no MBAP header) on a TCP connection to a serial device
    server (a transparent RS-485 to Ethernet converter) that the gateway dials."""

    protocol: Literal["modbus_rtu_over_tcp"]
    host: str = Field(description="IP address or host name of the serial device server")
    port: int = Field(ge=1, le=65535, description="the device server's TCP port for the line")
    heartbeat_packet: PacketConfig | None = Field(
        default=None,
        description="a keep-alive packet the device server sends on its own; dropped from "
        "the stream wherever it arrives")
    retries: int = retries_field(1)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class ModbusDtuDeviceConfig(ModbusDeviceConfig):
    """The Modbus RTU devices behind one 4G DTU, which dials in to the gateway.

    The gateway listens on ``listen_port``; the DTU connects, sends its registration
    packet, then forwards the gateway's RTU requests to its RS-485 port and the answers
    back, with a heartbeat now and then. Several DTUs may dial in to one port: each is
    told apart by its registration packet and is one device.
    """

    protocol: Literal["modbus_dtu"]
    listen_port: int = Field(ge=1, le=65535, description="TCP port the gateway listens on "
                             "for DTUs (the DTU's 'server port'); DTU devices may share it")
    listen_host: str = Field(default="0.0.0.0", description="address to listen on; all "
                             "DTU devices of one port give the same")
    registration_packet: PacketConfig = Field(
        description="what this DTU sends first on each connection, which tells it apart "
        "from the other DTUs; also dropped wherever it arrives later")
    heartbeat_packet: PacketConfig | None = Field(
        default=None, description="the DTU's heartbeat; dropped wherever it arrives, "
        "also in the middle of an answer")
    register_timeout: PositiveDuration = Field(
        default=10.0, description="a connection that has sent no registration packet this "
        "long after it opened is closed")
    dial_in_timeout: PositiveDuration = Field(
        default=15.0, description="how long a connect waits for the DTU to dial in and "
        "register before the device is reported down (it keeps waiting in the background)")
    timeout: PositiveDuration = Field(
        default=3.0, description="time to wait for one answer (4G round trips are slow)")
    retries: int = retries_field(1)

    @property
    def address(self) -> str:
        return f"DTU {self.registration_packet.describe()} on {self.listen_host}:{self.listen_port}"
