"""Disk spool: order, acknowledgement, restart recovery, limits, drop counts, locking, SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.errors import SpoolLocked
from gateway.northbound.message import OutboundMessage
from gateway.northbound.outbox import MemoryOutbox, Outbox
from gateway.northbound.payload_log import FRAMING
from gateway.northbound.spool import DiskSpool, SpoolLimits

BIG = SpoolLimits(max_bytes=1 << 30, max_age_s=3600.0)


def msg(n: int, samples: int = 10, size: int = 0) -> OutboundMessage:
    payload = str(n).encode().ljust(size, b" ")
    return OutboundMessage(f"t/{n}", payload, "data", samples=samples, seq=n)


def drain(box: Outbox) -> list[int]:
    """Take and acknowledge everything; the seqs in the order handed out."""
    seqs = []
    while (m := box.take()) is not None:
        seqs.append(m.seq)
        box.ack(m.id)
    return seqs


@pytest.fixture(params=["memory", "disk"])
def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> Outbox:
    box: Outbox = (
        MemoryOutbox(1000) if request.param == "memory" else DiskSpool(tmp_path / "s.db", BIG)
    )
    yield box
    box.close()


async def test_order_and_ack_are_the_same_for_memory_and_disk(outbox: Outbox) -> None:
    outbox.put_many([msg(n) for n in range(3)])
    first, second = outbox.take(), outbox.take()
    assert first is not None and second is not None
    assert (first.topic, second.topic, first.seq) == ("t/0", "t/1", 0)
    assert (outbox.stats().queued, outbox.stats().inflight) == (1, 2)
    outbox.ack(first.id)
    outbox.ack(-5)  # a birth's id: ignored
    outbox.maintain()
    assert outbox.stats().inflight == 1
    third = outbox.take()
    assert third is not None and third.payload == b"2"
    assert outbox.take() is None


async def test_backlog_and_live_are_two_ordered_streams(outbox: Outbox) -> None:
    outbox.put_many([msg(n) for n in range(4)])
    early = outbox.take_live()
    assert early is not None and early.seq == 0
    assert outbox.mark_backlog() == 3  # a reconnect: what waits is backlog
    outbox.put_many([msg(n) for n in range(10, 13)])
    assert outbox.stats().backlog == 3 and outbox.stats().queued == 6
    order = []
    for take in (outbox.take_live, outbox.take_backlog) * 4:
        m = take()
        if m is not None:
            order.append(m.seq)
    assert order == [10, 1, 11, 2, 12, 3]
    assert outbox.take_backlog() is None and outbox.take_live() is None
    # a second reconnect while the first message is still unacknowledged
    outbox.put(msg(20))
    assert outbox.mark_backlog() == 1
    assert [m.seq for m in (outbox.take_backlog(), outbox.take_backlog()) if m] == [20]


async def test_restart_replays_everything_left_including_inflight_in_order(
    tmp_path: Path,
) -> None:
    spool = DiskSpool(tmp_path / "s.db", BIG)
    spool.put_many([msg(n) for n in range(5)])
    spool.put_many([msg(n) for n in range(5, 8)])
    for _ in range(3):
        m = spool.take()
        assert m is not None
        if m.seq == 0:
            spool.ack(m.id)  # acknowledged: gone; 1 and 2 stay in flight
    spool.close()

    again = DiskSpool(tmp_path / "s.db", BIG)
    stats = again.stats()
    assert (stats.queued, stats.inflight, stats.backlog) == (7, 0, 7)
    assert again.take_live() is None  # everything from before is backlog
    again.put(msg(8))
    assert drain(again) == [1, 2, 3, 4, 5, 6, 7, 8]
    again.maintain()
    assert again.stats().messages == 0
    again.close()
    third = DiskSpool(tmp_path / "s.db", BIG)
    third.put(msg(9))
    live = third.take_live()
    assert live is not None and live.id == 10  # ids never go back, even in an emptied file
    assert third.stats().inflight == 1
    m = third.take()
    assert m is None
    third.close()


async def test_full_spool_drops_the_oldest_waiting_never_inflight_and_counts_persistently(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    spool = DiskSpool(path, SpoolLimits(max_bytes=1000, max_age_s=3600.0))
    spool.put(msg(0, size=197))  # 200 bytes with its topic
    inflight = spool.take()
    for n in range(1, 9):
        spool.put(msg(n, samples=7, size=197))
    stats = spool.stats()
    assert stats.bytes <= 1000 and stats.messages == 5
    assert (stats.drops["full"].messages, stats.drops["full"].samples) == (4, 28)
    assert (stats.dropped, stats.dropped_samples) == (4, 28)
    assert inflight is not None and inflight.seq == 0
    spool.close()
    again = DiskSpool(path, SpoolLimits(max_bytes=1000, max_age_s=3600.0))
    assert again.stats().drops["full"].messages == 4  # survived the restart
    assert drain(again) == [0, 5, 6, 7, 8]
    again.close()


def test_messages_older_than_max_age_are_dropped_and_counted(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path / "s.db", SpoolLimits(max_bytes=1 << 20, max_age_s=0.3))
    spool.put_many([msg(n, samples=5) for n in range(3)])
    time.sleep(0.4)  # ages the messages: the spool reads the wall clock, none to inject
    put_ns = time.time_ns()
    spool.put(msg(3))
    spool.maintain()
    stats = spool.stats()
    read_ns = time.time_ns()
    assert (stats.drops["age"].messages, stats.drops["age"].samples) == (3, 15)
    assert stats.backlog == 0 and stats.oldest_age_s <= (read_ns - put_ns) / 1e9  # msg 3's
    assert drain(spool) == [3]
    spool.close()


def test_the_age_check_writes_only_when_the_oldest_message_expired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """maintain() runs on the event loop: its once-a-second age check must not commit
    (and fsync) while nothing has expired, or a slow disk stalls polling and publishing."""
    spool = DiskSpool(tmp_path / "s.db", SpoolLimits(max_bytes=1 << 20, max_age_s=0.3))
    writes: list[bool] = []
    real = spool._write
    monkeypatch.setattr(spool, "_write", lambda batch, check_age: (
        batch is None and writes.append(check_age)) or real(batch, check_age))  # fmt: skip
    spool.put_many([msg(n) for n in range(3)])
    spool.maintain()  # the first check: nothing is 0.3 s old
    assert writes == []  # maintain's own transactions (puts write theirs)
    time.sleep(0.35)  # ages the messages: the spool reads the wall clock, none to inject
    spool._last_age_check = 0.0  # the next check is due
    spool.maintain()
    assert writes == [True] and spool.stats().drops["age"].messages == 3
    spool.close()


async def test_backlog_count_follows_drops(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path / "s.db", SpoolLimits(max_bytes=500, max_age_s=3600.0))
    spool.put_many([msg(n, size=97) for n in range(4)])  # 400 bytes
    spool.mark_backlog()
    spool.put_many([msg(n, size=97) for n in range(4, 7)])  # drops 0..1
    assert spool.stats().backlog == 2
    assert [m.seq for m in iter(spool.take_backlog, None)] == [2, 3]
    spool.close()


def test_a_second_spool_on_the_same_file_is_refused(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path / "s.db", BIG)
    with pytest.raises(SpoolLocked, match=f"pid {os.getpid()}"):
        DiskSpool(tmp_path / "s.db", BIG)
    spool.close()
    DiskSpool(tmp_path / "s.db", BIG).close()  # released on close


_WRITER = """
import sys
from pathlib import Path
from gateway.northbound.message import OutboundMessage
from gateway.northbound.spool import DiskSpool, SpoolLimits

