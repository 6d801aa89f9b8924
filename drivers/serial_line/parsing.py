"""Turn one frame's payload into one value per tag: by regular expression or by struct format.

A frame that cannot be decoded, does not match or has the wrong size is rejected
as a whole (:class:`InstrumentFrameRejected`, all tags BAD); a field that does not convert to
its tag's type (a number that is not a number, text missing from the tag's
``map``) makes that tag BAD and the others keep their values.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from drivers.serial_line.config import SerialLineDeviceConfig, SerialLineTagConfig
from gateway.errors import InstrumentFrameRejected
from gateway.types import GOOD_CODE, INTEGER_RANGES, DataType, Quality

#: text accepted for a bool tag without a ``map``
_BOOL_TEXT = {"1": True, "0": False, "true": True, "false": False, "on": True, "off": False,
              "yes": True, "no": False}  # fmt: skip

Raw = str | bytes | int | float | bool | None
Value = float | int | str


#: why a frame is rejected; counted as ``frame_<reason>`` (in words: drivers/error_words.py)
FrameReason = Literal["decode", "no_match", "size", "overflow", "partial", "incomplete"]


@dataclass(frozen=True, slots=True)
class ParsedFrame:
    """One value per tag (config order): float64, or object where the device has strings or
    64-bit integers (exact Python ints)."""

    values: np.ndarray
    quality: np.ndarray

    @property
    def bad_fields(self) -> int:
        return int(np.count_nonzero(self.quality != GOOD_CODE))


class FrameParser:
    """Parses frames for one device's tags (built once from its config)."""

    def __init__(self, config: SerialLineDeviceConfig) -> None:
        self.encoding = config.encoding
        self.tags = tuple(config.tags)
        self._has_objects = any(t.type.is_object for t in self.tags)
        self._converters = [_converter(t, config.encoding) for t in self.tags]
        self._regex = re.compile(config.parser.regex) if config.parser.regex else None
        self._struct = struct.Struct(config.parser.struct) if config.parser.struct else None

    def parse(self, payload: bytes) -> ParsedFrame:
        """Values and qualities of every tag; raise
        :class:`~gateway.errors.InstrumentFrameRejected` for a bad frame."""
        raw = self._fields(payload)
        n = len(self.tags)
        values = np.empty(n, dtype=object if self._has_objects else np.float64)
        quality = np.zeros(n, dtype=np.uint8)  # GOOD is 0
        for i, (tag, convert) in enumerate(zip(self.tags, self._converters, strict=True)):
            value = convert(raw[i]) if raw[i] is not None else None
            if value is None:
                values[i] = math.nan if tag.type is not DataType.STRING else None
                quality[i] = Quality.BAD
            else:
                values[i] = value
        return ParsedFrame(values, quality)

    def _fields(self, payload: bytes) -> Sequence[Raw]:
        if self._regex is not None:
            try:
                text = payload.decode(self.encoding)
            except UnicodeDecodeError as exc:
                raise InstrumentFrameRejected(
                    "decode", f"not {self.encoding} text: {exc.reason} at byte {exc.start}"
                ) from None
            match = self._regex.fullmatch(text)
            if match is None:
                raise InstrumentFrameRejected("no_match", "the frame does not match the regex")
            return [match.group(t.field) for t in self.tags]
        assert self._struct is not None
        if len(payload) != self._struct.size:
            raise InstrumentFrameRejected(
                "size", f"{len(payload)} bytes, the struct format takes {self._struct.size}"
            )
        fields = self._struct.unpack(payload)
        return [fields[t.field] for t in self.tags]  # type: ignore[index]  # struct: int fields only (config)


def _converter(tag: SerialLineTagConfig, encoding: str) -> Callable[[Raw], Value | None]:
    """A function from a raw field to the tag's value, or None when it does not convert."""
    mapping = tag.map
    kind = tag.type

    def text_of(raw: Raw) -> str:
        if isinstance(raw, bytes):
            return raw.decode(encoding, "replace").rstrip("\x00 ")
        return raw if isinstance(raw, str) else str(raw)

    def convert(raw: Raw) -> Value | None:
        if mapping is not None:
            mapped = mapping.get(text_of(raw).strip())
            if mapped is None:
                return None
            if isinstance(mapped, str) or (kind.is_wide_integer and type(mapped) is int):
                return mapped
            return float(mapped)
        if kind is DataType.STRING:
            return text_of(raw)
        if kind is DataType.BOOL:
            if isinstance(raw, bool | int | float):
                # NaN is truthy: a bool from a NaN float is no value, as for the number tags
                return None if raw != raw else (1.0 if raw else 0.0)
            flag = _BOOL_TEXT.get(text_of(raw).strip().lower())
            return None if flag is None else float(flag)
        if kind.is_wide_integer:
            return _exact_integer(raw, text_of, INTEGER_RANGES[kind])
        if isinstance(raw, bool | int | float):
            number = float(raw)
        else:
            try:
                number = float(text_of(raw).strip())
            except ValueError:
                return None
        if not math.isfinite(number):
            return None
        limits = INTEGER_RANGES.get(kind)
        if limits is not None and (not number.is_integer() or not
                                   limits[0] <= number <= limits[1]):
            return None
        return number

    return convert


def _exact_integer(
    raw: Raw, text_of: Callable[[Raw], str], limits: tuple[int, int]
) -> int | None:
    """A 64-bit integer field, exactly: an int from the struct, or decimal digits in the
    text (float64 would round either above 2**53); None when it is no whole number in
    ``limits``."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        number = raw
    elif isinstance(raw, float):
        if not (math.isfinite(raw) and raw.is_integer()):
            return None
        number = int(raw)
    else:
        text = text_of(raw).strip().replace("_", " ")  # int() would accept 1_000
        try:
            number = int(text, 10)
        except ValueError:
            return None
    return number if limits[0] <= number <= limits[1] else None
