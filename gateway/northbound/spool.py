"""The disk spool: store-and-forward of outbound messages in SQLite.

Every message is committed to the spool before the publisher can take it and
is deleted only after the broker's acknowledgement, so a broker outage, a
network cut, SIGKILL or a power cut loses nothing that was handed to the spool.

Layout
    SQLite holds one row per message: topic, kind, seq, sizes, and either the
    payload itself (up to :attr:`DiskSpool.INLINE_MAX` bytes) or where it lies in a
    payload segment file, ``<spool>.payloads/<n>.seg``, framed by its id. Data
    messages of hundreds of samples (10-100 kB) go to segments: SQLite would write
    each of their bytes three times (WAL page images, checkpoint), and costs several
    times the CPU of one sequential file write (see payload_log.py for the write
    order that keeps this crash safe). A file of schema version 1 (payloads always
    inline) is upgraded in place; its rows stay readable.

Durability
    WAL journal with ``synchronous=FULL``: a commit returns only after the WAL
    is fsynced, so a message put in the spool survives a power cut. ``NORMAL``
    would skip that fsync and a power cut could roll back the last commits,
    i.e. lose data that nobody else holds; that is the one loss this module
    exists to prevent, and the cost of FULL is one fsync per publish interval
    (puts are batched into one transaction per flush, see ``bench/spool.py``).
    Acknowledgements are batched too: deletions are committed with the next
    put or by :meth:`DiskSpool.maintain` (every publish interval). A crash can
    therefore re-send messages acknowledged in the last interval besides those
    in flight: duplicates, never a loss. SQLite's WAL recovery makes a torn
    write at SIGKILL or power loss invisible (the partial transaction is
    discarded on the next open).

Limits
    ``max_bytes`` (payload and topic bytes, not the file size: SQLite pages and
    the WAL add a few percent and the file keeps its high-water size, reusing
    free pages) and ``max_age`` (seconds since the message was put, by the wall
    clock). Past either, the oldest waiting messages are dropped; messages in
    flight are never dropped. Drops are counted by reason (``full``, ``age``,
    ``purged``) in the spool file itself, in the same transaction as the
    deletion, so the counts survive restarts and go out in every birth.

Locking
    A running spool holds an exclusive ``flock`` on ``<path>.lock`` for its
    lifetime; the kernel releases it when the process dies, even by SIGKILL.
    A second gateway on the same spool fails to start and ``spool purge``
    refuses to run while a gateway holds it. Readers (``spool stats|peek``)
    need no lock: WAL lets them read while the gateway writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from gateway.errors import PayloadError, SpoolLocked
from gateway.northbound.message import OutboundMessage
from gateway.northbound.outbox import DROP_REASONS, DropCount, Outbox, OutboxStats
from gateway.northbound.payload_log import PayloadLog, payload_dir
from gateway.repeated_log import RepeatedLog

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
#: the WAL size that triggers a checkpoint (SQLite's default: 1,000 pages of 4 KiB)
WAL_CHECKPOINT_BYTES = 4 * 2**20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    put_ns INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    kind TEXT NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    oldest_ns INTEGER NOT NULL,
    seq INTEGER,
    size INTEGER NOT NULL,
    seg INTEGER,
    off INTEGER,
    len INTEGER
);
CREATE TABLE IF NOT EXISTS counter (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

#: columns added by schema version 2 (payloads in segment files, see payload_log.py)
_V2_COLUMNS = ("seg INTEGER", "off INTEGER", "len INTEGER")
_COLUMNS = "id, topic, payload, kind, qos, retain, samples, oldest_ns, seq, seg, off, len"
_INSERT = (
    "INSERT INTO message (id, put_ns, topic, payload, kind, qos, retain, samples, oldest_ns,"
    " seq, size, seg, off, len) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# positions in an insert row
_SAMPLES, _SIZE, _SEG = 7, 10, 11
_ROW_VALUES = "(" + ", ".join("?" * 14) + ")"
#: rows per INSERT statement (14 parameters each, SQLite allows 32,766)
_ROWS_PER_INSERT = 1000


def insert_rows(db: sqlite3.Connection, rows: list[list[Any]]) -> None:
    """Insert rows with one statement per :data:`_ROWS_PER_INSERT`.

    Not ``executemany``: that steps once per row, and the sqlite3 module releases and
    re-takes the GIL around every step. In the worker thread, with the event loop busy,
    each re-take can wait for the interpreter's switch interval (5 ms): 600 rows took
    over a second instead of 2 ms.
    """
    head = _INSERT.split(" VALUES ")[0]
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        chunk = rows[start : start + _ROWS_PER_INSERT]
        db.execute(f"{head} VALUES {', '.join([_ROW_VALUES] * len(chunk))}",
                   [value for row in chunk for value in row])  # fmt: skip


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def acquire_lock(path: Path) -> IO[str]:
    """Take the spool's exclusive lock (non-blocking); keep the returned file open to hold it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(lock_path(path), "a+", encoding="utf-8")  # noqa: SIM115 - held for the lifetime
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise SpoolLocked(f"spool {path} is in use by {holder}") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}\n")
    fh.flush()
    return fh


