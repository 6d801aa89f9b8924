"""Simulated devices on real protocols."""

from hil.devices.modbus_meter import (
    REGISTER_MAP,
    REGISTERS_BY_NAME,
    DataKind,
    ModbusMeterSimulator,
    RegisterSpec,
    Table,
    decode_value,
    encode_reading,
    encode_value,
)

__all__ = [
    "REGISTERS_BY_NAME",
    "REGISTER_MAP",
    "DataKind",
    "ModbusMeterSimulator",
    "RegisterSpec",
    "Table",
    "decode_value",
    "encode_reading",
    "encode_value",
]
