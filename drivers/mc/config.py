"""Configuration of a MELSEC device on the MC protocol (SLMP) and its tags (see README.md)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from drivers.mc.devices import WORD_BITS, Address, PlcSeries, parse_address
from drivers.mc.frames import FrameKind, Route
from gateway.config.device import DeviceConfig, TagConfig
from gateway.config.types import PositiveDuration
from gateway.types import DataType

#: which half comes first in the lower address: the low word of a 32/64-bit value (MELSEC's
#: own order for DINT, REAL, LREAL), or the low byte of a string's word (GX Works' order)
HalfOrder = Literal["low_first", "high_first"]

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
#: the protocol's limits: words of one batch read (0401), points of one random read (0403,
#: word and double-word points together; 96 with iQ-R's 4-byte device numbers)
MAX_BATCH_WORDS = 960
MAX_RANDOM_POINTS = {"q": 192, "iq-r": 96, "iq-f": 192}
#: the largest device number of a device specification: 3 bytes (Q, L, iQ-F), 4 bytes (iQ-R)
MAX_NUMBER = {"q": 0xFFFFFF, "iq-r": 0xFFFFFFFF, "iq-f": 0xFFFFFF}

#: the series of the device being validated, so that a tag's address is read in its base
_SERIES_IN_SCOPE: ContextVar[PlcSeries | None] = ContextVar("mc_series", default=None)


@contextmanager
def _series_in_scope(series: PlcSeries | None) -> Iterator[None]:
    token = _SERIES_IN_SCOPE.set(series)
    try:
        yield
    finally:
        _SERIES_IN_SCOPE.reset(token)


class McTagConfig(TagConfig):
    address: str = Field(
        description="device and number as in GX Works: D100, M10, X1F, W1A, ZR4000; a bit of "
        "a word device as D100.A (bit 0-F); X/Y are octal on iq-f, hexadecimal on q and iq-r"
    )
    word_order: HalfOrder = Field(
        default="low_first",
        description="32/64-bit values: low_first (MELSEC's order: the low word in the lower "
        "register) or high_first",
    )
    byte_order: HalfOrder = Field(
        default="low_first",
        description="strings: low_first (GX Works' order: the first character in the low byte "
        "of each word) or high_first",
    )
    length: int | None = Field(
        default=None, ge=1, le=MAX_BATCH_WORDS, description="string tags: words (2 characters each)"
    )

    @field_validator("address")
    @classmethod
    def _readable_address(cls, value: str) -> str:
        series = _SERIES_IN_SCOPE.get()
        if series is not None:
            parse_address(value, series)  # a ValueError: reported at the key
        return value

    @model_validator(mode="after")
    def _type_fits(self) -> McTagConfig:
        if self.length is not None and self.type is not DataType.STRING:
            raise ValueError("length is only for tags of type string")
        if self.type is DataType.STRING and self.length is None:
            raise ValueError("a string tag needs length: its number of words (2 characters each)")
        if "word_order" in self.model_fields_set and self.words < 2:
            raise ValueError("word_order is for values of 2 or 4 words (32- and 64-bit types)")
        if "byte_order" in self.model_fields_set and self.type is not DataType.STRING:
            raise ValueError("byte_order is only for tags of type string")
        allowed = {DataType.BOOL, DataType.STRING, *WORDS}
        if self.type not in allowed:
            names = ", ".join(t.value for t in (DataType.BOOL, *WORDS, DataType.STRING))
            raise ValueError(f"type must be one of {names}")
        series = _SERIES_IN_SCOPE.get()
        if series is not None:  # reported at the tag's line; the device checks it again
            self.check_against(series)
        return self

    @property
    def words(self) -> int:
        """Words of the value (a bool: the word holding its bit)."""
        if self.type is DataType.STRING:
            return self.length or 1
        return WORDS.get(self.type, 1)

    def location(self, series: PlcSeries) -> Address:
        """The tag's device and number (the config checked it reads)."""
        return parse_address(self.address, series)

    def check_against(self, series: PlcSeries) -> None:
        """What depends on the device's series: the address, and the type its device takes.
        ValueError with the reason."""
        where = self.location(series)
        device = where.device
        if device.bit:
            if self.type is DataType.STRING:
                raise ValueError(f"{device.name} is a bit device: a string lives in word "
                                 "devices (D, W, R, ZR)")
            if self.type is not DataType.BOOL and where.number % WORD_BITS:
                first = device.format_number(where.number - where.number % WORD_BITS, series)
                raise ValueError(
                    f"a {self.type.value} on bit device {device.name} reads {self.words * 16} "
                    f"bits from a multiple of 16 ({first} or the next multiple), not from "
                    f"{self.address}")
        elif self.type is DataType.BOOL and where.bit is None:
            raise ValueError(f"a bool tag on word device {device.name} needs a bit: "
                             f"{self.address}.0 .. {self.address}.F")
        elif self.type is not DataType.BOOL and where.bit is not None:
            raise ValueError(".bit addresses are only for tags of type bool")
        if self.writable and device.read_only:
            raise ValueError(f"{device.name} cannot be writable: {device.read_only}")
        if self.writable and where.bit is not None:
            raise ValueError(
                "a bit of a word device cannot be written safely (the other 15 bits would be "
                "overwritten); write the word as a uint16 tag or use a bit device (M, B, L, Y)")
        last = self.last_number(where)
        if last > MAX_NUMBER[series]:
            raise ValueError(f"the value runs past device number {MAX_NUMBER[series]} "
                             f"(the largest a {series} device specification carries)")

    def last_number(self, where: Address) -> int:
        """The last device number the tag's value takes on the wire."""
        if where.device.bit:
            if self.type is DataType.BOOL:
                return where.number
            return where.number + self.words * WORD_BITS - 1
        return where.number + self.words - 1


