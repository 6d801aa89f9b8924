"""Configuration of a DL/T 645 meter (on RS-485, or through a serial device server) and its
tags (see README.md in this folder)."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from drivers.dlt645.codec import Format, Version, address_bytes, di_bytes
from drivers.dlt645.table import DataIdentifier, table
from gateway.config.device import DeviceConfig, TagConfig
from gateway.config.types import PositiveDuration, SecretRef
from gateway.errors import Dlt645FrameError
from gateway.serial_ports import LineSettings
from gateway.types import INTEGER_RANGES, DataType

Parity = Literal["N", "E", "O"]
#: the meter address meaning "the one meter on this line: read its address at connect"
AUTO = "auto"

#: the version of the device being validated, so that a tag's ``di`` is looked up in the
#: right table and reported at the tag's own line
_VERSION_IN_SCOPE: ContextVar[Version] = ContextVar("dlt645_version", default=2007)


@contextmanager
def _version_in_scope(version: Version) -> Iterator[None]:
    token = _VERSION_IN_SCOPE.set(version)
    try:
        yield
    finally:
        _VERSION_IN_SCOPE.reset(token)


def _check_address(value: str) -> str:
    if value == AUTO:
        return value
    try:
        address_bytes(value)
    except Dlt645FrameError:
        raise ValueError(f"meter address {value!r} is not 12 decimal digits (as printed on the "
                         "meter's name plate, e.g. '000012345678'), nor 'auto'") from None
    if "A" in value:
        raise ValueError(f"meter address {value!r}: AA is the broadcast address; give the "
                         "meter's own address, or 'auto' for a lone meter")
    return value


class Dlt645TagConfig(TagConfig):
    """A value of a data identifier. ``type`` and ``unit`` default to the table's."""

    type: DataType = Field(default=DataType.FLOAT64,
                           description="default: float64 for numbers, string for dates, times "
                           "and digit strings")
    di: str = Field(description="the data identifier: its code ('00010000', DI3..DI0 as the "
                    "standard prints it; 1997: '9010') or its name in the shipped table "
                    "('energy.import.total')")
    format: str | None = Field(
        default=None, description="for identifiers the table does not have: the value's "
        "format as the standard prints it (XXXXXX.XX, XX.XXXX, YYMMDDhhmm, ...)")
    signed: bool = Field(default=False, description="with format: the top bit is the sign")
    offset: int = Field(default=0, ge=0, le=200,
                        description="with format: the value's first byte in the data")
    meter_address: str | None = Field(
        default=None, description="the meter of this tag, when one device reads several "
        "meters (e.g. behind one serial device server); default: the device's")

    _resolved: DataIdentifier | None = PrivateAttr(default=None)

    @field_validator("meter_address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value == AUTO:
            raise ValueError("'auto' is for the device's meter_address, not a tag's")
        return None if value is None else _check_address(value)

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_table(cls, data: Any) -> Any:
        """``type`` and ``unit`` from the table (or the format) when the tag leaves them out."""
        if not isinstance(data, dict) or not isinstance(data.get("di"), str):
            return data
        entry = table(_VERSION_IN_SCOPE.get()).lookup(data["di"])
        fmt_text = entry.format.text if entry is not None else data.get("format")
        is_text = False
        if isinstance(fmt_text, str):
            with suppress(ValueError):
                is_text = not Format.parse(fmt_text).is_number
        out = dict(data)
        if "type" not in out:
            out["type"] = DataType.STRING.value if is_text else DataType.FLOAT64.value
        if "unit" not in out and entry is not None:
            out["unit"] = entry.unit
        return out

    @model_validator(mode="after")
    def _resolve(self) -> Dlt645TagConfig:
        version = _VERSION_IN_SCOPE.get()
        found = table(version).lookup(self.di)
        custom = ("format", "signed", "offset")
        if found is not None:
            given = [k for k in custom if k in self.model_fields_set]
            if given:
                raise ValueError(
                    f"{found.name} ({found.di}) is in the DL/T 645-{version} table with format "
                    f"{found.format}: {', '.join(given)} is only for identifiers the table "
                    "does not have")
            resolved = found
        else:
            resolved = self._custom(version)
        self._check_type(resolved)
        if self.writable and found is not None and not found.writable:
            raise ValueError(f"{found.name} ({found.di}) is read-only in the table; "
                             "writable must be false")
        if self.writable and self.type is DataType.STRING:
            raise ValueError("only numbers can be written; writable must be false")
        if self.writable and self.range is not None:
            fmt = resolved.format
            low = -fmt.largest if fmt.signed else 0
            top = fmt.largest / 10 ** fmt.decimals
            lowest = low / 10 ** fmt.decimals
            raw = [(r - self.offset) / self.scale for r in self.range] if self.scale else []
            if raw and (min(raw) < lowest or max(raw) > top):
                raise ValueError(f"range {list(self.range)} does not fit format {fmt} "
                                 f"({lowest:g}..{top:g} before scale and offset)")
        self._resolved = resolved
        return self

    def _custom(self, version: Version) -> DataIdentifier:
        try:
            di_bytes(self.di.upper(), version)
        except Dlt645FrameError:
            close = difflib.get_close_matches(self.di, table(version).names(), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ValueError(
                f"unknown data identifier {self.di!r}: neither a name in the DL/T 645-{version} "
                f"table nor a code of {8 if version == 2007 else 4} hex digits{hint}") from None
        if self.format is None:
            raise ValueError(f"{self.di} is not in the DL/T 645-{version} table: give its "
                             "format (e.g. format: XX.XXXX)")
        try:
            fmt = Format.parse(self.format, self.signed)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        return DataIdentifier(self.di.upper(), fmt, self.offset)

    def _check_type(self, resolved: DataIdentifier) -> None:
        fmt = resolved.format
        what = resolved.name or resolved.di
        if not fmt.is_number:
            if self.type is not DataType.STRING:
                raise ValueError(f"{what} has format {fmt.text} (text): its type is string")
            return
        if self.type in (DataType.FLOAT64, DataType.FLOAT32):
            return
        if self.type in INTEGER_RANGES and fmt.decimals == 0:
            low, high = INTEGER_RANGES[self.type]
            if (-fmt.largest if fmt.signed else 0) >= low and fmt.largest <= high:
                return
        allowed = "float64 or float32" + (
            ", or an integer type that holds it" if fmt.decimals == 0 else "")
        raise ValueError(f"{what} has format {fmt}: its type is {allowed}, not "
                         f"{self.type.value}")

    @property
    def identifier(self) -> DataIdentifier:
        """The data identifier and how its value reads (set by validation)."""
        if self._resolved is None:
            raise RuntimeError("tag config not validated")
        return self._resolved


class Dlt645DeviceConfig(DeviceConfig):
    """Keys shared by meters on a serial line and behind a serial device server."""

    meter_address: str = Field(
        description="12 digits as printed on the meter (e.g. '000012345678'); 'auto': the "
        "one meter on the line, whose address is read at connect (broadcast address)")
    version: Literal[2007, 1997] = Field(default=2007, description="DL/T 645-2007 or -1997")
    preamble: int = Field(default=4, ge=0, le=4,
                          description="FE wake-up bytes sent before each request")
    timeout: PositiveDuration = Field(default=1.5, description="time to wait for one answer")
    retries: int = Field(default=1, ge=0, le=5,
                         description="times a request is sent again after a timeout or a "
                         "garbled answer before its tags go BAD")
    block_reads: bool = Field(
        default=False, description="read the phases (or tariffs) of a quantity that two or "
        "more tags need with one block request (DI1 = FF); a meter that refuses a block is "
        "read one identifier at a time again")
    password: SecretRef | None = Field(
        default=None, description="for writes: {env: VAR} or {file: PATH} holding 8 digits, "
        "the level and the password (e.g. 02123456: level 02, password 123456)")
    operator: str = Field(default="00000000", pattern=r"^[0-9]{8}$",
                          description="for writes (2007): the operator code, 8 digits")
    tags: list[Dlt645TagConfig] = Field(min_length=1)  # type: ignore[assignment]  # a driver narrows its tags (pydantic validates)

    @field_validator("meter_address")
    @classmethod
    def _address(cls, value: str) -> str:
        return _check_address(value)

    @model_validator(mode="wrap")
    @classmethod
    def _scope_version(cls, data: Any, handler: Any) -> Any:
        version: Version = 1997 if isinstance(data, dict) and data.get("version") == 1997 \
            else 2007
        with _version_in_scope(version):
            return handler(data)

    @model_validator(mode="after")
    def _check_device(self) -> Dlt645DeviceConfig:
        if any(t.writable for t in self.tags) and self.password is None:
            raise ValueError("writable tags need the meter's password: password: {env: VAR} "
                             "or {file: PATH}")
        if self.meter_address == AUTO and any(t.meter_address for t in self.tags):
            raise ValueError("meter_address 'auto' reads one lone meter: tags cannot name "
                             "other meters")
        return self

    def meter_of(self, tag: Dlt645TagConfig) -> str:
        """The tag's meter address (``auto`` until the driver read it)."""
        return tag.meter_address or self.meter_address

    def with_base_dir(self, base: Path) -> Dlt645DeviceConfig:
        ref = self.password
        if ref is None or ref.file is None or ref.file.is_absolute():
            return self
        return self.model_copy(
            update={"password": ref.model_copy(update={"file": (base / ref.file).resolve()})})

    def secret_refs(self) -> list[tuple[tuple[str, ...], SecretRef]]:
        return [(("password",), self.password)] if self.password is not None else []


class Dlt645SerialDeviceConfig(Dlt645DeviceConfig):
    """A meter on an RS-485 line; the meters of one line share its port."""

    protocol: Literal["dlt645"]
    port: str = Field(description="serial device, e.g. /dev/ttyUSB0; meters on one line share it")
    baudrate: int = Field(default=2400, ge=300, le=115200)
    parity: Parity = Field(default="E", description="N (none), E (even) or O (odd)")
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8

    @property
    def address(self) -> str:
        return f"{self.port} meter {self.meter_address}"

    @property
    def line_settings(self) -> LineSettings:
        """(baudrate, bytesize, parity, stopbits): must agree between meters on one line."""
        return LineSettings(self.baudrate, self.bytesize, self.parity, self.stopbits)


class Dlt645TcpDeviceConfig(Dlt645DeviceConfig):
    """A meter behind a serial device server in transparent mode: the same frames on TCP."""

    protocol: Literal["dlt645_tcp"]
    host: str = Field(description="IP address or host name of the serial device server")
    port: int = Field(ge=1, le=65535, description="its TCP port for this RS-485 line")
    retries: int = Field(default=1, ge=0, le=5,
                         description="times a request is sent again after a timeout or a "
                         "garbled answer before its tags go BAD")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port} meter {self.meter_address}"
