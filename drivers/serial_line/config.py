"""Configuration of a serial-line instrument (protocol ``serial_line``) and its tags.

Byte strings (``terminator``, ``start``, ``end``, ``poll_command``) accept the
escapes ``\\r``, ``\\n``, ``\\t``, ``\\\\`` and ``\\xNN``, so single-quoted YAML
(``'\\r\\n'``) and double-quoted YAML (``"\\r\\n"``) give the same bytes.
"""

from __future__ import annotations

import codecs
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.device import DeviceConfig, TagConfig
from gateway.config.spelling import closest_encoding
from gateway.config.types import PositiveDuration, StrictModel
from gateway.serial_ports import LineSettings
from gateway.types import INTEGER_RANGES, DataType

Parity = Literal["N", "E", "O", "M", "S"]

#: the fields the device's parser offers (regex group names or struct field count), so
#: that a tag naming an unknown field is reported at the tag's own line
_FIELDS_IN_SCOPE: ContextVar[frozenset[str] | int | None] = ContextVar(
    "serial_line_fields", default=None
)


@contextmanager
def _fields_in_scope(fields: frozenset[str] | int | None) -> Iterator[None]:
    token = _FIELDS_IN_SCOPE.set(fields)
    try:
        yield
    finally:
        _FIELDS_IN_SCOPE.reset(token)


def unescape_bytes(text: str) -> bytes:
    """``'\\r\\n'`` -> ``b'\\r\\n'``; ``'\\x02'`` -> ``b'\\x02'``. Raise ValueError when invalid."""
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{text!r} has characters beyond one byte; write them as \\xNN escapes"
        ) from exc
    try:
        return codecs.escape_decode(raw)[0]
    except ValueError as exc:
        raise ValueError(f"invalid escape in {text!r}: {exc}") from exc


def _non_empty_bytes(value: str | None, key: str) -> str | None:
    if value is not None and not unescape_bytes(value):
        raise ValueError(f"{key} must not be empty")
    return value


class FramingConfig(StrictModel):
    """How the byte stream splits into frames: give ``terminator``; or ``length`` (optionally
    with ``start``); or ``start`` and ``end``."""

    terminator: str | None = Field(
        default=None, description="bytes that end every frame, e.g. '\\r\\n' (escapes allowed)"
    )
    length: int | None = Field(
        default=None, ge=1, le=65536,
        description="fixed frame length in bytes, counting the start bytes when given",
    )
    start: str | None = Field(
        default=None, description="bytes that begin every frame, e.g. '\\x02' (STX)"
    )
    end: str | None = Field(default=None, description="bytes that end a frame, e.g. '\\x03' (ETX)")
    max_frame: int = Field(
        default=1024, ge=1, le=1_048_576,
        description="longest frame accepted, in bytes; longer ones are discarded (bounds memory "
        "when garbage never brings a terminator)",
    )

    @field_validator("terminator", "start", "end")
    @classmethod
    def _valid_bytes(cls, value: str | None, info: Any) -> str | None:
        return _non_empty_bytes(value, info.field_name)

    @model_validator(mode="after")
    def _one_kind(self) -> FramingConfig:
        t, n, s, e = self.terminator, self.length, self.start, self.end
        if t is not None and (n is not None or s is not None or e is not None):
            raise ValueError("terminator framing takes no length, start or end")
        if n is not None and e is not None:
            raise ValueError("fixed-length framing takes no end (only an optional start)")
        if t is None and n is None and (s is None or e is None):
            raise ValueError(
                "give terminator (e.g. '\\r\\n'), length (optionally with start), "
                "or start and end (e.g. '\\x02' and '\\x03')"
            )
        if s is not None and e is not None and unescape_bytes(s) == unescape_bytes(e):
            raise ValueError("start and end must differ")
        if n is not None and s is not None and len(unescape_bytes(s)) >= n:
            raise ValueError(f"length {n} leaves no room after the start bytes")
        return self

    @property
    def kind(self) -> Literal["terminator", "length", "start_end"]:
        if self.terminator is not None:
            return "terminator"
        return "length" if self.length is not None else "start_end"

    @property
    def terminator_bytes(self) -> bytes:
        return unescape_bytes(self.terminator or "")

    @property
    def start_bytes(self) -> bytes:
        return unescape_bytes(self.start or "")

    @property
    def end_bytes(self) -> bytes:
        return unescape_bytes(self.end or "")

    @property
    def payload_length(self) -> int | None:
        """Fixed-length framing: bytes of a frame after its start bytes."""
        return None if self.length is None else self.length - len(self.start_bytes)


