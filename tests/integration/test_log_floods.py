"""Failures driven per event by a broken disk or a hostile device reach the log as the
first one plus counted summaries (gateway/repeated_log.py), never as a line per event,
while the counters count every event."""

from __future__ import annotations

import asyncio
import json
import re
import resource
import signal
import socket
import sys
import urllib.request
from pathlib import Path
from typing import Any

from tests.integration.gateway_harness import meter_device

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
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} " if want else f"{name} "):
            return float(line.rsplit(" ", 1)[1])
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
