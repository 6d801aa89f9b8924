"""Commands, pure logic: parsing, checks and scaling, rate limit, read-back, the executor."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from drivers.base import Driver
from gateway.commands import AuditLog, CommandExecutor, CommandResult
from gateway.commands.parse import parse_command
from gateway.commands.ratelimit import WriteRateLimiter
from gateway.commands.readback import ReadBackWatcher
from gateway.commands.validate import matches, to_raw
from gateway.config.loader import load_config_text
from gateway.errors import DeviceWriteRefused, MalformedCommand, WriteRefused
from gateway.tags import TagCatalog
from gateway.types import Quality, SampleBatch

TAGS: list[dict[str, Any]] = [
    {"name": "temp", "table": "input", "address": 0, "type": "int16", "scale": 0.1},
    {"name": "setpoint", "table": "holding", "address": 10, "type": "int16", "scale": 0.1,
     "offset": -50, "writable": True, "range": [-50, 100], "max_write_rate": 2},
    {"name": "ratio", "table": "holding", "address": 11, "type": "uint16", "writable": True,
     "range": [0, 70000]},
    {"name": "limit", "table": "holding", "address": 12, "type": "float32", "writable": True,
     "range": [0, 10], "verify_write": True},
    {"name": "relay", "table": "coil", "address": 0, "type": "bool", "writable": True},
]


def catalog(commands: dict[str, Any] | None = None) -> tuple[TagCatalog, Any]:
    body = {
        "gateway": {"id": "gw", "site": "s", "line": "l"},
        "devices": [{"name": "dev", "protocol": "modbus_tcp", "host": "127.0.0.1", "tags": TAGS}],
        "commands": {"enabled": True, **(commands or {})},
    }
    cfg = load_config_text(json.dumps(body), "test.yaml")
    return TagCatalog(cfg.devices), cfg


def cmd(writes: list[dict[str, Any]], cid: str = "c1", **extra: Any) -> bytes:
    return json.dumps({"v": 1, "type": "cmd", "id": cid, "writes": writes, **extra}).encode()


# --- parsing -------------------------------------------------------------------------------
def test_parse_accepts_the_documented_shape() -> None:
    c = parse_command(cmd([{"tag": "dev.relay", "value": True}], gateway="gw", ts=1), "gw", 8)
    assert c.id == "c1" and c.writes[0].tag == "dev.relay" and c.writes[0].value is True


@pytest.mark.parametrize(
    ("payload", "cid", "reason"),
    [
        (b"{nope", None, "not valid JSON"),
        (b"[1, 2]", None, "JSON object"),
        (b'{"v":1,"type":"cmd","writes":[]}', None, "'id'"),
        (b'{"v":1,"type":"cmd","id":"a","writes":[{"tag":"x","value":NaN}]}', None, "NaN"),
        (cmd([], "a"), "a", "non-empty list"),
        (cmd([{"tag": "x"}], "a"), "a", "exactly 'tag' and 'value'"),
        (cmd([{"tag": "x", "value": [1]}], "a"), "a", "a number, true/false"),
        (cmd([{"tag": "x", "value": 1}], "a", v=2), "a", "version"),
        (cmd([{"tag": "x", "value": 1}], "a", exec="rm"), "a", "unknown field"),
        (cmd([{"tag": "x", "value": 1}], "a", gateway="other"), "a", "addressed to gateway"),
        (cmd([{"tag": "x", "value": 1}] * 9, "a"), "a", "at most 8"),
        (b"x" * 70_000, None, "exceeds"),
        (b"[" * 60_000, None, "malformed JSON: nested more than 32 levels deep"),
        (cmd([{"tag": "x", "value": 1}], "deep")[:-1] + b',"ts":' + b"[" * 30_000
         + b"]" * 30_000 + b"}", "deep", "malformed JSON: nested more than 32 levels deep"),
    ],
)
def test_parse_rejects_with_a_reason_and_the_id_when_readable(
    payload: bytes, cid: str | None, reason: str
) -> None:
    with pytest.raises(MalformedCommand) as err:
        parse_command(payload, "gw", 8)
    assert err.value.command_id == cid
    assert reason in err.value.reason


# --- checks and scaling ----------------------------------------------------------------------
def test_to_raw_applies_inverse_scaling_and_checks() -> None:
    cat, _ = catalog()
    sp, ratio, limit, relay = (cat.get(f"dev.{n}") for n in ("setpoint", "ratio", "limit", "relay"))
    assert to_raw(sp, "dev.setpoint", 23.4) == 734.0  # (23.4 + 50) / 0.1, rounded from 733.99..
    assert to_raw(limit, "dev.limit", 2.5) == 2.5
    assert to_raw(relay, "dev.relay", False) is False
    refusals = [
        (None, "dev.nope", 1, "unknown tag"),
        (cat.get("dev.temp"), "dev.temp", 1, "not writable"),
        (sp, "dev.setpoint", 100.01, "outside the range"),
        (sp, "dev.setpoint", 23.45, "not a multiple"),
        (sp, "dev.setpoint", True, "must be a number"),
        (sp, "dev.setpoint", "7", "must be a number"),
        (ratio, "dev.ratio", 65536, "does not fit uint16"),
        (relay, "dev.relay", 1, "true or false"),
    ]
    for tag, path, value, reason in refusals:
        with pytest.raises(WriteRefused, match=reason):
            to_raw(tag, path, value)


def test_readback_match_uses_float32_precision() -> None:
    cat, _ = catalog()
    limit = cat.get("dev.limit")
    assert limit is not None
    assert matches(limit, 0.1, float(np.float32(0.1)))
    assert not matches(limit, 0.1, 0.2)
    assert matches(limit, True, 1.0) and not matches(limit, True, 0.0)


# --- rate ----------------------------------------------------------------------------------
def test_rate_limit_is_a_sliding_window_per_tag() -> None:
    now = [1000.0]
    limiter = WriteRateLimiter(lambda: now[0])
    assert limiter.wait_s(1, 2) == 0
    limiter.record(1, 2)
    assert limiter.wait_s(1, 2) == 0
    assert limiter.wait_s(1, 2, planned=1) > 0  # a second planned write in the same command
    limiter.record(1, 2)
    assert limiter.wait_s(1, 2) == pytest.approx(60.0)
    assert limiter.wait_s(2, 2) == 0  # other tags are independent
    now[0] += 30
    assert limiter.wait_s(1, 2) == pytest.approx(30.0)
    now[0] += 30
    assert limiter.wait_s(1, 2) == 0
    slow = WriteRateLimiter(lambda: now[0])
    slow.record(3, 0.5)  # one per two minutes
    now[0] += 90
    assert slow.wait_s(3, 0.5) == pytest.approx(30.0)


# --- read-back -------------------------------------------------------------------------------
async def test_readback_waits_for_a_fresh_good_matching_sample() -> None:
    watcher = ReadBackWatcher()
    task = asyncio.create_task(watcher.wait(5, 1000, lambda v: v == 7.0, timeout=5))
    await asyncio.sleep(0)  # one loop turn, no wait: the new task runs up to its first await
    watcher.observe(SampleBatch.of([5], [7.0], 999))  # taken before the write ended
    watcher.observe(SampleBatch.of([5], [np.nan], 1001, Quality.BAD))
    watcher.observe(SampleBatch.of([4, 5], [7.0, 6.0], 1002))  # another tag; a stale value
    assert not task.done()
    watcher.observe(SampleBatch.of([5], [7.0], 1003))
    seen = await task
    assert seen.matched and seen.samples == 2 and seen.last_value == 7.0
    missed = await watcher.wait(5, 0, lambda v: False, timeout=0.01)
    assert not missed.matched and missed.samples == 0


# --- executor with a driver stand-in ----------------------------------------------------------
class FakeDriver(Driver):
    def __init__(self, refuse: bool = False) -> None:
        super().__init__("dev", range(len(TAGS)))
        self.writes: list[tuple[int, object]] = []
        self.refuse = refuse
        self.on_write: Any = None

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def write(self, tag_id: int, value: float | bool | str) -> None:
        if self.refuse:
            raise DeviceWriteRefused("exception 2 (illegal data address)")
        self.writes.append((tag_id, value))
        if self.on_write is not None:
            self.on_write(tag_id, value)


async def run_executor(
    tmp_path: Path, payloads: list[bytes], driver: FakeDriver | None, **commands: Any
) -> tuple[list[CommandResult], list[dict[str, Any]], CommandExecutor]:
    cat, cfg = catalog({"verify_timeout": 0.2, **commands})
    answers: list[CommandResult] = []
    audit = AuditLog(tmp_path / "audit.log")
    ex = CommandExecutor(cfg.commands, cat, "gw", lambda d: driver, audit, answers.append)
    task = asyncio.create_task(ex.run())
    for p in payloads:
        ex.submit("t/cmd", p, retained=False)
    async with asyncio.timeout(5):
        await ex.idle()
    task.cancel()
    ex.close()
    lines = [json.loads(x) for x in (tmp_path / "audit.log").read_text().splitlines()]
    return answers, lines, ex


async def test_executor_writes_raw_values_in_order_and_audits(tmp_path: Path) -> None:
    driver = FakeDriver()
    answers, lines, _ = await run_executor(tmp_path, [
        cmd([{"tag": "dev.setpoint", "value": 0}, {"tag": "dev.relay", "value": True}]),
    ], driver)
    assert driver.writes == [(1, 500.0), (4, True)]
    assert answers[0].status == "accepted"
    assert [(x["event"], x["tag"] if x["event"] == "write" else None) for x in lines] == [
        ("write", "dev.setpoint"), ("write", "dev.relay"), ("cmd", None)
    ]


async def test_executor_one_rejected_write_executes_nothing(tmp_path: Path) -> None:
    driver = FakeDriver()
    answers, _, _ = await run_executor(tmp_path, [
        cmd([{"tag": "dev.relay", "value": True}, {"tag": "dev.temp", "value": 3}]),
    ], driver)
    assert driver.writes == []
    r = answers[0]
    assert r.status == "rejected"
    assert [o.status for o in r.results] == ["rejected", "rejected"]
    assert "another write" in (r.results[0].reason or "")
    assert "not writable" in (r.results[1].reason or "")


async def test_executor_device_refusal_and_down_device_fail(tmp_path: Path) -> None:
    answers, _, _ = await run_executor(
        tmp_path, [cmd([{"tag": "dev.relay", "value": True}, {"tag": "dev.ratio", "value": 3}])],
        FakeDriver(refuse=True),
    )
    r = answers[0]
    assert r.status == "failed"
    assert r.results[0].status == "failed" and "refused" in (r.results[0].reason or "")
    assert r.results[1].status == "rejected"
    assert "earlier write failed" in (r.results[1].reason or "")
    answers, _, _ = await run_executor(
        tmp_path, [cmd([{"tag": "dev.relay", "value": True}], "c2")], None
    )
    assert answers[0].status == "failed" and "not connected" in (answers[0].results[0].reason or "")


async def test_executor_verification(tmp_path: Path) -> None:
    driver = FakeDriver()
    holder: dict[str, CommandExecutor] = {}

    def echo(tag_id: int, value: object) -> None:  # the device answers the next poll with it
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, lambda: holder["ex"].observe(
            SampleBatch.of([tag_id], [value], 2**62)))

    driver.on_write = echo
    cat, cfg = catalog({"verify_timeout": 0.3})
    answers: list[CommandResult] = []
    ex = CommandExecutor(cfg.commands, cat, "gw", lambda d: driver,
                         AuditLog(tmp_path / "a.log"), answers.append)
    holder["ex"] = ex
    task = asyncio.create_task(ex.run())
    ex.submit("t", cmd([{"tag": "dev.limit", "value": 2.5}], "ok"), False)
    async with asyncio.timeout(5):
        await ex.idle()
    driver.on_write = None  # now nothing comes back
    ex.submit("t", cmd([{"tag": "dev.limit", "value": 3.5}], "silent"), False)
    async with asyncio.timeout(5):
        await ex.idle()
    task.cancel()
    ex.close()
    assert answers[0].results[0].verified is True and answers[0].status == "accepted"
    assert answers[1].results[0].verified is False and answers[1].status == "failed"
    assert "no read-back" in (answers[1].results[0].reason or "")


async def test_executor_duplicates_and_unreadable_commands(tmp_path: Path) -> None:
    driver = FakeDriver()
    payload = cmd([{"tag": "dev.relay", "value": True}], "d1")
    answers, lines, ex = await run_executor(tmp_path, [payload, payload, b"\xff\xfe"], driver)
    assert driver.writes == [(4, True)]
    assert [a.duplicate for a in answers] == [False, True]  # the garbage has no id to answer
    assert lines[-1]["outcome"] == "rejected" and lines[-1]["id"] is None
    assert ex.counters.duplicates == 1


async def test_executor_rejects_retained_commands(tmp_path: Path) -> None:
    cat, cfg = catalog()
    driver = FakeDriver()
    answers: list[CommandResult] = []
    ex = CommandExecutor(cfg.commands, cat, "gw", lambda d: driver,
                         AuditLog(tmp_path / "a.log"), answers.append)
    task = asyncio.create_task(ex.run())
    ex.submit("t", cmd([{"tag": "dev.relay", "value": True}]), retained=True)
    async with asyncio.timeout(5):
        await ex.idle()
    task.cancel()
    ex.close()
    assert driver.writes == [] and "retained" in (answers[0].reason or "")


def test_an_audit_log_on_a_full_disk_counts_every_lost_line_and_logs_one_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """/dev/full fails every write with ENOSPC, as a full disk does."""
    caplog.set_level(logging.INFO, "gateway.audit.log")
    audit = AuditLog(Path("/dev/full"))
    try:
        for n in range(30):
            audit.record("write", n=n)
    finally:
        audit.close()
    assert (audit.errors, audit.lines) == (30, 0)
    (record,) = caplog.records  # before: 30 ERRORs with a traceback each
    assert record.levelno == logging.ERROR and record.exc_info is None
    assert record.getMessage() == (
        "cannot write the audit log /dev/full: [Errno 28] No space left on device; "
        "lines lost so far: 1")