class McDeviceConfig(DeviceConfig):
    """A MELSEC CPU (Q, L, iQ-R, iQ-F) or Ethernet module speaking SLMP binary frames."""

    protocol: Literal["mc"]
    host: str = Field(description="IP address or host name of the CPU or Ethernet module")
    port: int = Field(ge=1, le=65535, description="the SLMP (MC protocol) port opened in the "
                      "CPU's Ethernet settings for binary communication")
    transport: Literal["tcp", "udp"] = Field(default="tcp", description="as opened in the CPU")
    frame: FrameKind = Field(
        default="3e",
        description="3e, or 4e: frames with a serial number that ties each answer to its "
        "request (a late answer is recognised and dropped without reopening the connection)",
    )
    plc_series: PlcSeries = Field(
        description="q (MELSEC-Q and L), iq-r (iQ-R, iQ-L: 4-byte device numbers) or iq-f "
        "(FX5): decides the base of X/Y numbers (octal on iq-f, hexadecimal otherwise) and "
        "the protocol's limits"
    )
    network: int = Field(default=0, ge=0, le=255, description="network number; 0: the "
                         "connected station's own network")
    station: int = Field(default=0xFF, ge=0, le=255, description="station (PC) number; 255 "
                         "(0xFF): the connected station")
    module_io: int = Field(default=0x03FF, ge=0, le=0xFFFF, description="request destination "
                           "module I/O number: 0x03FF the CPU (own station), 0x03E0..0x03E3 "
                           "CPU 1..4 of a multiple-CPU system")
    multidrop: int = Field(default=0, ge=0, le=255, description="request destination module "
                           "station number (multidrop); 0 unless routed to a multidrop link")
    timeout: PositiveDuration = Field(default=1.0, description="time to wait for one answer")
    monitoring_timer: PositiveDuration | None = Field(
        default=None,
        description="how long the CPU waits for a station it routes the request to, sent in "
        "250 ms units; default: the timeout",
    )
    retries: int = Field(
        default=0, ge=0, le=5,
        description="times a read is sent again after a timeout or an unusable answer before "
        "its tags go BAD",
    )
    random_reads: bool = Field(
        default=True,
        description="merge scattered tags into random reads (0403); false: batch reads only, "
        "for devices without the random read command",
    )
    max_batch_words: int = Field(default=MAX_BATCH_WORDS, ge=1, le=MAX_BATCH_WORDS,
                                 description="words of one batch read")
    max_random_points: int | None = Field(
        default=None, ge=1, le=192,
        description="word and double-word points of one random read; default 192 (96 on iq-r)",
    )
    max_gap: int = Field(default=0, ge=0, le=MAX_BATCH_WORDS - 1,
                         description="unused words a batch read may span to join two tags")
    tags: list[McTagConfig] = Field(min_length=1)  # type: ignore[assignment]  # a driver narrows its tags

    @model_validator(mode="wrap")
    @classmethod
    def _scope_series(cls, data: Any, handler: Any) -> Any:
        series = data.get("plc_series") if isinstance(data, dict) else None
        known = isinstance(series, str) and series in MAX_RANDOM_POINTS  # junk: not a key
        with _series_in_scope(series if known else None):
            return handler(data)

    @model_validator(mode="after")
    def _check_device(self) -> McDeviceConfig:
        for tag in self.tags:
            try:
                tag.check_against(self.plc_series)
            except ValueError as exc:
                raise ValueError(f"tag {tag.name!r}: {exc}") from None
            if tag.words > self.max_batch_words:
                raise ValueError(f"tag {tag.name!r} spans {tag.words} words, more than "
                                 f"max_batch_words ({self.max_batch_words})")
        limit = MAX_RANDOM_POINTS[self.plc_series]
        if self.max_random_points is not None and self.max_random_points > limit:
            raise ValueError(f"max_random_points {self.max_random_points}: a {self.plc_series} "
                             f"random read takes at most {limit} points")
        return self

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}/{self.transport}"

    @property
    def route(self) -> Route:
        return Route(self.network, self.station, self.module_io, self.multidrop)

    @property
    def random_points(self) -> int:
        """Points of one random read."""
        return self.max_random_points or MAX_RANDOM_POINTS[self.plc_series]

    @property
    def timer_units(self) -> int:
        """The monitoring timer in 250 ms units (at least 1: 0 would wait for ever)."""
        seconds = self.monitoring_timer if self.monitoring_timer is not None else self.timeout
        return max(1, min(0xFFFF, math.ceil(seconds / 0.25 - 1e-9)))