spool = DiskSpool(Path(sys.argv[1]), SpoolLimits(1 << 30, 3600.0))
# carry on from the last run's seq: a run that got far ahead of the test's reader before
# its SIGKILL leaves more backlog than this run drains, and the file must stay in order
(top,) = spool._db.execute("SELECT MAX(seq) FROM message").fetchone()
seq = 0 if top is None else top + 1
while True:
    # every other payload is larger than INLINE_MAX: in a segment file, not in its row
    batch = [OutboundMessage("t", b"x" * (1500 + 3000 * (i % 2)), "data", samples=1, seq=seq + i)
             for i in range(20)]
    spool.put_many(batch)
    seq += 20
    for _ in range(15):  # acknowledge part of it: deletions are committed with the next put
        m = spool.take()
        spool.ack(m.id)
    print(seq, flush=True)
"""


def test_spool_survives_sigkill_in_the_middle_of_writes(tmp_path: Path) -> None:
    """Kill a writer mid-loop, repeatedly; the file opens clean and holds every unacked message."""
    path = tmp_path / "s.db"
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path)],
            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
        )  # fmt: skip
        assert proc.stdout is not None
        committed = 0
        while committed < 600:
            line = proc.stdout.readline()
            assert line, f"the writer ended after {committed} messages"
            committed = int(line)
        time.sleep(0.05)  # not a wait for a result: the kill lands somewhere mid-write
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            seqs = [r[0] for r in db.execute("SELECT seq FROM message ORDER BY id")]
        # every committed, never-taken message is there, in order, without holes
        assert seqs == sorted(seqs) and seqs == list(range(seqs[0], seqs[-1] + 1))
        assert seqs[-1] + 1 >= committed
    spool = DiskSpool(path, BIG)  # and a gateway can carry on with it
    spool.put(OutboundMessage("t", b"after", "data", seq=-1))
    assert spool.stats().queued == len(seqs) + 1
    taken = list(iter(spool.take, None))  # payloads read back whole (lengths and CRCs)
    assert [m.seq for m in taken] == [*seqs, -1]
    assert [len(m.payload) for m in taken[:2]] == [1500 + 3000 * (s % 2) for s in seqs[:2]]
    spool.close()


def test_counters_table_is_plain_sqlite(tmp_path: Path) -> None:
    """Engineers can read the spool with the sqlite3 shell; counters are rows."""
    spool = DiskSpool(tmp_path / "s.db", SpoolLimits(max_bytes=100, max_age_s=3600.0))
    spool.put_many([msg(n, size=60) for n in range(3)])
    spool.close()
    with sqlite3.connect(tmp_path / "s.db") as db:
        counters = dict(db.execute("SELECT name, value FROM counter"))
    assert json.loads(json.dumps(counters))["dropped_full_messages"] == 2


def test_a_full_disk_drops_and_counts_the_new_messages_and_never_raises(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path / "s.db", BIG)
    spool.put_many([msg(n, size=100) for n in range(3)])
    first = spool.take()
    assert first is not None
    spool.ack(first.id)
    (pages,) = spool._db.execute("PRAGMA page_count").fetchone()
    spool._db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full now
    # inline payloads (below INLINE_MAX) need new SQLite pages
    spool.put_many([msg(n, samples=4, size=2_000) for n in (3, 4, 5) for _ in range(4)])
    stats = spool.stats()
    assert (stats.drops["error"].messages, stats.drops["error"].samples) == (12, 48)
    assert spool.write_errors == 1 and (stats.queued, stats.inflight) == (2, 0)
    spool._db.execute("PRAGMA max_page_count = 1073741823")  # space again
    spool.put(msg(6))
    assert drain(spool) == [1, 2, 6]
    spool.maintain()
    assert spool.stats().messages == 0
    spool.close()


def test_a_full_disk_for_payload_segments_drops_and_counts_and_recovers(tmp_path: Path) -> None:
    """Large payloads go to segment files; a write there that fails (the kernel's file size
    limit stands in for a full disk) loses only that put, counted, and commits no row."""
    spool = DiskSpool(tmp_path / "s.db", BIG)
    spool.put_many([msg(n, size=5_000) for n in range(3)])
    [segment] = (tmp_path / "s.db.payloads").glob("*.seg")
    assert segment.stat().st_size == 3 * (5_000 + FRAMING)
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (16_500, old_limit[1]))
    try:
        spool.put_many([msg(n, samples=4, size=5_000) for n in range(3, 6)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    stats = spool.stats()
    assert (stats.drops["error"].messages, stats.drops["error"].samples) == (3, 12)
    assert spool.write_errors == 1 and stats.queued == 3
    spool.put(msg(6, size=5_000))
    assert drain(spool) == [0, 1, 2, 6]
    spool.close()
    reopened = DiskSpool(tmp_path / "s.db", BIG)
    assert reopened.stats().queued == 0
    reopened.close()


def test_an_unreadable_spool_file_is_moved_aside_and_a_new_one_started(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not a database, a disk fault wrote it" * 100)
    spool = DiskSpool(path, BIG)
    spool.put(msg(1))
    assert drain(spool) == [1]
    spool.close()
    [aside] = tmp_path.glob("s.db.corrupt-*")
    assert aside.read_bytes().startswith(b"this is not a database")


async def test_async_puts_commit_off_the_loop_and_keep_the_order(tmp_path: Path) -> None:
    """put_many_async commits in a worker thread: nothing is taken before its commit, a sync
    put meanwhile lands after it, and acknowledgements are deleted in the same transaction."""
    spool = DiskSpool(tmp_path / "s.db", BIG)
    spool.put_many([msg(0), msg(1)])
    first = spool.take()
    assert first is not None and first.seq == 0
    spool.ack(first.id)
    pending = asyncio.ensure_future(spool.put_many_async([msg(2), msg(3)]))
    await asyncio.sleep(0)  # one loop turn, no wait: the put holds the lock, its thread writes
    spool.put_many([msg(4)])  # waits for it: ids and order are kept
    await pending
    assert drain(spool) == [1, 2, 3, 4]
    spool.maintain()
    spool.close()
    with sqlite3.connect(tmp_path / "s.db") as db:
        assert db.execute("SELECT COUNT(*) FROM message").fetchone() == (0,)


async def test_an_async_put_past_the_byte_limit_is_never_seen_over_it(tmp_path: Path) -> None:
    """The byte limit holds as soon as an async put is settled, not only at the next
    maintain(): /metrics settles first and showed 4179 bytes in a 4096-byte spool."""
    spool = DiskSpool(tmp_path / "s.db", SpoolLimits(max_bytes=500, max_age_s=3600.0))
    for n in range(0, 12, 3):
        await spool.put_many_async([msg(k, size=90) for k in range(n, n + 3)])
        stats = spool.stats()
        assert stats.bytes <= 500
    assert stats.drops["full"].messages > 0 and drain(spool)[-1] == 11
    spool.close()


def test_live_messages_beyond_the_cache_are_read_back_in_order(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path / "s.db", BIG)
    spool.LIVE_CACHE_BYTES = 250  # type: ignore[misc]  # about two messages of 100 bytes
    spool.put_many([msg(n, size=100) for n in range(5)])  # does not fit: read from disk
    assert drain(spool) == [0, 1, 2, 3, 4]
    spool.put_many([msg(n, size=100) for n in range(5, 7)])  # empty again: cached
    assert spool._live_cache_complete and len(spool._live_cache) == 2
    assert drain(spool) == [5, 6]
    spool.close()


def test_backlog_read_ahead_skips_released_and_dropped_rows(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path / "s.db", SpoolLimits(max_bytes=750, max_age_s=3600.0))
    spool.BACKLOG_READ_AHEAD = 3  # type: ignore[misc]
    spool.put_many([msg(n, size=90) for n in range(8)])
    spool.mark_backlog()
    taken = [spool.take_backlog() for _ in range(2)]
    assert [m.seq for m in taken if m is not None] == [0, 1]
    spool.release([taken[1].id])  # type: ignore[union-attr]  # its connection dropped
    # 93 bytes each: 10 are over 750, the two oldest waiting (1 again, and 2) are dropped
    spool.put_many([msg(n, size=90) for n in range(8, 10)])
    assert [m.seq for m in iter(spool.take_backlog, None)] == [3, 4, 5, 6, 7]
    spool.close()


def test_a_live_message_dropped_by_the_limit_in_its_own_put_is_not_handed_out(
    tmp_path: Path,
) -> None:
    spool = DiskSpool(tmp_path / "s.db", SpoolLimits(max_bytes=100, max_age_s=3600.0))
    spool.put(msg(0, size=500))  # alone over the limit: dropped in the transaction of its put
    assert spool.stats().drops["full"].messages == 1
    assert spool.take() is None
    assert (spool.stats().queued, spool.stats().inflight) == (0, 0)
    spool.close()


def big(n: int, samples: int = 10) -> OutboundMessage:
    """A message whose payload goes to a segment file (larger than INLINE_MAX)."""
    return msg(n, samples=samples, size=DiskSpool.INLINE_MAX + 100)


def test_large_payloads_live_in_segment_files_that_are_recycled(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path / "s.db", BIG)
    spool._payloads.segment_bytes = 3 * (DiskSpool.INLINE_MAX + 100 + FRAMING)  # three each
    folder = tmp_path / "s.db.payloads"
    for start in range(0, 12, 3):
        spool.put_many([big(n) for n in range(start, start + 3)])
    assert len(list(folder.glob("0*.seg"))) == 4
    with sqlite3.connect(tmp_path / "s.db") as db:  # the rows hold no payload bytes
        assert db.execute("SELECT MAX(LENGTH(payload)) FROM message").fetchone() == (0,)
    assert drain(spool) == list(range(12))
    spool.maintain()  # puts since the last call: their next one commits the acks, or
    spool.maintain()  # this one (no put since): the three full segments are freed
    names = sorted(p.name for p in folder.iterdir())
    assert len([n for n in names if n.startswith("spare-")]) == spool._payloads.SPARES
    assert len([n for n in names if n.endswith(".seg") and n[0].isdigit()]) == 1  # current
    for start in (12, 15):  # the next two segments reuse the spare files
        spool.put_many([big(n) for n in range(start, start + 3)])
    assert not [p for p in folder.iterdir() if p.name.startswith("spare-")]
    assert drain(spool) == list(range(12, 18))
    spool.close()


def test_a_damaged_payload_is_dropped_counted_and_the_rest_delivered(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path / "s.db", BIG)
    spool.put_many([big(n, samples=7) for n in range(3)])
    spool.close()
    [segment] = (tmp_path / "s.db.payloads").glob("0*.seg")
    data = bytearray(segment.read_bytes())
    second = DiskSpool.INLINE_MAX + 100 + FRAMING  # where the second payload's frame starts
    data[second : second + 200] = bytes(200)  # a block that never reached the disk
    segment.write_bytes(bytes(data))
    spool = DiskSpool(tmp_path / "s.db", BIG)
    spool.mark_backlog()
    assert [m.seq for m in iter(spool.take_backlog, None)] == [0, 2]
    stats = spool.stats()
    assert (stats.drops["error"].messages, stats.drops["error"].samples) == (1, 7)
    assert stats.backlog == 0 and stats.queued == 0 and stats.inflight == 2
    spool.close()


def test_a_missing_segment_file_loses_only_its_messages(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path / "s.db", BIG)
    spool.put_many([msg(0), big(1), msg(2)])
    spool.close()
    for segment in (tmp_path / "s.db.payloads").glob("0*.seg"):
        segment.unlink()
    spool = DiskSpool(tmp_path / "s.db", BIG)
    assert drain(spool) == [0, 2]
    assert spool.stats().drops["error"].messages == 1
    spool.maintain()
    assert spool.stats().messages == 0
    spool.close()


def test_a_version_1_spool_is_upgraded_and_its_inline_payloads_delivered(tmp_path: Path) -> None:
    """A spool written before payload segments existed: rows with the payload inline."""
    path = tmp_path / "s.db"
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE message (id INTEGER PRIMARY KEY AUTOINCREMENT, put_ns INTEGER NOT NULL,
                topic TEXT NOT NULL, payload BLOB NOT NULL, kind TEXT NOT NULL,
                qos INTEGER NOT NULL, retain INTEGER NOT NULL, samples INTEGER NOT NULL,
                oldest_ns INTEGER NOT NULL, seq INTEGER, size INTEGER NOT NULL);
            CREATE TABLE counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
            PRAGMA user_version = 1;
        """)
        db.executemany(
            "INSERT INTO message (put_ns, topic, payload, kind, qos, retain, samples, oldest_ns,"
            " seq, size) VALUES (?, 't', ?, 'data', 1, 0, 1, 0, ?, ?)",
            [(time.time_ns(), b"old" * 3000, n, 9001) for n in range(2)],
        )
    spool = DiskSpool(path, BIG)
    spool.put(big(2))
    taken = list(iter(spool.take, None))
    assert [m.seq for m in taken] == [0, 1, 2] and taken[0].payload == b"old" * 3000
    spool.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (2,)
