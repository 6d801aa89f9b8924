"""The ``test_counter`` device keys."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.config.device import DeviceConfig, TagConfig
from gateway.types import DataType


class CounterTagConfig(TagConfig):
    type: DataType = Field(default=DataType.INT32, description="data type of the count")
    step: int = Field(default=1, ge=1, description="added to the tag's value at every poll")


class CounterDeviceConfig(DeviceConfig):
    """A device whose tags count: ``start``, ``start + step``, ``start + 2 step``, ..."""

    protocol: Literal["test_counter"]
    start: int = Field(ge=0, description="the first value of every tag")
    tags: list[CounterTagConfig] = Field(min_length=1)  # type: ignore[assignment]
