"""Configuration of an Omron FINS device and its tags (see README.md in this folder)."""

from __future__ import annotations

import ipaddress
from functools import cached_property
from typing import Literal

from pydantic import Field, field_validator, model_validator

from drivers.fins.address import Address, parse_address
from gateway.config.device import DeviceConfig, TagConfig
from gateway.config.spelling import unknown
from gateway.config.types import Name, PositiveDuration, StrictModel
from gateway.types import DataType

__all__ = ["DEFAULT_GROUP", "WORDS", "FinsDeviceConfig", "FinsPollGroup", "FinsTagConfig"]

DEFAULT_GROUP = "default"
#: order of the bytes of a value over several words, A the most significant (as in the
#: Modbus driver): CDAB = low word first, each word high byte first, as Omron CPUs store
#: 32- and 64-bit values (D100 holds the low word of a DINT or REAL at D100)
ByteOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]
Transport = Literal["udp", "tcp"]
#: words per value of the fixed-size types
WORDS: dict[DataType, int] = {
    DataType.INT16: 1,
    DataType.UINT16: 1,
    DataType.INT32: 2,
    DataType.UINT32: 2,
    DataType.FLOAT32: 2,
    DataType.INT64: 4,
    DataType.UINT64: 4,
    DataType.FLOAT64: 4,
}
#: largest MEMORY AREA READ: 999 words fill a 2012-byte response frame
MAX_READ_WORDS = 999
#: largest MEMORY AREA WRITE of one tag (a 2012-byte command frame holds 996 words)
MAX_WRITE_WORDS = 996
#: largest MULTIPLE MEMORY AREA READ of CS/CJ-series CPUs
MAX_MULTIPLE_ITEMS = 167


class FinsPollGroup(StrictModel):
    """Tags read together at their own interval."""

    name: Name = Field(description="group name, unique in the device; tags name it in poll_group")
    interval: PositiveDuration = Field(description="how often the group's tags are read")


class FinsTagConfig(TagConfig):
    address: str = Field(
        description="Omron address: D100 (DM), CIO100, W10, H20, A500, E0_100 (EM bank 0, "
        "hex bank), a bit with .NN: CIO100.05, W10.3 (drivers/fins/README.md)")
    byte_order: ByteOrder | None = Field(
        default=None,
        description="for values over several words: CDAB (default: low word first, as Omron "
        "CPUs store DINT, REAL, LREAL), ABCD (high word first), BADC, DCBA; strings: ABCD "
        "(default, first character in the high byte) or BADC")
    length: int | None = Field(
        default=None, ge=1, le=MAX_WRITE_WORDS,
        description="string tags: words (2 characters each)")
    poll_group: str = Field(default=DEFAULT_GROUP, description="a poll group of the device")

    @field_validator("address")
    @classmethod
    def _valid_address(cls, value: str) -> str:
        return str(parse_address(value))

    @model_validator(mode="after")
    def _check_tag(self) -> FinsTagConfig:
        where = self.fins
        if self.type is DataType.BOOL and not where.is_bit:
            raise ValueError(f"a bool tag is one bit: give the bit, e.g. {where}.00")
        if where.is_bit and self.type is not DataType.BOOL:
            raise ValueError(f"{where} is a bit: its type is bool (a {self.type.value} takes "
                             f"words: {where.area.name}{where.word})")
        if self.type is DataType.STRING and self.length is None:
            raise ValueError("a string tag needs length: its number of words (2 characters each)")
        if self.length is not None and self.type is not DataType.STRING:
            raise ValueError("length is only for tags of type string")
        if self.type not in WORDS and self.type not in (DataType.BOOL, DataType.STRING):
            raise ValueError(f"the FINS driver has no type {self.type.value}")
        if self.type is DataType.STRING and self.order not in ("ABCD", "BADC"):
            raise ValueError("a string's byte_order is ABCD (first character in the high byte) "
                             "or BADC (in the low byte)")
        if self.byte_order is not None and self.type is DataType.BOOL:
            raise ValueError("byte_order is for values over words, not for bits")
        end = where.word + self.words
        if end > where.area.words:
            raise ValueError(f"{where}: the {self.words} words of the value run past the end "
                             f"of the area ({where.area.name}{where.area.words - 1})")
        if self.writable and where.word < where.area.read_only_below:
            raise ValueError(f"{where}: A0 .. A{where.area.read_only_below - 1} are read-only; "
                             "writable must be false")
        return self

    @cached_property
    def fins(self) -> Address:
        """The parsed address."""
        return parse_address(self.address)

    @property
    def order(self) -> ByteOrder:
        """The byte order in force: the given one, else ABCD for strings, CDAB otherwise."""
        if self.byte_order is not None:
            return self.byte_order
        return "ABCD" if self.type is DataType.STRING else "CDAB"

    @property
    def words(self) -> int:
        """Words the value takes (a bit: the one word it is in)."""
        if self.type is DataType.STRING:
            return self.length or 1
        return WORDS.get(self.type, 1)


