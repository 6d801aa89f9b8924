"""Failures driven per event by a broken disk or a hostile device reach the log as the
first one plus counted summaries (gateway/repeated_log.py), never as a line per event,
while the counters count every event."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import resource
import signal
import socket
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pymodbus.logging import Log

from drivers.modbus.driver import ModbusDriver
from drivers.modbus.pymodbus_adapter import PYMODBUS_LOGGER
from drivers.opcua.asyncua_adapter import ASYNCUA_CLIENT_LOGGERS
from gateway import repeated_log
from gateway.repeated_log import LibraryLogFilter
from hil.broker import MqttBroker
from tests.integration.gateway_harness import gateway_config, meter_device, running

#: the summary interval the gateway processes of these tests run with (60 s in service)
SUMMARY_S = 1.0
RUN_WITH_SHORT_SUMMARIES = (
    "import sys, gateway.repeated_log as r; r.SUMMARY_INTERVAL = float(sys.argv[1]); "
    "from gateway.cli.main import main; main(sys.argv[2:])"
)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GatewayProcess:
    """``chenxing-gateway run`` in a process of its own, its JSON log lines collected."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while raw := await self.proc.stderr.readline():
            try:
                self.lines.append(json.loads(raw))
            except ValueError:
                self.lines.append({"level": "RAW", "logger": "", "msg": raw.decode()})
            self._changed.set()

    async def until(self, predicate: Any, timeout: float = 30.0) -> bool:
        async def wait() -> None:
            while not predicate(self.lines):
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), 20)
        await self._reader
        return code

    def messages(self, logger: str, pattern: str) -> list[dict[str, Any]]:
        return [line for line in self.lines
                if line["logger"] == logger and re.search(pattern, line["msg"])]


