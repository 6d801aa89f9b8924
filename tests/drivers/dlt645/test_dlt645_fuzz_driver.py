"""Whatever bytes come back, a poll ends with values or BAD tags and counters, never an
exception: the driver's whole answer path (frame reader, answer check, BCD decode) fuzzed
through a TCP line whose far end answers hypothesis' bytes."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.dlt645.codec import Frame
from drivers.dlt645.config import Dlt645TcpDeviceConfig
from drivers.dlt645.driver import Dlt645TcpDriver
from gateway.errors import ConnectionLost
from gateway.types import Quality

ADDRESS = "000000000001"
TAGS = [{"name": "kwh", "di": "energy.import.total"}, {"name": "amps", "di": "current.a"},
        {"name": "peak_at", "di": "demand.import.total.time"}]

answers = st.one_of(
    st.binary(max_size=60),  # anything
    st.builds(lambda c, d: Frame(ADDRESS, c, d).encode(2),  # well-formed frames, any content
              st.sampled_from([0x91, 0xB1, 0xD1, 0x93, 0x81, 0x11]), st.binary(max_size=20)),
    st.builds(lambda di, v: Frame(ADDRESS, 0x91, bytes.fromhex(di)[::-1] + v).encode(),
              st.sampled_from(["00010000", "02020100", "01010000"]), st.binary(max_size=10)),
)


async def _poll_with(script: list[bytes]) -> tuple[object, dict[str, int]]:
    queue = list(script)
    handlers: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            while await reader.read(64):
                writer.write(queue.pop(0) if queue else b"")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = Dlt645TcpDeviceConfig.model_validate(
        {"name": "m", "protocol": "dlt645_tcp", "host": "127.0.0.1", "port": port,
         "meter_address": ADDRESS, "timeout": 0.05, "retries": 0, "tags": TAGS})
    # connected without the first-answer probe (the script is for the poll), and with a
    # connect deadline a loaded machine meets; then answers are waited for 0.05 s
    driver = Dlt645TcpDriver(config.model_copy(update={"timeout": 10.0}), [0, 1, 2])
    driver._line = await driver._open()
    driver.config = config
    try:
        batch: object = await driver.read(driver.poll_groups()[0])
    except ConnectionLost:
        batch = None
    finally:
        await driver.close()
        server.close()
        if handlers:  # each ends when the driver's connection closes
            await asyncio.wait(handlers, timeout=2)
    return batch, dict(driver.errors)


@given(st.lists(answers, min_size=3, max_size=3))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_answer_gives_values_or_bad_tags(script: list[bytes]) -> None:
    batch, errors = asyncio.run(_poll_with(script))
    if batch is None:  # three requests in a row unanswered: the meter is presumed gone
        assert errors["timeout"] == 3 and errors["connection_lost"] == 1
        return
    assert len(batch) == 3  # type: ignore[arg-type]
    for quality in batch.quality:  # type: ignore[attr-defined]
        assert quality in (Quality.GOOD, Quality.BAD)
    bad = sum(1 for q in batch.quality if q == Quality.BAD)  # type: ignore[attr-defined]
    assert bad == 0 or errors  # every BAD tag is explained by a counter
