"""Configuration of a Modbus TCP device and its tags (see README.md in this folder)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gateway.config.device import DeviceConfig, TagConfig
from gateway.config.types import PositiveDuration
from gateway.types import DataType

Table = Literal["holding", "input", "coil", "discrete"]
#: order of the bytes of a multi-register value, A being the most significant byte.
#: ABCD = big endian (Modbus default), CDAB = word swapped, BADC = byte swapped,
#: DCBA = little endian
ByteOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]

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


class ModbusTagConfig(TagConfig):
    table: Table = Field(default="holding", description="holding, input, coil or discrete")
    address: int = Field(ge=0, le=65535, description="0-based register or bit address")
    byte_order: ByteOrder = Field(default="ABCD", description="for values over several registers")

    @model_validator(mode="after")
    def _type_fits_table(self) -> ModbusTagConfig:
        bit_table = self.table in ("coil", "discrete")
        if bit_table and self.type is not DataType.BOOL:
            raise ValueError(f"a {self.table} tag is a single bit: its type must be bool")
        if not bit_table and self.type not in REGISTER_TYPES:
            allowed = ", ".join(t.value for t in REGISTER_TYPES)
            raise ValueError(f"a {self.table} register tag has type one of {allowed}")
        if self.address + self.register_count > 65536:
            raise ValueError("the value runs past register 65535")
        if self.writable and self.table in ("input", "discrete"):
            raise ValueError(f"{self.table} tags are read-only in Modbus; writable must be false")
        return self

    @property
    def register_count(self) -> int:
        return 1 if self.table in ("coil", "discrete") else REGISTER_TYPES[self.type]


class ModbusTcpDeviceConfig(DeviceConfig):
    protocol: Literal["modbus_tcp"]
    host: str = Field(description="IP address or host name of the device")
    port: int = Field(default=502, ge=1, le=65535)
    unit_id: int = Field(default=1, ge=0, le=255, description="Modbus unit (slave) id")
    timeout: PositiveDuration = Field(default=1.0, description="time to wait for one answer")
    max_request_registers: int = Field(default=125, ge=1, le=125)
    max_request_bits: int = Field(default=2000, ge=1, le=2000)
    max_gap: int = Field(
        default=0,
        ge=0,
        le=124,
        description="unused registers (or bits) a request may span to join two tags",
    )
    tags: list[ModbusTagConfig] = Field(min_length=1)  # type: ignore[assignment]

    @model_validator(mode="after")
    def _tags_fit_one_request(self) -> ModbusTcpDeviceConfig:
        for tag in self.tags:
            too_long = tag.register_count > self.max_request_registers
            if tag.table in ("holding", "input") and too_long:
                raise ValueError(
                    f"tag {tag.name!r} spans {tag.register_count} registers, more than "
                    f"max_request_registers ({self.max_request_registers})"
                )
        return self
