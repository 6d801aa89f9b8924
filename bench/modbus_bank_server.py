"""A simulated Modbus TCP device holding a bank of register tags, for benchmarks.

Run one per simulated device, each in its own process, so that the gateway's
CPU time is measured apart from the simulator's::

    python bench/modbus_bank_server.py --tags 2500 [--port 0] [--unit 1] [--framer rtu]

The device answers on 127.0.0.1 with unit id ``--unit``, in Modbus TCP frames, or with
``--framer rtu`` in RTU frames over TCP (a line behind a serial device server). Its input registers
(FC4) hold ``--tags`` tags laid out by :func:`bank_layout`: a repeating mix of
float32 (2 registers) and int16/uint16 (1 register) values, packed with no gaps
from address 0. Every read answers fresh values: the registers of the request
are rewritten from a request counter before the answer goes out, so a gateway
without deadband publishes every sample it reads.

When listening it prints ``READY <port>`` on standard output. On SIGTERM or
SIGINT it stops and prints one JSON line with what it served
(``{"requests": ..., "registers": ...}``), then exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from dataclasses import dataclass

import numpy as np
from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

log = logging.getLogger("bench.modbus_bank_server")

#: the repeating pattern of tag types: 6 registers per 4 tags (1.5 registers per tag)
TYPE_CYCLE: tuple[str, ...] = ("float32", "int16", "float32", "uint16")
WORDS = {"float32": 2, "int16": 1, "uint16": 1}
#: high word of every float32 tag: 0x4248 is 50.0, the low word varies (50.0 .. 50.25)
FLOAT_HIGH_WORD = 0x4248
#: function code of a read of input registers
READ_INPUT_REGISTERS = 4
MAX_REGISTERS = 65536


@dataclass(frozen=True, slots=True)
class BankTag:
    """One tag of the bank: its name, type and first input register."""

    name: str
    type: str
    address: int


def bank_layout(tags: int) -> list[BankTag]:
    """The tags of a bank of ``tags`` values, packed from input register 0."""
    out: list[BankTag] = []
    address = 0
    for i in range(tags):
        type_ = TYPE_CYCLE[i % len(TYPE_CYCLE)]
        out.append(BankTag(f"t{i:05d}", type_, address))
        address += WORDS[type_]
    if address > MAX_REGISTERS:
        raise ValueError(f"{tags} tags need {address} registers; one device has {MAX_REGISTERS}")
    return out


def register_count(tags: int) -> int:
    """Registers the bank of ``tags`` values takes."""
    layout = bank_layout(tags)
    last = layout[-1]
    return last.address + WORDS[last.type]


class RegisterBank:
    """The registers of one device and the rule that makes every read fresh."""

    def __init__(self, tags: int) -> None:
        layout = bank_layout(tags)
        self.count = register_count(tags)
        is_high = np.zeros(self.count, dtype=bool)
        for tag in layout:
            if tag.type == "float32":
                is_high[tag.address] = True
        self._is_high = is_high
        self._offsets = np.arange(self.count, dtype=np.int64)
        self.requests = 0
        self.registers_served = 0

    async def action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus ``SimDevice`` action: rewrite the requested registers before the answer."""
        if function_code != READ_INPUT_REGISTERS or set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION
        self.requests += 1
        self.registers_served += count
        first = address - start_address
        window = slice(first, first + count)
        # every register not a float's high word counts up with each request: fresh values
        fresh = (self._offsets[window] + self.requests) & 0x7FFF
        fresh[self._is_high[window]] = FLOAT_HIGH_WORD
        registers[window] = fresh.tolist()
        return None


async def serve(host: str, port: int, tags: int, unit: int,
                framer: str = "socket") -> dict[str, int]:
    bank = RegisterBank(tags)
    empty = [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)]
    empty_bits = [SimData(0, count=16, values=False, datatype=DataType.BITS)]
    inputs = [SimData(0, count=bank.count, values=0, datatype=DataType.REGISTERS)]
    device = SimDevice(id=unit, simdata=(empty_bits, empty_bits, empty, inputs), action=bank.action)
    server = ModbusTcpServer([device], address=(host, port), framer=FramerType(framer))
    await server.serve_forever(background=True)
    sockets = getattr(server.transport, "sockets", None) or []
    if not sockets:
        await server.shutdown()
        raise OSError(f"no listening socket on {host}:{port}")
    bound = int(sockets[0].getsockname()[1])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {bound}", flush=True)
    log.info("bank of %d tags (%d registers) on %s:%d", tags, bank.count, host, bound)
    await stop.wait()
    await server.shutdown()
    return {"requests": bank.requests, "registers": bank.registers_served}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="listen address (loopback)")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one")
    parser.add_argument("--tags", type=int, required=True, help="tags in the bank")
    parser.add_argument("--unit", type=int, default=1, help="Modbus unit id")
    parser.add_argument("--framer", choices=["socket", "rtu"], default="socket",
                        help="socket: Modbus TCP; rtu: RTU frames over TCP")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pymodbus").setLevel(logging.ERROR)
    if args.tags < 1:
        parser.error("--tags must be at least 1")
    stats = asyncio.run(serve(args.host, args.port, args.tags, args.unit, args.framer))
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
