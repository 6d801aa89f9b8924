"""A hostile peer: whatever bytes answer the driver, it gives BAD tags with a counter or a
lost connection, never a crash (hypothesis picks the bytes)."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.mc.config import McDeviceConfig
from drivers.mc.driver import McDriver
from gateway.errors import ConnectionLost
from gateway.types import Quality

ROUTE = bytes((0, 0xFF, 0xFF, 0x03, 0))
#: answers close to real ones, so that the checks past the header are reached too
near_answers = st.one_of(
    st.binary(max_size=40),
    st.builds(lambda length, end, data: b"\xd0\x00" + ROUTE + length.to_bytes(2, "little")
              + end.to_bytes(2, "little") + data,
              st.integers(0, 40), st.integers(0, 0xFFFF), st.binary(max_size=40)),
)


async def _poll(answers: list[bytes], transport: str) -> None:
    queue = list(answers)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.read(4096):
                if queue:
                    writer.write(queue.pop(0))
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    class Udp(asyncio.DatagramProtocol):
        def connection_made(self, t: asyncio.BaseTransport) -> None:
            self.t = t

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            if queue:
                self.t.sendto(queue.pop(0), addr)  # type: ignore[attr-defined]

    loop = asyncio.get_running_loop()
    if transport == "tcp":
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
    else:
        udp, _ = await loop.create_datagram_endpoint(Udp, local_addr=("127.0.0.1", 0))
        port = udp.get_extra_info("sockname")[1]
    config = McDeviceConfig.model_validate({
        "name": "p", "protocol": "mc", "host": "127.0.0.1", "port": port, "plc_series": "q",
        "transport": transport, "timeout": 0.05, "tags": [
            {"name": "a", "type": "int32", "address": "D0"},
            {"name": "b", "type": "bool", "address": "M0"}]})
    driver = McDriver(config, [1, 2])
    try:
        try:
            await driver.connect()
        except Exception as exc:  # UDP asks the CPU model first: unreachable is an answer
            assert type(exc).__name__ == "DeviceUnreachable", exc
            return
        for _ in range(3):
            try:
                batch = await driver.read(driver.poll_groups()[0])
            except ConnectionLost:
                return
            assert set(batch.quality.tolist()) <= {Quality.GOOD, Quality.BAD}
            bad = batch.quality == Quality.BAD
            assert not bad.any() or sum(driver.errors.values()) > 0
    finally:
        await driver.close()
        if transport == "tcp":
            server.close()
        else:
            udp.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers=st.lists(near_answers, min_size=1, max_size=4),
       transport=st.sampled_from(["tcp", "udp"]))
def test_any_answer_bytes_never_crash_the_driver(answers: list[bytes], transport: str) -> None:
    asyncio.run(_poll(answers, transport))
