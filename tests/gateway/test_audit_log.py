"""The audit log on a real file system: bounded by rotation without losing the newest lines,
torn lines after a kill, two writers (the gateway and the CLI) on one file, a SIGKILL in the
middle of writing, and reading newest first with filters and pages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from gateway.audit import AuditLog, AuditQuery, read_audit
from gateway.audit.log import rotated_paths

REPO = Path(__file__).resolve().parents[2]


def all_entries(path: Path, files: int, **query: object) -> list[dict[str, object]]:
    """Every matching line, newest first, read page by page (pages of 7)."""
    out: list[dict[str, object]] = []
    before = None
    while True:
        page = read_audit(path, AuditQuery(before=before, limit=7, **query), files)  # type: ignore[arg-type]  # test kwargs
        out += page.entries
        if page.cursor is None:
            return out
        before = page.cursor


def test_rotation_bounds_the_files_and_keeps_the_newest_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    audit = AuditLog(path, max_bytes=2000, files=3)
    for i in range(300):
        assert audit.record("write", tag=f"dev.t{i}", value=i) == i + 1
    audit.close()
    files = [p for p in tmp_path.iterdir() if p.name.startswith("audit.log")
             and not p.name.endswith(".lock")]
    assert sorted(p.name for p in files) == ["audit.log", "audit.log.1", "audit.log.2"]
    line = len(json.dumps({"ts": 0, "seq": 300, "event": "write", "tag": "dev.t300",
                           "value": 300}, separators=(",", ":"))) + 20
    assert all(p.stat().st_size < 2000 + line for p in files)
    assert audit.rotations > 2
    entries = all_entries(path, 3)
    seqs = [e["seq"] for e in entries]
    # the newest line is kept and nothing is missing from the newest back to the oldest kept
    assert seqs[0] == 300 and seqs == list(range(300, 300 - len(seqs), -1))
    assert entries[0]["value"] == 299 and len(seqs) > 30


def test_a_torn_last_line_is_ended_and_skipped_and_the_count_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    audit = AuditLog(path)
    audit.record("login", user="ann", outcome="ok")
    audit.record("login", user="bob", outcome="failed")
    audit.close()
    with path.open("ab") as f:  # a kill in the middle of the third line
        f.write(b'{"ts":1,"seq":3,"event":"log')
    again = AuditLog(path)
    assert again.record("logout", user="ann") == 3
    again.close()
    page = read_audit(path, AuditQuery())
    assert [(e["seq"], e["event"]) for e in page.entries] == [
        (3, "logout"), (2, "login"), (1, "login")]
    assert page.damaged == 1


def test_two_writers_share_the_file_the_sequence_and_the_rotation(tmp_path: Path) -> None:
    """The gateway and the CLI (users add) write the same audit log."""
    path = tmp_path / "audit.log"
    gateway, cli = AuditLog(path, max_bytes=1500, files=20), AuditLog(path, max_bytes=1500,
                                                                     files=20)
    written = []
    for i in range(120):
        writer = gateway if i % 3 else cli
        written.append(writer.record("user" if writer is cli else "write", n=i))
    gateway.close()
    cli.close()
    assert written == list(range(1, 121))
    entries = all_entries(path, 20)
    assert [e["n"] for e in reversed(entries)] == list(range(120))
    assert [e["seq"] for e in entries] == list(range(120, 0, -1))


def test_lines_from_before_seq_numbers_page_like_the_others(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_text("".join(json.dumps({"ts": i, "event": "cmd", "id": f"old-{i}"}) + "\n"
                            for i in range(10)))
    audit = AuditLog(path)
    audit.record("cmd", id="new-0")
    audit.close()
    ids = [e["id"] for e in all_entries(path, 5)]
    assert ids == ["new-0", *(f"old-{i}" for i in range(9, -1, -1))]


def test_filters_by_time_kind_and_user_newest_first_in_pages(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    clock = iter(range(1_000, 100_000, 10))
    audit = AuditLog(path, max_bytes=3000, files=10, clock_ms=lambda: next(clock))
    for i in range(90):
        kind = ("login", "write", "user")[i % 3]
        audit.record(kind, user=("ann", "bob")[i % 2], outcome="ok", n=i)
    audit.close()
    everything = all_entries(path, 10)
    assert len(everything) == 90 and [e["n"] for e in everything] == list(range(89, -1, -1))
    logins = all_entries(path, 10, kinds=frozenset({"login"}))
    assert [e["n"] for e in logins] == list(range(87, -1, -3))
    ann_writes = all_entries(path, 10, kinds=frozenset({"write"}), user="ann")
    assert [e["n"] for e in ann_writes] == [n for n in range(89, -1, -1) if n % 6 == 4]
    window = all_entries(path, 10, since_ms=1_200, until_ms=1_500)
    assert [e["ts"] for e in window] == list(range(1_490, 1_190, -10))
    assert read_audit(path, AuditQuery(limit=5), 10).cursor == 86


def test_every_line_written_before_a_sigkill_is_there(tmp_path: Path) -> None:
    """A real process writes (and rotates) until it is killed; every line whose record()
    returned is on disk afterwards, and the files still read."""
    path = tmp_path / "audit.log"
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from gateway.audit import AuditLog
        audit = AuditLog(Path({str(path)!r}), max_bytes=4096, files=1000)
        i = 0
        while True:
            seq = audit.record("write", tag="dev.setpoint", value=i, reason="x" * (i % 50))
            sys.stdout.write(f"{{seq}}\\n")
            sys.stdout.flush()
            i += 1
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=REPO)
    assert proc.stdout is not None
    confirmed = []
    for line in proc.stdout:
        confirmed.append(int(line))
        if len(confirmed) == 400:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert confirmed == list(range(1, 401))
    seqs = {e["seq"] for e in all_entries(path, 1000)}
    assert set(confirmed) <= seqs
    assert len([p for p in rotated_paths(path, 1000) if p.exists()]) > 3  # it rotated
    again = AuditLog(path, max_bytes=4096, files=1000)
    assert again.record("login", user="ann") == max(seqs) + 1
    again.close()
