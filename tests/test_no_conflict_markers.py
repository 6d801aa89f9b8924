"""No file of the project holds a merge-conflict marker: a README once kept three
half-resolved blocks of a cherry-pick for an hour, and nothing else looks at prose."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: what the project writes (not .venv, caches, node_modules of the interop tests, build output)
FOLDERS = ("gateway", "drivers", "edge_models", "config", "firmware_bridge", "brain_reader",
           "hil", "tests", "bench", "docs", "scripts", ".ci", "packaging")
SKIP = {"node_modules", "__pycache__", "results"}
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".sh", ".json", ".html", ".js",
            ".css", ".cfg", ".service", ".proto", ".pyi"}
MARKER = re.compile(rb"^(<<<<<<< |>>>>>>> )", re.MULTILINE)


def _files() -> list[Path]:
    found = [p for p in ROOT.iterdir() if p.is_file() and p.suffix in SUFFIXES | {""}]
    for folder in FOLDERS:
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix in SUFFIXES and not SKIP & set(path.parts):
                found.append(path)
    return found


def test_no_project_file_holds_a_conflict_marker() -> None:
    files = _files()
    assert any(p.name == "README.md" for p in files) and len(files) > 500
    newline = b"\n"
    marked = [f"{p.relative_to(ROOT)}:{p.read_bytes()[:m.start()].count(newline) + 1}"
              for p in files for m in MARKER.finditer(p.read_bytes())]
    assert marked == [], marked
