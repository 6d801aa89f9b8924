"""scripts/bootstrap.sh as `make demo` runs it: the runtime dependencies only, a quiet run
(pip's output in .venv/bootstrap.log, no setuptools deprecation boxes) that ends with a done
line; the demo ends with one line saying what to run next (issue 19, item 10).

The wheels come from this machine (tests/integration/installed_wheels.py), no index."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gateway import __version__
from gateway.cli.main import next_step
from tests.integration.installed_wheels import no_index, offline_build_inputs

pytestmark = [pytest.mark.slow, pytest.mark.needs_index]


def test_bootstrap_for_the_demo_installs_the_runtime_only_and_says_done(tmp_path: Path) -> None:
    machine, src = offline_build_inputs(tmp_path)
    done = subprocess.run([str(src / "scripts/bootstrap.sh")], capture_output=True, text=True,
                          timeout=900, cwd=src, env=no_index(machine))  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert all(line.startswith("[bootstrap] ") for line in lines), done.stderr
    assert "deprecated" not in done.stderr + done.stdout
    assert lines[-1] == (f"[bootstrap] done: .venv holds chenxing-edge {__version__} "
                         "with its runtime dependencies")
    listed = subprocess.run([str(src / ".venv/bin/python"), "-m", "pip", "list",
                             "--format=freeze"], capture_output=True, text=True, check=True,
                            env=no_index(machine)).stdout.lower()  # fmt: skip
    assert "onnxruntime==" in listed and "pymodbus==" in listed
    for test_tool in ("pytest", "mypy", "ruff", "hypothesis", "playwright"):
        assert f"{test_tool}==" not in listed, test_tool
    assert (src / ".venv/bootstrap.log").is_file()
    # a second run finds everything in place: nothing installed, the done line again
    again = subprocess.run([str(src / "scripts/bootstrap.sh")], capture_output=True, text=True,
                           timeout=300, cwd=src, env=no_index(machine))  # fmt: skip
    assert again.returncode == 0 and again.stderr.splitlines()[-1] == lines[-1]
    assert "installing" not in again.stderr


def test_the_demo_ends_saying_what_to_run_next() -> None:
    assert next_step(".venv/bin/chenxing-gateway").startswith(
        "next: .venv/bin/chenxing-gateway config init -o gateway.yaml")
    assert next_step("/usr/bin/chenxing-gateway").startswith("next: chenxing-gateway config init")
