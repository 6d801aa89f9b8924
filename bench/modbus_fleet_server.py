"""Many simulated Modbus TCP devices in one process, each on a port of its own, whose tags
carry the time they were written, for bench/scale.py::

    python bench/modbus_fleet_server.py --devices 500 --tags 100

Each device answers Modbus TCP read requests (FC3 and FC4 alike, unit id any) on one
asyncio loop with a raw :class:`asyncio.Protocol`: the MBAP header and the answer are
built with ``struct`` and the registers with one NumPy expression, no server library in
between. Its registers hold ``--tags`` float32 tags, tag ``i`` at register ``2 i``, and
every read writes the requested registers as the answer goes out:

    value of tag i = (write time in ms mod 2**17) * 128 + (i mod 128)

an integer below 2**24, so exact in float32. A receiver recovers the write time (within
its 131 s period) and checks that the value came from the right register; see
:func:`decode`. Anything else is answered with a Modbus exception: another function code
with 1 (illegal function), a read that starts at an odd register or runs past the last
tag with 2 (illegal data address).

Why not a pymodbus server (until 2026-12-05): at 2,000 devices polled every second its
transaction, framing and datastore took about 0.3 ms of CPU per answered 100-tag poll,
three quarters of what the gateway spends on the poll, on the same 2 cores: the bench then
measured the simulators as much as the gateway. This one costs a few percent of that.

When listening it prints ``READY <port> <port> ...`` (one per device, in order). On
SIGTERM or SIGINT it stops and prints one JSON line with the samples each device served,
then exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import struct
import sys
import time

import numpy as np
import numpy.typing as npt

log = logging.getLogger("bench.modbus_fleet_server")

#: the write time travels modulo this many ms (131 s): ages are unambiguous below half
TIME_MODULUS = 1 << 17
#: the tag index travels modulo this (7 bits): a value read from another register shows
INDEX_MODULUS = 128
READ_HOLDING_REGISTERS = 3
READ_INPUT_REGISTERS = 4
#: MBAP header (transaction id, protocol id, length, unit id)
_MBAP = struct.Struct(">HHHB")
#: a read request's PDU: function code, first register, register count
_READ = struct.Struct(">BHH")


def encode(write_ms: int, first_tag: int, tags: int) -> list[int]:
    """The registers of ``tags`` float32 tags from ``first_tag``, written at ``write_ms``."""
    words: list[int] = np.frombuffer(_tag_bytes(write_ms, first_tag, tags), ">u2").tolist()
    return words


def _tag_bytes(write_ms: int, first_tag: int, tags: int) -> bytes:
    index = np.arange(first_tag, first_tag + tags, dtype=np.int64) % INDEX_MODULUS
    return ((write_ms % TIME_MODULUS) * INDEX_MODULUS + index).astype(">f4").tobytes()


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
    """What every device shares: its tag count, the tag indexes as float32 parts, and the
    samples each device served."""

    def __init__(self, devices: int, tags: int) -> None:
        self.tags = tags
        self.samples = [0] * devices
        self._index = (np.arange(tags, dtype=np.int64) % INDEX_MODULUS).astype(np.float64)
        #: the answer data of the last (write ms, first tag, tags) asked: devices polled
        #: within the same millisecond share it
        self._last: tuple[int, int, int, bytes] = (-1, 0, 0, b"")

    def registers(self, first_tag: int, tags: int) -> bytes:
        """The answer bytes of ``tags`` tags from ``first_tag``, written now."""
        now_ms = time.time_ns() // 1_000_000
        last = self._last
        if last[0] == now_ms and last[1] == first_tag and last[2] == tags:
            return last[3]
        part = float((now_ms % TIME_MODULUS) * INDEX_MODULUS)
        data = (self._index[first_tag:first_tag + tags] + part).astype(">f4").tobytes()
        self._last = (now_ms, first_tag, tags, data)
        return data


class DeviceProtocol(asyncio.Protocol):
    """One connection to device ``device``: answers each complete request in the bytes."""

    def __init__(self, fleet: Fleet, device: int) -> None:
        self.fleet = fleet
        self.device = device
        self.transport: asyncio.Transport | None = None
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        pos, size = 0, len(buffer)
        out = []
        while size - pos >= 8:
            tid, protocol, length, unit = _MBAP.unpack_from(buffer, pos)
            end = pos + 6 + length
            if protocol != 0 or length < 2:
                assert self.transport is not None
                self.transport.abort()  # no Modbus TCP: nothing to answer
                return
            if size < end:
                break
            out.append(self._answer(tid, unit, buffer[pos + 7:end]))
            pos = end
        self._buffer = buffer[pos:]
        if out and self.transport is not None:
            self.transport.write(b"".join(out))

    def _answer(self, tid: int, unit: int, pdu: bytes) -> bytes:
        function = pdu[0]
        if function not in (READ_HOLDING_REGISTERS, READ_INPUT_REGISTERS) or len(pdu) != 5:
            return _MBAP.pack(tid, 0, 3, unit) + bytes((function | 0x80, 1))
        _, address, count = _READ.unpack(pdu)
        first, tags = address // 2, (count + 1) // 2  # an odd count ends half-way in a tag
        if address % 2 or not 1 <= count <= 125 or first + tags > self.fleet.tags:
            return _MBAP.pack(tid, 0, 3, unit) + bytes((function | 0x80, 2))
        data = self.fleet.registers(first, tags)
        if count % 2:
            data = data[:2 * count]
        self.fleet.samples[self.device] += count // 2
        return _MBAP.pack(tid, 0, 3 + len(data), unit) + bytes((function, len(data))) + data


async def serve(host: str, devices: int, tags: int) -> dict[str, object]:
    fleet = Fleet(devices, tags)
    loop = asyncio.get_running_loop()
    servers = []
    ports = []
    for d in range(devices):
        server = await loop.create_server(lambda d=d: DeviceProtocol(fleet, d),  # type: ignore[misc]  # d bound per device
                                          host, 0, backlog=16)
        servers.append(server)
        ports.append(int(server.sockets[0].getsockname()[1]))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("READY " + " ".join(map(str, ports)), flush=True)
    await stop.wait()
    for server in servers:
        server.close()
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
    if args.devices < 1 or not 1 <= args.tags <= 32768:
        parser.error("--devices must be at least 1, --tags 1..32768")
    stats = asyncio.run(serve(args.host, args.devices, args.tags))
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
