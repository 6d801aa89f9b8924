"""Register read responses decoded whole with NumPy, registered on the driver's clients.

pymodbus decodes an FC3/FC4 answer with one ``struct.unpack`` per register and
then formats the whole response as text for a debug line, logged or not: about a
sixth of the client's CPU per 125-register request. These subclasses take the
registers as one big-endian NumPy view of the frame and describe themselves in a
few words, so that a request round trip (one request in flight per device) is
shorter. The validation is pymodbus's: a byte count that does not fit the frame
makes the frame undecodable, which the driver counts as a garbled answer.
"""

from __future__ import annotations

import numpy as np
from pymodbus.client import ModbusBaseClient
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu import ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
)

_BIG_ENDIAN_U16 = np.dtype(">u2")


def _decode_registers(pdu: ModbusPDU, data: bytes) -> None:
    byte_count = int(data[0])
    if byte_count >= len(data) or byte_count % 2:
        raise ModbusIOException(
            f"byte_count {byte_count} does not fit a packet of {len(data)} bytes",
            function_code=pdu.function_code,
        )
    # a read-only big-endian view; the driver converts it to native uint16 in one copy
    pdu.registers = np.frombuffer(data, _BIG_ENDIAN_U16, byte_count // 2, 1)  # type: ignore[assignment]


def _describe(pdu: ModbusPDU) -> str:
    return (f"{type(pdu).__name__}(dev_id={pdu.dev_id}, transaction_id={pdu.transaction_id}, "
            f"{len(pdu.registers)} registers)")


class HoldingRegistersResponse(ReadHoldingRegistersResponse):
    """FC3 answer with its registers as a NumPy array."""

    def decode(self, data: bytes) -> None:
        _decode_registers(self, data)

    def __str__(self) -> str:
        return _describe(self)


class InputRegistersResponse(ReadInputRegistersResponse):
    """FC4 answer with its registers as a NumPy array."""

    def decode(self, data: bytes) -> None:
        _decode_registers(self, data)

    def __str__(self) -> str:
        return _describe(self)


def use_array_responses(client: ModbusBaseClient) -> None:
    """Make ``client`` decode FC3 and FC4 answers with the classes above (this client only)."""
    client.register(HoldingRegistersResponse)
    client.register(InputRegistersResponse)