def _last_octet(host: str) -> int | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.version != 4:
        return None
    return int(address) & 0xFF


class FinsDeviceConfig(DeviceConfig):
    protocol: Literal["fins"]
    host: str = Field(description="IP address or host name of the PLC's Ethernet port")
    port: int = Field(default=9600, ge=1, le=65535, description="FINS port (9600)")
    transport: Transport = Field(
        default="udp",
        description="udp (FINS/UDP: every Omron Ethernet port speaks it) or tcp (FINS/TCP, "
        "with the node-address handshake: CJ2, CP1L-E, CS/CJ ETN21 units, NJ/NX)")
    network: int = Field(default=0, ge=0, le=127,
                         description="destination FINS network (0: the local network)")
    node: int | None = Field(
        default=None, ge=1, le=254,
        description="the PLC's FINS node. UDP: default the last number of its IP address "
        "(192.168.250.1 -> 1, Omron's automatic address conversion); TCP: default the node the "
        "PLC gives in the handshake")
    unit: int = Field(default=0, ge=0, le=255,
                      description="destination unit address: 0 the CPU unit")
    source_network: int = Field(default=0, ge=0, le=127, description="the gateway's network")
    source_node: int | None = Field(
        default=None, ge=1, le=254,
        description="the gateway's FINS node. UDP: default the last number of the gateway's "
        "own IP address towards the PLC; TCP: default assigned by the PLC in the handshake "
        "(a number here is asked for instead)")
    source_unit: int = Field(default=0, ge=0, le=255, description="the gateway's unit address")
    local_port: int = Field(
        default=0, ge=0, le=65535,
        description="UDP only: the gateway's own port, 0 any free one (the PLC answers to "
        "the port a command came from, its default); 9600 for a PLC set to answer port 9600")
    gateway_count: int = Field(default=2, ge=0, le=7,
                               description="network bridges a frame may cross (GCT)")
    timeout: PositiveDuration = Field(default=1.0, description="time to wait for one answer")
    retries: int = Field(
        default=0, ge=0, le=5,
        description="times a read is sent again after a timeout or a garbled answer before "
        "its tags go BAD")
    max_request_words: int = Field(
        default=MAX_READ_WORDS, ge=1, le=MAX_READ_WORDS,
        description="largest memory area read, words (or bits)")
    max_gap: int = Field(
        default=32, ge=0, le=MAX_READ_WORDS - 1,
        description="unused words (or bits) one read may span to join two tags of one area")
    multiple_read: bool = Field(
        default=True,
        description="read scattered words and bits with MULTIPLE MEMORY AREA READ (01 04) "
        "when it saves requests; false for CPUs without it")
    max_multiple_items: int = Field(
        default=MAX_MULTIPLE_ITEMS, ge=1, le=MAX_MULTIPLE_ITEMS,
        description="words and bits in one multiple memory area read at most")
    poll_groups: list[FinsPollGroup] = Field(
        default_factory=list,
        description="extra poll groups [{name, interval}]; poll_interval is the 'default' group")
    tags: list[FinsTagConfig] = Field(min_length=1)  # type: ignore[assignment]  # a driver narrows its tags

    @model_validator(mode="after")
    def _check_device(self) -> FinsDeviceConfig:
        seen = {DEFAULT_GROUP}
        for group in self.poll_groups:
            if group.name in seen:
                raise ValueError(f"poll group {group.name!r} is defined twice (or is 'default')")
            seen.add(group.name)
        for tag in self.tags:
            if tag.poll_group not in seen:
                refused = unknown("poll group", tag.poll_group, sorted(seen), "the device has:")
                raise ValueError(f"tag {tag.name!r}: {refused}")
            if tag.words > self.max_request_words:
                raise ValueError(f"tag {tag.name!r} spans {tag.words} words, more than "
                                 f"max_request_words ({self.max_request_words})")
        if self.transport == "udp" and self.node is None and _last_octet(self.host) is None:
            raise ValueError(
                f"node: the PLC's FINS node cannot be taken from the host name {self.host!r}: "
                "give node (its FINS node address, 1..254)")
        if self.transport == "tcp" and self.local_port:
            raise ValueError("local_port is for transport udp; over TCP the system picks it")
        return self

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def default_node(self) -> int | None:
        """The PLC's node when not configured: the last number of its IPv4 address."""
        return self.node if self.node is not None else _last_octet(self.host)

    def describe_connection(self) -> str:
        return f"FINS/{self.transport.upper()} {self.address}"

    def interval_of(self, group: str) -> float:
        """Seconds between polls of ``group``."""
        if group == DEFAULT_GROUP:
            return self.poll_interval
        return next(g.interval for g in self.poll_groups if g.name == group)
