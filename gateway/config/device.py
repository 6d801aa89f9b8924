"""Configuration common to every device and every tag, whatever the protocol.

Protocol drivers extend :class:`TagConfig` and :class:`DeviceConfig` with their
addressing fields (``drivers/<protocol>/config.py``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationInfo, model_validator

from gateway.config.types import (
    Duration,
    Name,
    PositiveDuration,
    SecretRef,
    StrictModel,
    TagName,
)
from gateway.types import Classification, DataType

#: the checks of every tag, in sets (properties of DataType cost more at 100,000 tags)
_NOT_NUMBERS = frozenset(t for t in DataType if not t.is_numeric or t is DataType.BOOL)
_WIDE_INTEGERS = frozenset(t for t in DataType if t.is_wide_integer)


class TagConfig(StrictModel):
    """One value read from a device, as the plant names it."""

    name: TagName = Field(description="tag name, unique within its device")
    type: DataType = Field(description="data type on the device")
    unit: str = Field(default="", description="engineering unit after scaling, e.g. V, kW, degC")
    description: str = ""
    scale: int | float = Field(
        default=1.0,
        description="published value = raw * scale + offset; an int64/uint64 tag takes only "
        "whole numbers (it stays exact)",
    )
    offset: int | float = 0.0
    deadband: float | None = Field(
        default=None,
        ge=0,
        description="publish only when the value moved more than this (absolute, in the "
        "published unit); 0 publishes on any change; omitted publishes every sample",
    )
    heartbeat: Duration | None = Field(
        default=None, description="publish at least this often even when the value is unchanged"
    )
    classification: Classification = Field(
        default=Classification.INTERNAL, description="data-registration class sent at birth"
    )
    writable: bool = Field(default=False, description="the brain may write this tag")
    range: tuple[int | float, int | float] | None = Field(
        default=None, description="[min, max] accepted for writes (required when writable)"
    )
    max_write_rate: float = Field(
        default=60.0,
        gt=0,
        description="writes accepted per minute (sliding 60 s window); faster commands are "
        "rejected",
    )
    verify_write: bool = Field(
        default=False,
        description="after a write, wait for the next sample of the tag and compare it with "
        "the written value (commands.verify_timeout)",
    )

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        _share_field_names(cls)

    @model_validator(mode="after")
    def _checked(self, info: ValidationInfo) -> TagConfig:
        """The write range and exact scaling checked; the tag of a config file (a
        :class:`TagSharing` in the validation context) as kept: a copy with its fields in
        the class's shared key table (:func:`_share_field_names`), sharing what the
        :class:`TagSharing` shares."""
        limits = self.range
        if limits is not None and limits[0] > limits[1]:
            raise ValueError(f"range minimum {limits[0]} is above maximum {limits[1]}")
        if self.writable and limits is None and self.type not in _NOT_NUMBERS:
            raise ValueError("a writable numeric tag needs a range: [min, max]")
        if self.type in _WIDE_INTEGERS:
            self._check_exact_scaling()
        sharing = info.context.get(TAG_SHARING) if isinstance(info.context, dict) else None
        if not isinstance(sharing, TagSharing):  # not a config file (``TagConfig(...)``, whose
            return self  # __init__ keeps the instance it made, and warns of another one)
        return _compact_copy(self, sharing)

    def _check_exact_scaling(self) -> None:
        """A 64-bit integer stays exact end to end: float64 holds every integer only up to
        2**53, so such a tag is scaled by whole numbers only (and stays an integer)."""
        for key, number in (("scale", self.scale), ("offset", self.offset)):
            if isinstance(number, float) and not (math.isfinite(number) and number.is_integer()):
                raise ValueError(
                    f"{key} {number:g}: a {self.type.value} tag is published exactly, and "
                    "scaling by a fraction would round it in float64 (above 2**53, an all-ones "
                    "'not available' marker would become a plausible number): use a whole "
                    f"{key}, publish the raw value and scale it at the receiver, or read the "
                    "register as float64"
                )
        if self.scale == 0:
            raise ValueError(f"scale 0: a {self.type.value} tag would always publish its offset")

    @property
    def published_type(self) -> DataType:
        """Type after scaling: integers scaled by a non-unit factor become float64, except
        64-bit integers, which take whole-number scaling only and stay exact."""
        scaled = self.scale != 1.0 or self.offset != 0.0
        if scaled and not self.type.is_wide_integer and self.type not in (
            DataType.BOOL, DataType.STRING
        ):
            return DataType.FLOAT64
        return self.type


#: the key of a :class:`TagSharing` in a validation context
TAG_SHARING = "tag_sharing"


class TagSharing:
    """What the tags of one config file share, given as they are validated: one set of
    the keys written for every tag written with the same keys (pydantic's
    ``__pydantic_fields_set__``, 216 bytes a tag). Shared as each tag is made, the tag's
    own set is freed at once and its memory taken by the next tag's; shared after the
    whole file, 200,000 freed sets left 30 MiB of holes among the tags that stayed in the
    RSS (issue 21). Safe because config models are frozen: pydantic changes that set only
    on assignment, and copies it in ``model_copy``."""

    __slots__ = ("_fields_sets",)

    def __init__(self) -> None:
        self._fields_sets: dict[frozenset[str], set[str]] = {}

    def fields_set(self, fields: set[str]) -> set[str]:
        """The set of these keys that the tags share (the first one given)."""
        return self._fields_sets.setdefault(frozenset(fields), fields)


def _share_field_names(cls: type[TagConfig]) -> None:
    """Put the field names of ``cls`` into the key table its instances share.

    pydantic gives each instance a dict of its own (~464 bytes a Modbus tag: 21 keys and
    their hashes, the largest part of a tag's memory at 200,000 tags: issue 21). CPython
    keeps the attributes of an instance made without such a dict as an array of values
    that shares one key table with every instance of the class, but only for the keys that
    table holds, and it gives each new instance less room for keys it does not hold yet
    (after ~30 instances, none): so the names go in first, from a throwaway instance made
    when the class is, before any tag is validated. Elsewhere than CPython this does
    nothing harmful."""
    probe = object.__new__(cls)
    for name in cls.model_fields:
        _set_attribute(probe, name, None)


#: sets an attribute without the model's frozen ``__setattr__``
_set_attribute = object.__setattr__


def _compact_copy(tag: TagConfig, sharing: TagSharing) -> TagConfig:
    """``tag`` with its values in the shared key table of its class (a frozen model: the
    copy is the same value in every respect, ``==`` and ``model_dump`` included)."""
    copy = object.__new__(type(tag))
    for name, value in tag.__dict__.items():
        _set_attribute(copy, name, value)
    _set_attribute(copy, "__pydantic_fields_set__", sharing.fields_set(tag.__pydantic_fields_set__))
    _set_attribute(copy, "__pydantic_extra__", tag.__pydantic_extra__)
    _set_attribute(copy, "__pydantic_private__", tag.__pydantic_private__)
    return copy


_share_field_names(TagConfig)


class DeviceConfig(StrictModel):
    """Fields every device has; ``protocol`` selects the driver."""

    name: Name = Field(description="device name, unique in this gateway")
    protocol: str
    description: str = ""
    registration_id: str | None = Field(
        default=None, min_length=1, max_length=255, pattern=r"^[!-~]+$",
        description="the device's registration identifier (e.g. an industrial-internet "
        "identifier code such as 88.100.1/press-07), sent in the birth for the brain's catalog",
    )  # fmt: skip
    enabled: bool = True
    poll_interval: PositiveDuration = Field(default=1.0, description="how often to read the tags")
    reconnect_min: PositiveDuration = Field(
        default=0.5, description="first delay before reconnecting to the device after a failure"
    )
    reconnect_max: PositiveDuration = Field(
        default=10.0,
        description="longest delay between reconnect attempts (the delay doubles up to it, with "
        "jitter): how long a device that came back may wait for the gateway at most",
    )
    tags: list[TagConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _reconnect_order(self) -> DeviceConfig:
        if self.reconnect_min > self.reconnect_max:
            raise ValueError(f"reconnect_min {self.reconnect_min:g} s is above reconnect_max "
                             f"{self.reconnect_max:g} s")
        return self

    @property
    def address(self) -> str:
        """Where the device is, as messages name it (host:port, serial port, endpoint);
        drivers override it, the default is the device's name."""
        return self.name

    def with_base_dir(self, base: Path) -> DeviceConfig:
        """A copy whose relative file paths (certificates, secret files) are resolved against
        ``base``, the config file's folder. Devices without file paths return themselves."""
        return self

    def secret_refs(self) -> list[tuple[tuple[str, ...], SecretRef]]:
        """The secrets this device names, each with its key path inside the device block."""
        return []


def registration_ids(devices: Iterable[DeviceConfig]) -> dict[str, str]:
    """Device name -> registration identifier, of the devices that have one (births)."""
    return {d.name: d.registration_id for d in devices if d.registration_id is not None}
