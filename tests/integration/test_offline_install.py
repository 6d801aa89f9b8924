"""scripts/build-wheelhouse.sh + scripts/install-offline.sh: a venv installed with --no-index.

No package index and no pip cache: every wheel comes from this machine. The dependencies
are the distributions installed in this venv, packed back into wheels
(tests/integration/installed_wheels.py) into a folder that stands in for the index
(``PIP_NO_INDEX`` and ``PIP_FIND_LINKS``); build-wheelhouse.sh builds the project's wheel
and gathers the rest from there, install-offline.sh installs from its wheelhouse alone.

One input may be missing here: the project's build backend (``[build-system] requires``
in pyproject.toml), which a venv made by ``python -m venv`` does not hold at the versions
asked. Then, and only then, it is downloaded; where no index answers the test is skipped
with pip's reason (marker ``needs_index``), never failed.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.integration.installed_wheels import repack, requirement_closure

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.needs_index]


def build_backend(into: Path) -> str | None:
    """Wheels of the build backend into ``into``: repacked when this venv holds the versions
    pyproject.toml asks for, downloaded otherwise. The reason when that cannot be done."""
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    missing = []
    for req in map(Requirement, requires):
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            missing.append(str(req))
            continue
        if req.specifier.contains(dist.version, prereleases=True):
            repack(dist, into)
        else:
            missing.append(str(req))
    if not missing:
        return None
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--retries", "1", "--timeout", "15", "-d", str(into), *missing],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if done.returncode == 0:
        return None
    return (f"the build backend ({', '.join(missing)}) is not installed here and no package "
            f"index provided it: {done.stderr.strip()[-800:]}")  # fmt: skip


def test_wheelhouse_installs_offline_and_the_starter_config_validates(tmp_path: Path) -> None:
    machine = tmp_path / "machine-wheels"  # stands in for the package index
    machine.mkdir()
    reason = build_backend(machine)
    if reason is not None:
        print(reason)
        pytest.skip(reason)
    for dist in [*requirement_closure("chenxing-edge").values(), metadata.distribution("pip")]:
        repack(dist, machine)
    src = tmp_path / "src"  # a copy: pip's in-tree build leaves build/ behind
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".venv", "build", "*.egg-info", "__pycache__", "var", ".git", "wheelhouse", "reports"))
    wheels, venv = tmp_path / "wheelhouse", tmp_path / "venv"
    no_index = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1",
                "PIP_FIND_LINKS": str(machine), "PIP_EXTRA_INDEX_URL": ""}  # fmt: skip
    subprocess.run([str(src / "scripts/build-wheelhouse.sh"), sys.executable, str(wheels)],
                   check=True, timeout=600, cwd=src, env=no_index)
    assert (wheels / "chenxing-gateway.service").is_file()  # docs/install.md copies it from there
    built = [w.name for w in wheels.glob("chenxing_edge-*.whl")]
    assert len(built) == 1, built  # the project's own wheel, built from the source
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "",
           "PIP_EXTRA_INDEX_URL": ""}  # nothing but the wheelhouse
    subprocess.run([str(wheels / "install-offline.sh"), str(wheels), str(venv), sys.executable],
                   check=True, timeout=600, env=env)
    gw = venv / "bin" / "chenxing-gateway"
    config = tmp_path / "etc" / "gateway.yaml"
    subprocess.run([str(gw), "config", "init", "-o", str(config)], check=True, timeout=60)
    out = subprocess.run([str(gw), "validate", "-c", str(config)], check=True, timeout=60,
                         capture_output=True, text=True).stdout
    assert "valid (1 device, 2 tags)" in out
