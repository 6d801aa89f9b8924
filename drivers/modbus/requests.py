"""Modbus requests and answers without pymodbus: what a Modbus TCP gateway needs at every poll.

A Modbus TCP device's register reads go over the gateway's own connection
(:mod:`drivers.modbus.tcp_link`) from prepared request bytes (:func:`read_pdu`) to
registers decoded by NumPy, so a gateway of Modbus TCP devices need not import pymodbus
(about 2.7 MiB of RSS, issue 21): :mod:`drivers.modbus.pymodbus_adapter` is imported the
first time something needs it (a bit read, a write, an answer that is not the one
expected, a UDP, RTU, ASCII or DTU device, ``scan``). The requests here call a client's
read and write methods (pymodbus's), the answers are read from pymodbus's PDUs by their
attributes; :mod:`drivers.modbus.pymodbus_adapter` re-exports every name.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from gateway.errors import ConnectionLost, RequestFailed, RequestRefused, UndecodableAnswer

if TYPE_CHECKING:
    from drivers.modbus.pymodbus_adapter import Answer, ModbusClient, Request

__all__ = [
    "EXCEPTION_NAMES",
    "BadFrames",
    "Counted",
    "check_write_answer",
    "read_pdu",
    "read_request",
    "read_values",
    "refused",
    "unanswered",
    "write_coil_request",
    "write_registers_request",
]

#: Modbus exception codes as the specification names them
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    7: "negative acknowledge",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
#: function code and client method reading each table
_READS: dict[str, tuple[int, str]] = {
    "coil": (1, "read_coils"),
    "discrete": (2, "read_discrete_inputs"),
    "holding": (3, "read_holding_registers"),
    "input": (4, "read_input_registers"),
}
_BIT_TABLES = frozenset({"coil", "discrete"})


def refused(what: str, code: int) -> RequestRefused:
    """The error of an exception response with ``code`` to the request ``what``."""
    name = EXCEPTION_NAMES.get(code, "unknown exception code")
    return RequestRefused(f"exception_{code}", f"{what}: device answered exception {code} "
                                               f"({name})", code)


def read_request(table: str, address: int, count: int, unit: int) -> Request:
    """Read ``count`` registers (or bits) of ``table`` from ``address`` of unit ``unit``."""
    method = _READS[table][1]

    def call(client: ModbusClient) -> Awaitable[Answer]:
        read: Callable[..., Awaitable[Answer]] = getattr(client, method)
        return read(address, count=count, device_id=unit)

    return call


def write_coil_request(address: int, on: bool, unit: int, multiple: bool) -> Request:
    """FC5 (FC15 when ``multiple``: devices that only take the multiple form)."""
    if multiple:
        return lambda client: client.write_coils(address, [on], device_id=unit)
    return lambda client: client.write_coil(address, on, device_id=unit)


def write_registers_request(address: int, registers: Sequence[int], unit: int,
                            multiple: bool) -> Request:
    """FC6 for one register (unless ``multiple``), FC16 otherwise."""
    if len(registers) == 1 and not multiple:
        return lambda client: client.write_register(address, registers[0], device_id=unit)
    return lambda client: client.write_registers(address, list(registers), device_id=unit)


def read_values(answer: Answer, table: str, count: int, what: str) -> npt.NDArray[np.uint16]:
    """The ``count`` registers (bits as 0/1) of a read's answer; :class:`RequestRefused`
    for an exception response, :class:`RequestFailed` ``decode`` for an answer of another
    function or size."""
    if answer.isError():
        raise refused(what, answer.exception_code)
    if answer.function_code != _READS[table][0]:
        raise RequestFailed("decode", f"{what}: answer has function code {answer.function_code}")
    if table in _BIT_TABLES:
        # bits come packed in whole bytes: the answer carries count rounded up to 8
        bits = answer.bits
        if len(bits) != -(-count // 8) * 8:
            raise RequestFailed("decode", f"{what}: answer has {len(bits)} bits for {count} asked")
        return np.asarray(bits[:count], dtype=np.uint16)
    registers = answer.registers
    if len(registers) != count:
        raise RequestFailed(
            "decode", f"{what}: answer has {len(registers)} registers for {count} asked")
    return np.asarray(registers, dtype=np.uint16)


def check_write_answer(answer: Answer, what: str) -> None:
    """:class:`RequestRefused` when the device answered a write with an exception."""
    if answer.isError():
        raise refused(what, answer.exception_code)


#: a read request's address and count, as pymodbus encodes them
_ADDRESS_COUNT = struct.Struct(">BHH")
#: the most registers (bits) one read asks for, as pymodbus checks
_MAX_COUNT = {"coil": 2000, "discrete": 2000, "holding": 125, "input": 125}


def read_pdu(table: str, address: int, count: int) -> bytes:
    """The PDU (from its function code on) of :func:`read_request`'s read, the bytes
    pymodbus builds for it (with its checks, its ``ValueError``), without pymodbus: what a
    Modbus TCP driver sends for a read at every poll."""
    if not 0 <= address <= 65535:
        raise ValueError(f"0 <= address {address} <= 65535 !")
    if not 1 <= count <= _MAX_COUNT[table]:
        raise ValueError(f"1 <= count {count} <= {_MAX_COUNT[table]} !")
    return _ADDRESS_COUNT.pack(_READS[table][0], address, count)


class Counted(Protocol):
    """What a connection counts for :func:`unanswered`."""

    lost: asyncio.Future[None]
    rx: list[int]
    bad: BadFrames


def unanswered(link: Counted, received: int, undecodable: int, timeout: float, what: str,
               where: str) -> ConnectionLost | RequestFailed:
    """What a request that its deadline (or the connection closing) ended got: a closed
    connection, a garbled answer, or no answer at all. ``received`` and ``undecodable``:
    ``link.rx[0]`` and ``link.bad.count`` when the request was sent."""
    garbled = link.bad.count != undecodable  # frames pymodbus could not decode (guard)
    if link.lost.done():
        if garbled:  # the guard closed the TCP connection
            return UndecodableAnswer(
                f"{what}: garbled answer that cannot be decoded ({link.bad.last}); the "
                f"connection to {where} is closed to start afresh")
        return ConnectionLost(f"the connection to {where} closed during {what}")
    if garbled:
        return RequestFailed("garbled", f"{what}: garbled answer ({link.bad.last})")
    if link.rx[0] != received:  # bytes came, but no frame that checks out
        return RequestFailed("garbled", f"{what}: garbled answer (no valid frame, e.g. a CRC "
                                        "error)")
    return RequestFailed("timeout", f"no answer to {what} within {timeout:g} s")


@dataclass(slots=True)
class BadFrames:
    """Frames pymodbus could not decode on one connection or bus: how many, the last why."""

    count: int = 0
    last: str = ""

    def __call__(self, reason: str) -> None:
        self.count += 1
        self.last = reason
