"""Many simulated Modbus TCP devices in one process, each on a port of its own, whose tags
carry the time they were written, for bench/scale.py::

    python bench/modbus_fleet_server.py --devices 500 --tags 100

Each device is a pymodbus 3.16 ``ModbusTcpServer`` with a ``SimDevice`` (unit id 1), all
on one asyncio loop. Its input registers (FC4) hold ``--tags`` float32 tags, tag ``i`` at
register ``2 i``. Every read rewrites the requested registers before the answer goes out:

    value of tag i = (write time in ms mod 2**17) * 128 + (i mod 128)

an integer below 2**24, so exact in float32. A receiver recovers the write time (within
its 131 s period) and checks that the value came from the right register; see
:func:`decode`. When listening it prints ``READY <port> <port> ...`` (one per device, in
order). On SIGTERM or SIGINT it stops and prints one JSON line with the samples each
device served, then exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time

import numpy as np
import numpy.typing as npt
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

log = logging.getLogger("bench.modbus_fleet_server")

#: the write time travels modulo this many ms (131 s): ages are unambiguous below half
TIME_MODULUS = 1 << 17
#: the tag index travels modulo this (7 bits): a value read from another register shows
INDEX_MODULUS = 128
READ_INPUT_REGISTERS = 4


def encode(write_ms: int, first_tag: int, tags: int) -> list[int]:
    """The registers of ``tags`` float32 tags from ``first_tag``, written at ``write_ms``."""
    index = np.arange(first_tag, first_tag + tags) % INDEX_MODULUS
    values = ((write_ms % TIME_MODULUS) * INDEX_MODULUS + index).astype(">f4")
    words: list[int] = values.view(">u2").astype(np.int64).tolist()
    return words


def decode(values: npt.NDArray[np.float64], tag_index: npt.NDArray[np.int64],
           received_ms: float) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    """(values that are this encoding of their tag, their write time in ms since the epoch)
    for values received at ``received_ms`` (the write time is the latest one that fits)."""
    whole = np.isfinite(values) & (values == np.floor(values)) & (values >= 0)
    ints = np.where(whole, values, 0).astype(np.int64)
    ok = whole & (ints % INDEX_MODULUS == tag_index % INDEX_MODULUS) & (ints < (1 << 24))
    written_mod = ints // INDEX_MODULUS
    age = (int(received_ms) - written_mod) % TIME_MODULUS
    return ok, received_ms - age


class Fleet:
    """The devices' counters; one action per device rewrites its registers on each read."""

    def __init__(self, devices: int, tags: int) -> None:
        self.tags = tags
        self.samples = [0] * devices

    def action(self, device: int):  # type: ignore[no-untyped-def]  # pymodbus's callback shape
        samples = self.samples

        async def rewrite(function_code: int, start_address: int, address: int, count: int,
                          registers: list[int], set_values: object) -> ExcCodes | None:
            if function_code != READ_INPUT_REGISTERS or set_values is not None or address % 2:
                return ExcCodes.ILLEGAL_FUNCTION
            tags = count // 2
            first = address - start_address
            registers[first:first + 2 * tags] = encode(time.time_ns() // 1_000_000,
                                                       address // 2, tags)
            samples[device] += tags
            return None

        return rewrite


async def serve(host: str, devices: int, tags: int) -> dict[str, object]:
    fleet = Fleet(devices, tags)
    servers = []
    ports = []
    for d in range(devices):
        empty = [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)]
        bits = [SimData(0, count=16, values=False, datatype=DataType.BITS)]
        inputs = [SimData(0, count=2 * tags, values=0, datatype=DataType.REGISTERS)]
        device = SimDevice(id=1, simdata=(bits, bits, empty, inputs), action=fleet.action(d))
        server = ModbusTcpServer([device], address=(host, 0))
        await server.serve_forever(background=True)
        sockets = getattr(server.transport, "sockets", None) or []
        if not sockets:
            raise OSError(f"device {d}: no listening socket on {host}")
        servers.append(server)
        ports.append(int(sockets[0].getsockname()[1]))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("READY " + " ".join(map(str, ports)), flush=True)
    await stop.wait()
    for server in servers:
        await server.shutdown()
    return {"samples": fleet.samples}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="listen address (loopback)")
    parser.add_argument("--devices", type=int, required=True, help="devices, one port each")
    parser.add_argument("--tags", type=int, required=True, help="float32 tags per device")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pymodbus").setLevel(logging.ERROR)
    if args.devices < 1 or not 1 <= args.tags <= 32768:
        parser.error("--devices must be at least 1, --tags 1..32768")
    stats = asyncio.run(serve(args.host, args.devices, args.tags))
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