def number(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    assert found is not None, (pattern, text)
    return int(found.group(1))


def metric(port: int, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"{name} {labels} not in /metrics")


SPOOL_LOGGER = "gateway.northbound.spool"
WRITE_FAILED = r"^spool .*spool\.db: write failed"


async def test_a_full_disk_logs_one_error_then_summaries_and_the_recovery(
    tmp_path: Path, waveform_meter: Any
) -> None:
    """The kernel's file size limit on the gateway process stands in for a full disk:
    every spool flush (20 a second) fails, the broker being away keeps the spool growing."""
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps({
        "gateway": {"id": "gw-disk", "site": "plant", "line": "l1", "state_dir": "state"},
        "devices": [meter_device("meter", waveform_meter.port)],
        "northbound": {"format": "json", "publish_interval": "50ms",
                       "mqtt": {"host": "127.0.0.1", "port": closed_port()}},
        "http": {"port": 0},
        "logging": {"format": "json"},
    }))
    limit = 256 * 1024

    def full_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", RUN_WITH_SHORT_SUMMARIES, str(SUMMARY_S), "run", "-c", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, preexec_fn=full_disk,
    )
    gw = GatewayProcess(proc)
    try:
        def summaries(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [x for x in lines if x["logger"] == SPOOL_LOGGER
                    and re.search(WRITE_FAILED + r" \d+ more times? in the last", x["msg"])]

        assert await gw.until(lambda lines: len(summaries(lines)) >= 3), gw.lines[-20:]
        # disk space again: the next flush succeeds and says so, with the count
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE,
                         (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        assert await gw.until(lambda lines: any(
            "writes succeed again" in x["msg"] for x in lines)), gw.lines[-20:]
        (api,) = [int(m.group(1)) for x in gw.lines
                  if (m := re.search(r"local API on http://[\d.]+:(\d+)", x["msg"]))]
        write_errors = await asyncio.to_thread(metric, api, "chenxing_spool_write_errors_total")
        lost = await asyncio.to_thread(metric, api, "chenxing_spool_dropped_messages_total",
                                       reason="error")
    finally:
        assert await gw.stop() == 0, gw.lines[-20:]

    failed = gw.messages(SPOOL_LOGGER, WRITE_FAILED)
    first = [x for x in failed if re.search(WRITE_FAILED + ": ", x["msg"])]
    counted = [x for x in failed if x not in first]
    assert len(first) == 1 and first[0]["level"] == "ERROR"
    assert re.search("disk is full|disk I/O error|File too large", first[0]["msg"])
    assert all(x["level"] == "ERROR" for x in counted)
    # one summary per interval: the flood of ten lines a second is gone
    assert 3 <= len(counted) <= 6
    (recovered,) = gw.messages(SPOOL_LOGGER, "writes succeed again")
    assert recovered["level"] == "INFO"
    in_all = number(r"after (\d+) failures", recovered["msg"])
    in_summaries = sum(number(r"failed (\d+) more", x["msg"]) for x in counted)
    # every failure is counted: the first, those summed up, the rest told by the recovery;
    # about ten flushes failed per line
    assert in_all >= 1 + in_summaries >= 3 * (1 + len(counted))
    assert write_errors == in_all and lost >= in_all


#: the summary interval of the hostile device test: its losses come every few seconds
HOSTILE_SUMMARY_S = 10.0


class HostileModbusServer:
    """A Modbus TCP peer on loopback that answers every request with a bad frame: bytes
    that are no Modbus TCP frame (protocol id 7) and, every ``every``-th answer, a frame
    pymodbus cannot decode (a byte count of 255 for 2 bytes), which ends the connection.
    After ``answers`` bad frames it answers properly (registers of zeros)."""

    def __init__(self, answers: int, every: int) -> None:
        self.answers = answers
        self.every = every
        self.sent = 0
        self.undecodable = 0
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    def _answer(self, request: bytes) -> bytes:
        if self.sent >= self.answers:
            count = int.from_bytes(request[10:12], "big")
            pdu = bytes([request[7], 2 * count]) + bytes(2 * count)
            return request[:4] + (len(pdu) + 1).to_bytes(2, "big") + request[6:7] + pdu
        self.sent += 1
        if self.sent % self.every == 0:
            self.undecodable += 1
            pdu = bytes([3, 0xFF, 0x00, 0x01])
            return request[:4] + (len(pdu) + 1).to_bytes(2, "big") + request[6:7] + pdu
        return request[:2] + b"\x00\x07\x00\x05" + request[6:7] + bytes([3, 2, 0xDE, 0xAD])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while header := await reader.readexactly(6):
                body = await reader.readexactly(int.from_bytes(header[4:6], "big"))
                writer.write(self._answer(header + body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
def short_summaries(monkeypatch: pytest.MonkeyPatch) -> Iterator[float]:
    """Summaries every HOSTILE_SUMMARY_S, and fresh filters on the libraries' loggers for
    this test (a filter remembers the kinds it saw); pymodbus forgets its last line too (it
    says ``Repeating....`` for the same text again, process-wide: after an earlier test whose
    last pymodbus line was this test's first, a fresh filter has no line it repeats)."""
    monkeypatch.setattr(repeated_log, "SUMMARY_INTERVAL", HOSTILE_SUMMARY_S)
    monkeypatch.setattr(Log, "last_log_text", "")
    monkeypatch.setattr(Log, "repeat_log", False)
    loggers = [logging.getLogger(name) for name in (PYMODBUS_LOGGER, *ASYNCUA_CLIENT_LOGGERS)]

    def drop_filters() -> None:
        for logger in loggers:
            for f in [f for f in logger.filters if isinstance(f, LibraryLogFilter)]:
                logger.removeFilter(f)

    drop_filters()
    yield HOSTILE_SUMMARY_S
    drop_filters()


async def test_a_hostile_modbus_server_gives_a_few_lines_and_every_bad_frame_counted(
    tmp_path: Path, mosquitto: MqttBroker, short_summaries: float,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    hostile = HostileModbusServer(answers=40, every=8)  # 35 not Modbus, 5 undecodable
    await hostile.start()
    device = meter_device("meter", hostile.port, timeout="200ms",
                          tags=[{"name": "voltage", "type": "float32", "address": 0}])
    loop = asyncio.get_running_loop()
    try:
        async with running(gateway_config(tmp_path, mosquitto.port, [device])) as gw:
            started = loop.time()
            runner = gw.gateway.runners["meter"]

            def unit_errors() -> Any:
                driver = runner.driver
                return driver.units[1].errors if isinstance(driver, ModbusDriver) else {}

            async def all_counted() -> bool:
                return bool(unit_errors().get("garbled", 0) >= 40)

            assert await until(all_counted, timeout=60), (hostile.sent, unit_errors())
            elapsed = loop.time() - started
            api = gw.gateway.http_port or 0
            garbled = await asyncio.to_thread(
                metric, api, "chenxing_modbus_unit_bad_frames_total",
                device="meter", unit="1", kind="garbled")
            errors = dict(runner.driver.errors) if runner.driver is not None else {}
    finally:
        await hostile.stop()

    # every bad frame counted, exactly, per unit and in /metrics
    assert (hostile.sent, hostile.undecodable) == (40, 5)
    assert unit_errors()["garbled"] == 40 and garbled == 40
    assert errors["garbled"] == 40 and errors["connection_lost"] == 5
    # no traceback, nothing from asyncio (pymodbus raised out of data_received before)
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [r for r in records if r.exc_info or r.name == "asyncio"]
    by_logger: dict[str, list[str]] = {}
    for r in records:
        by_logger.setdefault(r.name, []).append(r.getMessage())
    # the driver: the request's first failure; the runner: the first loss, then summaries
    (driver_line,) = by_logger.pop("drivers.modbus.driver")
    assert "garbled answer (not a Modbus TCP frame: protocol id 7" in driver_line
    losses = by_logger.pop("gateway.runtime.device_runner")
    assert "cannot be decoded" in losses[0]
    assert all(re.search(r"connection lost \d+ more times? in the last", x) for x in losses[1:])
    assert len(losses) <= 1 + elapsed / HOSTILE_SUMMARY_S
    # pymodbus: its one line about the undecodable frames (and no summary is due per frame)
    pymodbus_lines = by_logger.pop(PYMODBUS_LOGGER, [])
    assert 1 <= len(pymodbus_lines) <= 1 + elapsed / HOSTILE_SUMMARY_S
    assert by_logger == {}, by_logger
    # 40 bad frames, 5 lost connections: a handful of lines
    assert len(records) < 45 / 3


async def until(predicate: Any, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


class HostileOpcUaServer:
    """An "OPC UA server" on loopback that answers each client's Hello with junk, in turn:
    random bytes, an Acknowledge declaring 256 MB, half an Acknowledge, and an Error
    message too short for its own header (asyncua logged the last with a traceback per
    connection). Each connection is closed after its answer."""

    ANSWERS = (
        lambda: os.urandom(64),
        lambda: b"ACKF" + (0x0FFFFFFF).to_bytes(4, "little") + os.urandom(24),
        lambda: b"ACKF" + (28).to_bytes(4, "little") + bytes(4),
        lambda: b"ERRF" + (16).to_bytes(4, "little") + os.urandom(8),
    )

    def __init__(self) -> None:
        self.sent = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read(1024)  # the Hello
            writer.write(self.ANSWERS[self.sent % len(self.ANSWERS)]())
            self.sent += 1
            await writer.drain()
            await reader.read(1024)  # until the client gives up on us
        except ConnectionError:
            pass
        finally:
            writer.close()


async def test_a_hostile_opcua_server_gives_a_few_lines_without_tracebacks(
    tmp_path: Path, mosquitto: MqttBroker, short_summaries: float,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    hostile = HostileOpcUaServer()
    await hostile.start()
    device = {"name": "plc", "protocol": "opcua", "endpoint": f"opc.tcp://127.0.0.1:{hostile.port}",
              "timeout": "500ms", "reconnect_min": 0.05, "reconnect_max": 0.2,
              "tags": [{"name": "temperature", "node": "ns=2;s=T", "type": "float32"}]}
    loop = asyncio.get_running_loop()
    try:
        async with running(gateway_config(tmp_path, mosquitto.port, [device])):
            started = loop.time()

            async def twenty_answered() -> bool:
                return hostile.sent >= 20  # five of each kind of junk

            assert await until(twenty_answered, timeout=120), hostile.sent
            elapsed = loop.time() - started
    finally:
        await hostile.stop()

    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [r for r in records if r.exc_info or r.stack_info or r.name == "asyncio"]
    by_logger: dict[str, list[str]] = {}
    for r in records:
        by_logger.setdefault(r.name, []).append(r.getMessage())
    # the runner: the first failed connect, then summaries
    failures = by_logger.pop("gateway.runtime.device_runner")
    assert "cannot connect" in failures[0]
    assert len(failures) <= 1 + elapsed / short_summaries
    # asyncua: each kind of its own complaint once (numbers differ, kinds do not), then
    # summaries; never a line per connection
    asyncua_lines = [line for name in ASYNCUA_CLIENT_LOGGERS for line in by_logger.pop(name, [])]
    kinds = {re.sub(r"0x[0-9a-fA-F]+|\d+", "#", line) for line in asyncua_lines
             if "logged this" not in line}
    assert len(asyncua_lines) <= len(kinds) * (1 + elapsed / short_summaries)
    assert len(kinds) <= 4, kinds
    assert by_logger == {}, by_logger
    assert len(records) < hostile.sent / 2