def connect(path: Path, check_same_thread: bool = True) -> sqlite3.Connection:
    """Open (or create) a spool database with the durability settings of this module."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=check_same_thread)
    db.execute("PRAGMA busy_timeout = 5000")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    (page_size,) = db.execute("PRAGMA page_size").fetchone()
    db.execute(f"PRAGMA wal_autocheckpoint = {max(1, WAL_CHECKPOINT_BYTES // page_size)}")
    db.execute("PRAGMA journal_size_limit = 16777216")  # truncate the WAL to 16 MiB after use
    db.executescript(_SCHEMA)
    have = {row[1] for row in db.execute("PRAGMA table_info(message)")}
    for column in _V2_COLUMNS:  # a version 1 file: its rows keep their payloads inline
        if column.split()[0] not in have:
            db.execute(f"ALTER TABLE message ADD COLUMN {column}")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return db


def read_drops(db: sqlite3.Connection) -> dict[str, DropCount]:
    counters = dict(db.execute("SELECT name, value FROM counter").fetchall())
    return {
        reason: DropCount(
            counters.get(f"dropped_{reason}_messages", 0),
            counters.get(f"dropped_{reason}_samples", 0),
        )
        for reason in DROP_REASONS
    }


def add_drops(db: sqlite3.Connection, reason: str, messages: int, samples: int) -> None:
    """Add to the persistent drop counters (inside the caller's transaction)."""
    db.executemany(
        "INSERT INTO counter(name, value) VALUES (?, ?) "
        "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
        [(f"dropped_{reason}_messages", messages), (f"dropped_{reason}_samples", samples)],
    )


@dataclass(slots=True)
class _Batch:
    """The rows of one put, and the payloads among them that go to a segment file."""

    rows: list[list[Any]]
    #: indices of the rows whose payloads go to ``seg`` (in order, contiguous from ``offset``)
    external: list[int]
    payloads: list[bytes]
    seg: int = 0
    offset: int = 0

    def samples(self) -> int:
        return sum(r[_SAMPLES] for r in self.rows)

    def size(self) -> int:
        return sum(r[_SIZE] for r in self.rows)


@dataclass(slots=True)
class _PendingWrite:
    """A transaction of :meth:`DiskSpool.put_many_async` running in a worker thread."""

    messages: list[OutboundMessage]
    batch: _Batch
    acked: list[int]
    #: set by the worker: committed, and the (count, bytes, segments) its deletions freed
    ok: bool = False
    freed: tuple[int, int, list[int]] = (0, 0, [])
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class SpoolLimits:
    max_bytes: int
    max_age_s: float


class DiskSpool(Outbox):
    """An :class:`Outbox` in a SQLite file; see the module docstring for guarantees.

    Used from the event loop; only the transaction of :meth:`put_many_async` runs in a
    worker thread, and every other use of the database waits for it. Live messages put by
    this process are also kept in memory (up to :attr:`LIVE_CACHE_BYTES`) so that the
    sender does not read them back; backlog is read ahead in chunks. On open,
    everything in the file, including what was in flight when the last process died,
    is waiting again as backlog, in its original order.
    """

    #: at most this often (seconds) the age limit is applied by :meth:`maintain`
    AGE_CHECK_INTERVAL = 1.0

    # set by _open
    _db: sqlite3.Connection
    _count: int
    _bytes: int
    #: payload bytes of live messages also kept in memory after their commit, so the
    #: sender takes them without reading them back (see :meth:`take_live`)
    LIVE_CACHE_BYTES = 32 * 2**20
    #: backlog messages read from disk per query during a replay
    BACKLOG_READ_AHEAD = 64
    #: payloads larger than this go to segment files (payload_log.py), smaller ones are
    #: stored in their SQLite row (within one 4 KiB page)
    INLINE_MAX = 2048
    #: a segment file is filled up to this size (and at most a quarter of ``max_bytes``)
    SEGMENT_BYTES = 64 * 2**20

    def __init__(self, path: Path, limits: SpoolLimits) -> None:
        self.path = path
        self.limits = limits
        self._lock = acquire_lock(path)
        try:
            try:
                top = self._open()
            except sqlite3.OperationalError:
                raise  # locked, permissions, I/O: not the file's fault
            except sqlite3.DatabaseError as exc:
                top = self._open(quarantine=exc)
        except BaseException:
            self._lock.close()
            raise
        segment_bytes = max(2**20, min(self.SEGMENT_BYTES, limits.max_bytes // 4))
        self._payloads = PayloadLog(payload_dir(path), segment_bytes, self._segment_rows())
        #: segments of rows deleted by the running transaction (applied after its commit)
        self._freed_segs: list[int] = []
        self._next_id = int(top) + 1
        self._mark = int(top)  # everything already on disk is backlog
        self._backlog_cursor = 0  # last id handed out from the backlog
        self._live_cursor = self._mark  # last id handed out from the live stream
        self._backlog_waiting = self._count
        # backlog rows read ahead (in id order, after _backlog_cursor): one query per
        # BACKLOG_READ_AHEAD messages instead of two per message during a replay
        self._backlog_ahead: deque[OutboundMessage] = deque()
        # ... through a connection of its own: WAL lets it read the last commit while a
        # put_many_async transaction runs, so a replay does not wait for live data's fsync
        self._reader: sqlite3.Connection | None = None
        self._inflight: dict[int, int] = {}  # id -> samples
        # Live messages put by this process, committed, not yet handed out, in id order.
        # While ``_live_cache_complete`` it holds every such message, and take_live needs
        # no query; a put that does not fit clears the flag until the live stream is empty.
        self._live_cache: OrderedDict[int, OutboundMessage] = OrderedDict()
        self._live_cache_bytes = 0
        self._live_cache_complete = True
        # put_many_async commits in a worker thread while the event loop keeps sending what
        # is committed; the lock serialises the connection, _settle applies the result
        self._db_lock = threading.Lock()
        self._write_pending: _PendingWrite | None = None
        self._wrote_since_maintain = False
        self._acked: list[int] = []  # acknowledged, deletion not yet committed
        self._drops = read_drops(self._db)
        self._pending = asyncio.Event()
        #: transactions that failed (disk full, I/O error); see the log
        self.write_errors = 0
        # a full disk fails every flush: the log gets the first failure and a summary a
        # minute (gateway/repeated_log.py), not a line per flush
        self._write_failures = RepeatedLog(log, f"spool {path}: write failed")
        self._drop_log = RepeatedLog(log, f"spool {path}: dropped the oldest messages",
                                     logging.WARNING)  # fmt: skip
        self._unreadable_log = RepeatedLog(log, f"spool {path}: unreadable message dropped")
        self._last_age_check = 0.0
        if self._count:
            self._pending.set()
            log.info(
                "spool %s: %d messages (%d bytes) from before the restart will be replayed",
                path, self._count, self._bytes,
            )

    def _open(self, quarantine: Exception | None = None) -> int:
        """Connect and load the counts; returns the highest message id ever used.

        A file that is not a valid database (a disk fault: WAL and FULL never
        leave one) is renamed ``<path>.corrupt-<time>`` for an engineer to look
        at, and the gateway starts with a new, empty spool rather than not at all.
        """
        if quarantine is not None:
            with contextlib.suppress(Exception):
                self._db.close()
            stamp = time.strftime("%Y%m%dT%H%M%S")
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
            log.error("spool %s is unreadable (%s); moved to %s, starting an empty spool",
                      self.path, quarantine, aside)  # fmt: skip
            for suffix in ("", "-wal", "-shm", ".payloads"):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
        self._db = connect(self.path, check_same_thread=False)  # see put_many_async
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM message")
        self._count, self._bytes = row.fetchone()
        top = self._db.execute(
            "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'message'), 0),"
            " COALESCE((SELECT MAX(id) FROM message), 0))"
        ).fetchone()[0]
        return int(top)

    def _segment_rows(self) -> dict[int, int]:
        """Rows per payload segment, from the index."""
        rows = self._db.execute(
            "SELECT seg, COUNT(*) FROM message WHERE seg IS NOT NULL GROUP BY seg"
        ).fetchall()
        return {int(seg): int(n) for seg, n in rows}

    # --- writing ------------------------------------------------------------------------
    def put(self, message: OutboundMessage) -> None:
        self.put_many([message])

    def _rows(self, messages: list[OutboundMessage]) -> _Batch:
        """Assign ids and place large payloads in a segment; the rows to insert."""
        now = time.time_ns()
        batch = _Batch([], [], [])
        sizes = []
        for i, m in enumerate(messages):
            m.id = self._next_id
            self._next_id += 1
            external = len(m.payload) > self.INLINE_MAX
            batch.rows.append([m.id, now, m.topic, b"" if external else m.payload, m.kind, m.qos,
                               int(m.retain), m.samples, m.oldest_ns, m.seq, m.size,
                               None, None, None])  # fmt: skip
            if external:
                batch.external.append(i)
                batch.payloads.append(m.payload)
                sizes.append(len(m.payload))
        if sizes:
            batch.seg, offsets = self._payloads.place(sizes)
            batch.offset = offsets[0]
            for i, off, size in zip(batch.external, offsets, sizes, strict=True):
                batch.rows[i][_SEG:] = (batch.seg, off, size)
        return batch

    def _store_payloads(self, batch: _Batch) -> None:
        """Write the batch's segment payloads and make them durable, before its rows are
        committed (so a committed row always points to durable bytes)."""
        if batch.payloads:
            ids = [batch.rows[i][0] for i in batch.external]
            self._payloads.write(batch.seg, batch.offset, ids, batch.payloads)

    def _committed(self, batch: _Batch) -> None:
        self._payloads.committed(batch.seg for _ in batch.external)

    def put_many(self, messages: Iterable[OutboundMessage]) -> None:
        self._settle()
        messages = list(messages)
        batch = self._rows(messages)
        if not batch.rows:
            return
        with self._db_lock:
            # cached before the transaction: a message its byte limit drops leaves the cache
            # with it, and a failed transaction invalidates the cache (_reload)
            self._cache_live(messages)
            ok = self._write(batch, check_age=False)
        self._stored(batch, ok)

    def _stored(self, batch: _Batch, ok: bool) -> None:
        self._wrote_since_maintain = True
        if not ok:
            # disk full or I/O error: these messages exist nowhere else; count and go on
            lost = self._drops["error"]
            lost.messages += len(batch.rows)
            lost.samples += batch.samples()
            return
        self._pending.set()

    async def put_many_async(self, messages: Iterable[OutboundMessage]) -> None:
        """:meth:`put_many` with the transaction (and its fsync) in a worker thread.

        The event loop keeps publishing what was committed before; these messages can
        be taken only once their commit returned. The transaction also deletes what was
        acknowledged so far; the byte limit is applied as it is settled, the age limit
        by :meth:`maintain`. Anything else that needs the database first waits for this
        transaction (:meth:`_settle`), so messages are handed out in id order whatever
        the caller does meanwhile.
        """
        self._settle()
        messages = list(messages)
        batch = self._rows(messages)
        if not batch.rows:
            return
        pending = _PendingWrite(messages, batch, list(self._acked))
        self._db_lock.acquire()  # free: _settle waited for any earlier transaction
        self._write_pending = pending
        try:
            await asyncio.to_thread(self._insert_and_unlock, pending)
        finally:
            self._settle()

    def _insert_and_unlock(self, pending: _PendingWrite) -> None:
        """Worker thread, holding the lock taken by :meth:`put_many_async`."""
        try:
            self._store_payloads(pending.batch)
            with self._transaction():
                insert_rows(self._db, pending.batch.rows)
                pending.freed = self._delete_rows(pending.acked)
            pending.ok = True
        except BaseException as exc:  # reported on the event loop by _settle
            pending.error = exc
        finally:
            self._db_lock.release()

    def _settle(self) -> None:
        """Wait for a transaction of :meth:`put_many_async` and apply its outcome."""
        pending = self._write_pending
        if pending is None:
            return
        with self._db_lock:
            self._write_pending = None
            if pending.ok:
                self._write_succeeded()
                self._count += len(pending.batch.rows) - pending.freed[0]
                self._bytes += pending.batch.size() - pending.freed[1]
                del self._acked[: len(pending.acked)]  # acks only ever append
                self._committed(pending.batch)
                self._payloads.deleted(pending.freed[2])
                self._cache_live(pending.messages)
                if self._bytes > self.limits.max_bytes:
                    # applied before anyone sees the new total (stats settle first); the
                    # next maintain() would do it a moment later, with the limit passed
                    self._write(None, check_age=False)
            else:
                self._write_failed(pending.error, "messages not stored")
                self._reload()
        self._stored(pending.batch, pending.ok)
        if pending.error is not None and not isinstance(pending.error, sqlite3.Error | OSError):
            raise pending.error

    def _cache_live(self, messages: list[OutboundMessage]) -> None:
        if not self._live_cache_complete:
            return
        for m in messages:
            if m.id in self._live_cache or m.id <= self._live_cursor:
                continue  # already dropped or handed out (cannot happen; be safe)
            if self._live_cache_bytes + m.size > self.LIVE_CACHE_BYTES:
                self._clear_live_cache(complete=False)  # read back from disk from here on
                return
            self._live_cache[m.id] = m
            self._live_cache_bytes += m.size

    def _clear_live_cache(self, complete: bool) -> None:
        self._live_cache.clear()
        self._live_cache_bytes = 0
        self._live_cache_complete = complete

    def _write(self, batch: _Batch | None, check_age: bool) -> bool:
        """One transaction: insert the batch's rows (its payloads written first), delete
        what was acknowledged, apply the limits.

        On a database or file error everything is rolled back, the in-memory state is
        reloaded from the file and False is returned (the error is logged).
        """
        acked = self._acked
        self._freed_segs = []
        try:
            if batch is not None:
                self._store_payloads(batch)
            with self._transaction():
                if batch is not None:
                    insert_rows(self._db, batch.rows)
                    self._count += len(batch.rows)
                    self._bytes += batch.size()
                self._delete(acked)
                self._enforce_bytes()
                if check_age:
                    self._enforce_age()
        except (sqlite3.Error, OSError) as exc:
            self._write_failed(exc, "messages not stored" if batch else "will retry")
            self._reload()
            return False
        self._write_succeeded()
        self._acked = self._acked[len(acked) :]  # acks cannot arrive during the transaction
        if batch is not None:
            self._committed(batch)
        self._payloads.deleted(self._freed_segs)
        return True

    def _write_failed(self, exc: BaseException | None, consequence: str) -> None:
        self.write_errors += 1
        self._write_failures.failure(f"{exc}; {consequence}", key=str(exc))

    def _write_succeeded(self) -> None:
        self._write_failures.recovery(f"spool {self.path}: writes succeed again")

    def _reload(self) -> None:
        """Counts from the file after a rolled-back transaction."""
        with contextlib.suppress(sqlite3.Error):
            self._count, self._bytes = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM message"
            ).fetchone()
            errors = self._drops["error"]
            self._drops = read_drops(self._db)
            self._drops["error"] = errors
            (in_range,) = self._db.execute(
                "SELECT COUNT(*) FROM message WHERE id > ? AND id <= ?",
                (self._backlog_cursor, self._mark),
            ).fetchone()
            handed = sum(
                1 for i in (*self._inflight, *self._acked) if self._backlog_cursor < i <= self._mark
            )
            self._backlog_waiting = in_range - handed
            self._backlog_ahead.clear()
            self._payloads.reset(self._segment_rows())
        # the rolled-back transaction may have uncached messages it dropped, or not stored
        # cached ones: read the live stream back from disk until it is empty
        self._clear_live_cache(complete=False)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _delete(self, ids: list[int]) -> None:
        count, size, segs = self._delete_rows(ids)
        self._count -= count
        self._bytes -= size
        self._freed_segs += segs

    def _delete_rows(self, ids: list[int]) -> tuple[int, int, list[int]]:
        """Delete these rows (inside the caller's transaction); their count, bytes and the
        segments their payloads were in."""
        count = size = 0
        segs: list[int] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            where = f"WHERE id IN ({','.join('?' * len(chunk))})"
            # aggregated in one row: a step per returned row would re-take the GIL each time
            n, freed, seg_list = self._db.execute(
                f"SELECT COUNT(*), COALESCE(SUM(size), 0), group_concat(seg) FROM message {where}",
                chunk,
            ).fetchone()
            self._db.execute(f"DELETE FROM message {where}", chunk)
            count += n
            size += freed
            if seg_list:
                segs += [int(seg) for seg in seg_list.split(",")]
        return count, size, segs

    def _drop_oldest(self, reason: str, enough: Callable[[int, int], bool]) -> None:
        """Drop waiting messages, oldest first, until ``enough(put_ns, freed_bytes)``."""
        dropped: list[tuple[int, int, int]] = []  # id, samples, size
        freed = 0
        after = 0
        done = False
        while not done:
            rows = self._db.execute(
                "SELECT id, put_ns, size, samples FROM message WHERE id > ? ORDER BY id LIMIT 256",
                (after,),
            ).fetchall()
            if not rows:
                break
            for msg_id, put_ns, size, samples in rows:
                after = msg_id
                if msg_id in self._inflight or msg_id in self._acked:
                    continue  # handed to the broker: never dropped
                if enough(put_ns, freed):
                    done = True
                    break
                dropped.append((msg_id, samples, size))
                freed += size
        if not dropped:
            return
        ids = [d[0] for d in dropped]
        for msg_id in ids:
            cached = self._live_cache.pop(msg_id, None)
            if cached is not None:
                self._live_cache_bytes -= cached.size
        self._freed_segs += self._delete_rows(ids)[2]
        samples = sum(d[1] for d in dropped)
        add_drops(self._db, reason, len(dropped), samples)
        count = self._drops[reason]
        count.messages += len(dropped)
        count.samples += samples
        self._count -= len(dropped)
        self._bytes -= freed
        # a waiting row at or below the mark is a backlog row; the cursors need no change
        self._backlog_waiting -= sum(1 for msg_id in ids if msg_id <= self._mark)
        self._backlog_ahead.clear()  # it may hold dropped rows; read again
        self._drop_log.failure(
            f"{reason} limit: {len(dropped)} messages ({samples} samples)", key=reason
        )

    def _enforce_bytes(self) -> None:
        excess = self._bytes - self.limits.max_bytes
        if excess > 0:
            self._drop_oldest("full", lambda put_ns, freed: freed >= excess)

    def _age_cutoff_ns(self) -> int:
        return time.time_ns() - int(self.limits.max_age_s * 1e9)

    def _oldest_put_ns(self) -> int:
        """When the oldest row (the lowest id) was put; a read, no transaction."""
        row = self._db.execute("SELECT put_ns FROM message ORDER BY id LIMIT 1").fetchone()
        return time.time_ns() if row is None else int(row[0])

    def _enforce_age(self) -> None:
        cutoff = self._age_cutoff_ns()
        self._drop_oldest("age", lambda put_ns, freed: put_ns >= cutoff)

    # --- reading ------------------------------------------------------------------------
    def _row_to_message(self, row: tuple[Any, ...]) -> OutboundMessage | None:
        """The message of an index row; None (dropped and counted) when its payload cannot
        be read back."""
        msg_id, topic, payload, kind, qos, retain, samples, oldest_ns, seq, seg, off, n = row
        if seg is not None:
            try:
                payload = self._payloads.read(seg, off, n, msg_id)
            except PayloadError as exc:
                self._unreadable(msg_id, samples, exc)
                return None
        return OutboundMessage(topic, bytes(payload), kind, qos, bool(retain), samples,
                               oldest_ns, msg_id, seq)  # fmt: skip

    def _unreadable(self, msg_id: int, samples: int, exc: Exception) -> None:
        """A row whose payload is gone or damaged (a disk fault): deleted with the next
        transaction, as if acknowledged, and counted as lost to an error."""
        self._unreadable_log.failure(f"message {msg_id}: {exc}", key=type(exc).__name__)
        self._acked.append(msg_id)
        lost = self._drops["error"]
        lost.messages += 1
        lost.samples += samples
        if msg_id <= self._mark:
            self._backlog_waiting -= 1

    def _next_after(self, cursor: int, upto: int | None) -> OutboundMessage | None:
        """The oldest row after ``cursor`` (and not after ``upto``) that is not handed out."""
        self._settle()
        bound = "" if upto is None else " AND id <= ?"
        args: tuple[int, ...] = (cursor,) if upto is None else (cursor, upto)
        while True:
            limit = len(self._inflight) + len(self._acked) + 1
            ids = self._db.execute(
                f"SELECT id FROM message WHERE id > ?{bound} ORDER BY id LIMIT {limit}", args
            ).fetchall()
            acked = set(self._acked) if self._acked else ()
            unreadable = False
            for (msg_id,) in ids:
                if msg_id not in self._inflight and msg_id not in acked:
                    row = self._db.execute(
                        f"SELECT {_COLUMNS} FROM message WHERE id = ?", (msg_id,)
                    ).fetchone()
                    message = self._row_to_message(row)
                    if message is not None:
                        return message
                    unreadable = True  # now in _acked: look again past it
            if not unreadable:
                return None

    def _hand_out(self, message: OutboundMessage | None) -> OutboundMessage | None:
        if message is not None:
            self._inflight[message.id] = message.samples
        if self.stats_queued() == 0:
            self._pending.clear()
        return message

    def take_backlog(self) -> OutboundMessage | None:
        if self._backlog_waiting <= 0:
            return None
        if not self._backlog_ahead:
            self._read_backlog_ahead()
        if not self._backlog_ahead:
            self._backlog_waiting = 0
            return self._hand_out(None)
        message = self._backlog_ahead.popleft()
        self._backlog_cursor = message.id
        self._backlog_waiting -= 1
        return self._hand_out(message)

    def _read_backlog_ahead(self) -> None:
        """The next backlog rows after the cursor that are not handed out.

        Backlog rows were committed before :meth:`mark_backlog` returned; a row deleted
        by a transaction still running is acknowledged, i.e. in ``_acked``, and skipped.
        """
        if self._reader is None:
            self._reader = sqlite3.connect(self.path, isolation_level=None,
                                           check_same_thread=False)  # fmt: skip
            self._reader.execute("PRAGMA busy_timeout = 5000")
        acked = set(self._acked)
        after = self._backlog_cursor
        while not self._backlog_ahead:
            rows = self._reader.execute(
                f"SELECT {_COLUMNS} FROM message WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
                (after, self._mark, self.BACKLOG_READ_AHEAD),
            ).fetchall()
            if not rows:
                return
            for row in rows:
                if row[0] not in self._inflight and row[0] not in acked:
                    message = self._row_to_message(row)
                    if message is not None:
                        self._backlog_ahead.append(message)
            after = rows[-1][0]

    def take_live(self) -> OutboundMessage | None:
        if self._next_id - 1 <= self._live_cursor:
            if not self._live_cache_complete:
                self._clear_live_cache(complete=True)  # caught up: cache new puts again
            return None
        if self._live_cache_complete:
            if not self._live_cache:
                return None  # every live message is handed out (or was dropped)
            _, cached = self._live_cache.popitem(last=False)
            self._live_cache_bytes -= cached.size
            self._live_cursor = cached.id
            return self._hand_out(cached)
        message = self._next_after(self._live_cursor, None)
        if message is not None:
            self._live_cursor = message.id
        else:
            self._clear_live_cache(complete=True)  # the live stream is empty: cache again
        return self._hand_out(message)

    def release(self, message_ids: Iterable[int]) -> None:
        released = [i for i in message_ids if self._inflight.pop(i, None) is not None]
        if released:
            self._backlog_cursor = 0  # they may lie behind it; handed-out rows are skipped
            self._backlog_ahead.clear()
            self._backlog_waiting += sum(1 for i in released if i <= self._mark)
            self._pending.set()

    def mark_backlog(self) -> int:
        self._settle()  # rows still committing are backlog too, and counted
        self._mark = self._next_id - 1
        self._live_cursor = self._mark
        self._clear_live_cache(complete=True)  # what it held is backlog now, read from disk
        self._backlog_ahead.clear()
        self._backlog_waiting = self.stats_queued()
        return self._backlog_waiting

    # --- acknowledgements and housekeeping ---------------------------------------------------
    def ack(self, message_id: int) -> None:
        if self._inflight.pop(message_id, None) is not None:
            self._acked.append(message_id)

    def maintain(self) -> None:
        """Apply the limits; commit acknowledgements unless a put since the last call did
        (puts delete what was acknowledged in the same transaction)."""
        self._settle()
        now = time.monotonic()
        check_age = now - self._last_age_check >= self.AGE_CHECK_INTERVAL
        if check_age:
            self._last_age_check = now
            # a transaction (and its fsync, on the event loop) only when the oldest row has
            # expired: once a second for nothing stalled polling and publishing whenever
            # the disk was slow to sync
            check_age = self._count > 0 and self._oldest_put_ns() < self._age_cutoff_ns()
        wrote, self._wrote_since_maintain = self._wrote_since_maintain, False
        if (self._acked and not wrote) or check_age or self._bytes > self.limits.max_bytes:
            with self._db_lock:
                self._write(None, check_age)
        self._sum_up_logs()

    def _sum_up_logs(self, force: bool = False) -> None:
        """Summaries of failures counted but not yet logged (see gateway/repeated_log.py)."""
        for repeated in (self._write_failures, self._drop_log, self._unreadable_log):
            repeated.due(force)

    def close(self) -> None:
        """Commit the acknowledgements, checkpoint the WAL, release the lock."""
        try:
            self._settle()
            if self._acked:
                self._write(None, check_age=False)
            self._sum_up_logs(force=True)
            if self._reader is not None:
                self._reader.close()
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            self._payloads.close()
        finally:
            self._lock.close()

    # --- state ----------------------------------------------------------------------------
    def stats_queued(self) -> int:
        return int(self._count) - len(self._inflight) - len(self._acked)

    def stats(self) -> OutboxStats:
        self._settle()
        age = max(0.0, (time.time_ns() - self._oldest_put_ns()) / 1e9)
        drops = {r: DropCount(c.messages, c.samples) for r, c in self._drops.items()}
        return OutboxStats(
            queued=self.stats_queued(),
            inflight=len(self._inflight),
            dropped=sum(c.messages for c in drops.values()),
            dropped_samples=sum(c.samples for c in drops.values()),
            backlog=max(0, self._backlog_waiting),
            bytes=self._bytes,
            oldest_age_s=age,
            drops=drops,
        )

    async def wait_pending(self) -> None:
        await self._pending.wait()


def open_spool(path: Path, limits: SpoolLimits, what: str = "spool") -> DiskSpool:
    """Open a spool for a running gateway; its failures as :class:`OSError` with the reason
    an engineer needs (another gateway holds it, or SQLite cannot open the file)."""
    try:
        return DiskSpool(path, limits)
    except SpoolLocked as exc:
        raise OSError(f"{exc}: is another gateway running with this state?") from None
    except sqlite3.Error as exc:
        raise OSError(f"cannot open the {what} {path}: {exc}") from exc
