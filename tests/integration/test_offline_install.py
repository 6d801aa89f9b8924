"""scripts/build-wheelhouse.sh + scripts/install-offline.sh: a venv installed with --no-index.

Building the wheelhouse uses the package index (or pip's cache) and takes about 30 s; the
install itself never touches an index.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_wheelhouse_installs_offline_and_the_starter_config_validates(tmp_path: Path) -> None:
    src = tmp_path / "src"  # a copy: pip's in-tree build leaves build/ behind
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".venv", "build", "*.egg-info", "__pycache__", "var", ".git", "wheelhouse", "reports"))
    wheels, venv = tmp_path / "wheelhouse", tmp_path / "venv"
    subprocess.run([str(src / "scripts/build-wheelhouse.sh"), sys.executable, str(wheels)],
                   check=True, timeout=240, cwd=src)
    assert (wheels / "chenxing-gateway.service").is_file()  # docs/install.md copies it from there
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "",
           "PIP_EXTRA_INDEX_URL": ""}  # nothing but the wheelhouse
    subprocess.run([str(wheels / "install-offline.sh"), str(wheels), str(venv), sys.executable],
                   check=True, timeout=240, env=env)
    gw = venv / "bin" / "chenxing-gateway"
    config = tmp_path / "etc" / "gateway.yaml"
    subprocess.run([str(gw), "config", "init", "-o", str(config)], check=True, timeout=60)
    out = subprocess.run([str(gw), "validate", "-c", str(config)], check=True, timeout=60,
                         capture_output=True, text=True).stdout
    assert "valid (1 devices, 2 tags)" in out
