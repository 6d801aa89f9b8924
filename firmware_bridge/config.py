"""Configuration of an MCU sensor node (protocol ``mcu_node``) and its tags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from gateway.config.device import DeviceConfig, TagConfig
from gateway.config.types import PositiveDuration, StrictModel
from gateway.serial_ports import LineSettings
from gateway.types import DataType


class McuNodeTagConfig(TagConfig):
    """One sensor channel of the node, by the name it announces in its hello, or by number."""

    type: DataType = Field(default=DataType.FLOAT32, description="data type (readings are float32)")
    sensor: str | None = Field(
        default=None, description="sensor name as the node announces it, e.g. temperature"
    )
    channel: int | None = Field(default=None, ge=0, le=255, description="sensor channel number")

    @model_validator(mode="after")
    def _one_address(self) -> McuNodeTagConfig:
        if (self.sensor is None) == (self.channel is None):
            raise ValueError("give exactly one of 'sensor' or 'channel'")
        if self.type is DataType.STRING:
            raise ValueError("node readings are numbers: a tag cannot be a string")
        return self


class FirmwareImageAllowed(StrictModel):
    """One image the brain may install on this node: a file name in ``folder`` and its hash."""

    file: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$",
                      description="file name in the firmware folder (no directories)")
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$", description="SHA-256 of the file, hex")


class NodeFirmwareConfig(StrictModel):
    """Firmware updates this node accepts from the brain (``firmware_update`` commands)."""

    folder: Path = Field(default=Path("firmware"),
                         description="local folder of image files; relative to the config file")
    allow: list[FirmwareImageAllowed] = Field(
        default_factory=list, description="the only images the brain may install on this node")


class McuNodeDeviceConfig(DeviceConfig):
    """A microcontroller sensor node on a serial line (firmware_bridge/PROTOCOL.md)."""

    protocol: Literal["mcu_node"]
    port: str = Field(description="serial device, e.g. /dev/ttyACM0 or /dev/ttyUSB0")
    baudrate: int = Field(default=115200, ge=300, le=4_000_000)
    node_id: int = Field(ge=0, le=0xFFFE, description="the node's id (frames from others are "
                         "dropped)")
    stale_after: PositiveDuration = Field(
        default=5.0,
        description="no good frame for this long: the node's tags go STALE and the device down",
    )
    hello_timeout: PositiveDuration = Field(
        default=2.0, description="how long to wait for the node's hello when connecting"
    )
    sample_interval: PositiveDuration | None = Field(
        default=None, description="set the node's sample interval (SET_CONFIG); omitted: "
        "the node's own"
    )
    samples_per_frame: int | None = Field(
        default=None, ge=1, le=126, description="set the samples per channel in a READINGS frame"
    )
    heartbeat_interval: PositiveDuration | None = Field(
        default=None, description="set the node's heartbeat interval"
    )
    firmware: NodeFirmwareConfig | None = Field(
        default=None, description="allow-list of images the brain may install (omitted: none)"
    )
    tags: list[McuNodeTagConfig] = Field(min_length=1)  # type: ignore[assignment]  # a driver narrows its tags (pydantic validates)

    @model_validator(mode="after")
    def _check(self) -> McuNodeDeviceConfig:
        seen: set[object] = set()
        for tag in self.tags:
            key = tag.sensor if tag.sensor is not None else tag.channel
            if key in seen:
                raise ValueError(f"tag {tag.name!r}: sensor {key!r} is mapped twice")
            seen.add(key)
        if self.heartbeat_interval is not None and self.heartbeat_interval >= self.stale_after:
            raise ValueError("heartbeat_interval must be shorter than stale_after")
        return self

    @property
    def address(self) -> str:
        return f"{self.port} node {self.node_id}"

    @property
    def line_settings(self) -> LineSettings:
        """The nodes on one line share its baudrate (8N1)."""
        return LineSettings(self.baudrate)