class ParserConfig(StrictModel):
    """How one frame becomes values: ``regex`` (text) or ``struct`` (binary); give one."""

    regex: str | None = Field(
        default=None,
        description="regular expression with named groups, matched against the whole frame "
        "(decoded with the device's encoding, without framing bytes)",
    )
    struct: str | None = Field(
        default=None, description="Python struct format of the frame's payload, e.g. '<HfB'"
    )

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from exc
        if not pattern.groupindex:
            raise ValueError("the regular expression has no named groups: write (?P<name>...)")
        return value

    @field_validator("struct")
    @classmethod
    def _valid_format(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            struct.calcsize(value)
        except struct.error as exc:
            raise ValueError(f"invalid struct format {value!r}: {exc}") from exc
        if not struct_field_count(value):
            raise ValueError(f"struct format {value!r} has no fields")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> ParserConfig:
        if (self.regex is None) == (self.struct is None):
            raise ValueError("give exactly one of 'regex' or 'struct'")
        return self

    @property
    def fields(self) -> frozenset[str] | int:
        """Regex group names, or the number of struct fields."""
        if self.regex is not None:
            return frozenset(re.compile(self.regex).groupindex)
        return struct_field_count(self.struct or "")


def struct_field_count(fmt: str) -> int:
    """Number of values ``struct.unpack(fmt, ...)`` returns."""
    return len(struct.unpack(fmt, bytes(struct.calcsize(fmt))))


class SerialLineTagConfig(TagConfig):
    """One value taken from each frame: a regex group (by name) or a struct field (by index)."""

    field: str | int = Field(
        description="regex group name, or struct field index (0 = first)"
    )
    map: dict[str, bool | int | float | str] | None = Field(
        default=None,
        description="raw text -> value, e.g. {ST: true, US: false}; text not in the map is BAD",
    )

    @field_validator("field")
    @classmethod
    def _known_field(cls, value: str | int) -> str | int:
        fields = _FIELDS_IN_SCOPE.get()
        _check_field(value, fields)
        return value

    @model_validator(mode="after")
    def _check(self) -> SerialLineTagConfig:
        if self.map is not None:
            if not self.map:
                raise ValueError("map is empty")
            for raw, value in self.map.items():
                is_text = isinstance(value, str)
                if is_text != (self.type is DataType.STRING):
                    want = "text" if self.type is DataType.STRING else "numbers or true/false"
                    raise ValueError(
                        f"map value for {raw!r} is {value!r}: a {self.type.value} tag maps to "
                        f"{want}"
                    )
                limits = INTEGER_RANGES.get(self.type)
                if not is_text and not isinstance(value, bool) and limits is not None and not (
                    float(value).is_integer() and limits[0] <= float(value) <= limits[1]
                ):
                    raise ValueError(
                        f"map value for {raw!r} is {value!r}: not a {self.type.value} "
                        f"({limits[0]}..{limits[1]})"
                    )
        return self


def _check_field(value: str | int, fields: frozenset[str] | int | None) -> None:
    if fields is None:
        return
    if isinstance(fields, int):
        if not isinstance(value, int) or not 0 <= value < fields:
            raise ValueError(
                f"field {value!r}: the struct format has {fields} fields, give an index "
                f"0..{fields - 1}"
            )
    elif value not in fields:
        raise ValueError(
            f"field {value!r} is not a group of the regex (it has: {', '.join(sorted(fields))})"
        )


class SerialLineDeviceConfig(DeviceConfig):
    """A scale, barcode reader or analyzer on a serial port (drivers/serial_line/README.md)."""

    protocol: Literal["serial_line"]
    port: str = Field(description="serial device, e.g. /dev/ttyUSB0 or /dev/serial/by-id/...")
    baudrate: int = Field(default=9600, ge=50, le=4_000_000)
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Parity = Field(default="N", description="N, E, O, M (mark) or S (space)")
    stopbits: Literal[1, 1.5, 2] = 1  # type: ignore[valid-type]  # pydantic checks it; mypy knows no float literals
    rtscts: bool = Field(default=False, description="hardware flow control")
    xonxoff: bool = Field(default=False, description="software flow control")
    mode: Literal["stream", "poll"] = Field(
        default="stream",
        description="stream: the device sends on its own; poll: send poll_command every "
        "poll_interval and await the answer",
    )
    poll_command: str | None = Field(
        default=None, description="poll mode: bytes sent to ask for a frame, e.g. 'SI\\r\\n'"
    )
    response_timeout: PositiveDuration = Field(
        default=1.0, description="poll mode: how long to wait for the answer"
    )
    stale_after: PositiveDuration | None = Field(
        default=5.0,
        description="no valid frame for this long: the tags go STALE and the device down "
        "(null: never, e.g. a barcode reader that is quiet between scans)",
    )
    encoding: str = Field(default="ascii", description="text encoding for regex parsing")
    framing: FramingConfig
    parser: ParserConfig
    tags: list[SerialLineTagConfig] = Field(min_length=1)  # type: ignore[assignment]  # a driver narrows its tags (pydantic validates)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError as exc:
            close = closest_encoding(value)
            hint = f"; did you mean {close!r}?" if close else ""
            raise ValueError(
                f"unknown encoding {value!r}{hint} (e.g. ascii, latin-1, utf-8)") from exc
        return value

    @field_validator("poll_command")
    @classmethod
    def _valid_command(cls, value: str | None) -> str | None:
        return _non_empty_bytes(value, "poll_command")

    @model_validator(mode="wrap")
    @classmethod
    def _scope_fields(cls, data: Any, handler: Any) -> Any:
        fields: frozenset[str] | int | None = None
        parser = data.get("parser") if isinstance(data, dict) else None
        if isinstance(parser, dict):
            try:
                fields = ParserConfig.model_validate(parser).fields
            except ValueError:
                fields = None  # the parser's own error is reported at its line
        with _fields_in_scope(fields):
            return handler(data)

    @model_validator(mode="after")
    def _check_device(self) -> SerialLineDeviceConfig:
        if self.mode == "poll" and self.poll_command is None:
            raise ValueError("poll mode needs poll_command, e.g. 'SI\\r\\n'")
        if self.mode == "stream" and self.poll_command is not None:
            raise ValueError("poll_command is for mode: poll")
        if (
            self.mode == "poll" and self.stale_after is not None
            and self.stale_after <= self.response_timeout
        ):
            raise ValueError("stale_after must be longer than response_timeout")
        fields = self.parser.fields
        for tag in self.tags:  # tags given as objects skip the tag-level check
            try:
                _check_field(tag.field, fields)
            except ValueError as exc:
                raise ValueError(f"tag {tag.name!r}: {exc}") from None
        size_fixed = self.framing.payload_length
        if self.parser.struct is not None and size_fixed is not None:
            size = struct.calcsize(self.parser.struct)
            if size != size_fixed:
                raise ValueError(
                    f"the struct format takes {size} bytes but a frame carries {size_fixed} "
                    "after its start bytes"
                )
        if self.parser.struct is not None and self.framing.max_frame < struct.calcsize(
            self.parser.struct
        ):
            raise ValueError("max_frame is shorter than the struct format")
        return self

    @property
    def address(self) -> str:
        return f"{self.port} {self.baudrate} {self.bytesize}{self.parity}{self.stopbits:g}"

    @property
    def line_settings(self) -> LineSettings:
        """How the bytes go on the wire (the port is the instrument's alone)."""
        return LineSettings(self.baudrate, self.bytesize, self.parity, self.stopbits)

    @property
    def poll_command_bytes(self) -> bytes:
        return unescape_bytes(self.poll_command or "")
