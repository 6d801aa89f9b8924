"""The gateway's log lines: other libraries held at WARNING by default, JSON lines, journald
priorities when stderr is the journal (issue 19, item 3)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.logsetup import OWN_PACKAGES, setup_logging, stderr_is_journal, syslog_priority


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    """setup_logging writes to a real file; the root logger is restored afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, {p: logging.getLogger(p).level for p in OWN_PACKAGES}
    yield tmp_path / "log"
    root.handlers[:], root.level = saved[0], saved[1]
    for package, level in saved[2].items():
        logging.getLogger(package).setLevel(level)


def emit_sample() -> None:
    logging.getLogger("gateway.runtime").info("gateway info")
    logging.getLogger("drivers.modbus").debug("driver debug")
    logging.getLogger("asyncua.client").info("library info")
    logging.getLogger("pymodbus").warning("library warning")


def test_other_libraries_log_at_warning_by_default(log_file: Path) -> None:
    with log_file.open("w") as stream:
        setup_logging("INFO", "text", stream=stream)
        emit_sample()
    text = log_file.read_text()
    assert "gateway info" in text and "library warning" in text
    assert "library info" not in text and "driver debug" not in text


def test_the_libraries_level_is_their_own(log_file: Path) -> None:
    with log_file.open("w") as stream:
        setup_logging("WARNING", "text", libraries="INFO", stream=stream)
        emit_sample()
    text = log_file.read_text()
    assert "library info" in text and "gateway info" not in text


def test_json_lines(log_file: Path) -> None:
    with log_file.open("w") as stream:
        setup_logging("DEBUG", "json", stream=stream)
        emit_sample()
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [(r["level"], r["logger"], r["msg"]) for r in records] == [
        ("INFO", "gateway.runtime", "gateway info"),
        ("DEBUG", "drivers.modbus", "driver debug"),
        ("WARNING", "pymodbus", "library warning"),
    ]


def test_priorities_when_stderr_is_the_journal(log_file: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    with log_file.open("w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert stderr_is_journal(stream)
        setup_logging("INFO", "text", stream=stream)
        emit_sample()
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("gateway").exception("fatal error")
    lines = log_file.read_text().splitlines()
    assert lines[:2] == ["<6>INFO gateway.runtime: gateway info",
                         "<4>WARNING pymodbus: library warning"]
    # every line of a traceback keeps the record's priority (the journal stores each line)
    assert lines[2] == "<3>ERROR gateway: fatal error" and len(lines) > 4
    assert all(line.startswith("<3>") for line in lines[2:])


def test_a_redirected_stderr_is_no_journal(log_file: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other"
    other.touch()
    st = os.stat(other)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    with log_file.open("w") as stream:
        assert not stderr_is_journal(stream)
        setup_logging("INFO", "text", stream=stream)
        emit_sample()
    assert not log_file.read_text().startswith("<")


def test_syslog_priorities() -> None:
    assert [syslog_priority(level) for level in (10, 20, 25, 30, 40, 50, 60)] == \
        [7, 6, 4, 4, 3, 2, 2]
