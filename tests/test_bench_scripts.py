"""Every bench script still imports: a bench broken by a refactor of the harness (bench/mc.py
imported a helper that had moved out of bench/pipeline.py) is found here, not on the day
someone needs its figures. Importing runs nothing: each script measures only under
``__main__``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py"))


def test_there_are_bench_scripts() -> None:
    assert {"harness", "mc", "fins", "s7", "southbound", "pipeline"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_bench_script_imports_and_answers_help(name: str) -> None:
    if name in ("harness", "northbound_subscriber", "modbus_bank_server",
                "modbus_fleet_server"):
        run = subprocess.run([sys.executable, "-c", f"import bench.{name}"],
                             capture_output=True, text=True, cwd=BENCH.parent, timeout=120)
    else:
        run = subprocess.run([sys.executable, "-m", f"bench.{name}", "--help"],
                             capture_output=True, text=True, cwd=BENCH.parent, timeout=120)
        assert "usage:" in run.stdout, run.stdout + run.stderr
    assert run.returncode == 0, run.stderr[-2000:]
