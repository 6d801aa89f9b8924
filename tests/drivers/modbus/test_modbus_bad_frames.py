"""drivers/modbus/pymodbus_adapter.py, bad frames: pymodbus's log lines about them thinned
(pure logic, injected clock), and the pymodbus internals the guard relies on, pinned."""

from __future__ import annotations

import logging

import pymodbus.logging
import pytest
from modbus_sim import RawDevice, mbap_reply

from drivers.modbus.pymodbus_adapter import (
    PYMODBUS_LOGGER,
    BadFrames,
    PymodbusLogFilter,
    install_log_filter,
    tcp_client,
)


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelname, record.getMessage()))


@pytest.fixture
def filtered() -> tuple[logging.Logger, Kept, Clock]:
    clock = Clock()
    logger = logging.Logger("test.pymodbus", logging.DEBUG)  # not in logging's registry
    kept = Kept()
    logger.addHandler(kept)
    logger.addFilter(PymodbusLogFilter(clock))
    return logger, kept, clock


def test_first_line_of_a_kind_passes_the_rest_is_counted_then_summed_up(
    filtered: tuple[logging.Logger, Kept, Clock],
) -> None:
    logger, kept, clock = filtered
    dump = "\n>>>>> recv: 0x33 0x86 0x98 0xf9"
    logger.error("Invalid Modbus protocol id: 39161" + dump)
    for pid in range(100, 150):  # the same kind: numbers differ
        clock.now += 1
        logger.error("Invalid Modbus protocol id: %d" + dump, pid)
    logger.warning("Repeating....")  # pymodbus's own word for the same text again
    clock.now += 10  # 60 s after the first line
    logger.error("Invalid Modbus protocol id: 7" + dump)
    assert kept.lines == [
        ("ERROR", "Invalid Modbus protocol id: 39161" + dump),  # in full, frames and all
        ("ERROR", "pymodbus logged this 52 more times in the last 60 s: "
                  "Invalid Modbus protocol id: 7"),
    ]


def test_each_kind_is_counted_apart_and_debug_lines_pass(
    filtered: tuple[logging.Logger, Kept, Clock],
) -> None:
    logger, kept, clock = filtered
    logger.warning("Unable to decode frame Modbus Error: Unknown response 85")
    logger.error("Invalid Modbus protocol id: 5")
    logger.warning("Unable to decode frame Modbus Error: Unknown response 86")
    logger.error("Invalid Modbus protocol id: 6")
    logger.debug("Processing: 0x1 0x2")
    logger.debug("Processing: 0x1 0x2")
    assert kept.lines == [
        ("WARNING", "Unable to decode frame Modbus Error: Unknown response 85"),
        ("ERROR", "Invalid Modbus protocol id: 5"),
        ("DEBUG", "Processing: 0x1 0x2"),
        ("DEBUG", "Processing: 0x1 0x2"),
    ]
    clock.now += 3600  # alone after a quiet hour: in full again
    logger.error("Invalid Modbus protocol id: 8")
    assert kept.lines[-1] == ("ERROR", "pymodbus logged this 2 more times in the last 3600 s: "
                                       "Invalid Modbus protocol id: 8")


def test_pymodbus_writes_its_lines_to_the_logger_the_filter_is_on() -> None:
    """Pins pymodbus: its Log class writes to ``pymodbus.logging``."""
    assert pymodbus.logging.Log._logger is logging.getLogger(PYMODBUS_LOGGER)
    installed = install_log_filter()
    assert install_log_filter() is installed  # once per process
    assert logging.getLogger(PYMODBUS_LOGGER).filters.count(installed) == 1


@pytest.mark.parametrize(("answer", "expected"), [
    # a byte count of 255 with 2 bytes of data: pymodbus raises out of data_received
    (lambda r: mbap_reply(r, bytes([3, 0xFF, 0x00, 0x01])), "Unable to decode"),
    # not Modbus TCP at all (protocol id 7)
    (lambda r: r[:2] + b"\x00\x07\x00\x05" + r[6:7] + bytes([3, 2, 0, 1]),
     "not a Modbus TCP frame: protocol id 7"),
])
async def test_the_guard_sees_every_bad_frame_through_pymodbus_callback_data(
    answer: object, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Pins pymodbus: a client's ``ctx.callback_data(data, addr)`` gets the received bytes
    and returns what it used; ``ctx.transport`` can be aborted."""
    fake = RawDevice(answer)  # type: ignore[arg-type]
    await fake.start()
    bad = BadFrames()
    client = tcp_client("127.0.0.1", fake.port, "probe", 0.3, lambda _: None, bad)
    try:
        assert await client.connect()
        with pytest.raises(Exception):  # noqa: B017 (pymodbus's own: closed or no answer)
            await client.read_holding_registers(0, count=1, device_id=1)
        assert bad.count == 1 and expected in bad.last
        assert not [r for r in caplog.records if r.name == "asyncio"]  # no traceback
    finally:
        client.close()
        await fake.stop()
