"""scripts/build-wheelhouse.sh + scripts/install-offline.sh: versioned venvs installed with
--no-index, a link to the one in service from the first install on, an upgrade that switches
the link and keeps the previous release; the installed wheel carries the shipped files, so
``config sample`` and ``demo`` work away from the repository.

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

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import __version__
from tests.integration.installed_wheels import OfflineWheelhouse, no_index

#: the environment of install-offline.sh: nothing but the wheelhouse
OFFLINE = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "",
           "PIP_EXTRA_INDEX_URL": ""}  # fmt: skip


def install(wheels: Path, prefix: Path) -> str:
    done = subprocess.run([str(wheels / "install-offline.sh"), str(wheels), str(prefix),
                           sys.executable], capture_output=True, text=True, timeout=900,
                          env=OFFLINE)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow
@pytest.mark.needs_index
@pytest.mark.serial  # it runs the demo of the whole line for a fixed time: alone
def test_wheelhouse_installs_offline_upgrades_and_runs_away_from_the_repository(
    tmp_path: Path, offline_wheelhouse: OfflineWheelhouse
) -> None:
    """The wheelhouse is build-wheelhouse.sh's from the machine's wheels without an index,
    built once for this test and the Debian package's (tests/conftest.py)."""
    machine, src = offline_wheelhouse.machine, offline_wheelhouse.src
    wheels = offline_wheelhouse.wheels
    prefix = tmp_path / "opt"
    assert (wheels / "chenxing-gateway.service").is_file()  # docs/install.md copies it from there
    built = [w.name for w in wheels.glob("chenxing_edge-*.whl")]
    assert built == [f"chenxing_edge-{__version__}-py3-none-any.whl"]  # built from the source

    # the first install: its own venv, and the link from the start
    out = install(wheels, prefix)
    assert f"{prefix}/venv -> venv-{__version__}" in out
    assert os.readlink(prefix / "venv") == f"venv-{__version__}"
    gw = prefix / "venv" / "bin" / "chenxing-gateway"
    away = tmp_path / "elsewhere"  # nothing of the repository in reach
    away.mkdir()
    config = tmp_path / "etc" / "gateway.yaml"
    subprocess.run([str(gw), "config", "init", "-o", str(config)], check=True, timeout=60,
                   cwd=away)
    out = subprocess.run([str(gw), "validate", "-c", str(config)], check=True, timeout=60,
                         capture_output=True, text=True, cwd=away).stdout
    assert "valid (1 device, 2 tags)" in out
    # the wheel carries the example config, the schema, the docs, LICENSE and CHANGELOG
    sample = subprocess.run([str(gw), "config", "sample"], check=True, timeout=60,
                            capture_output=True, text=True, cwd=away).stdout
    assert sample == (src / "config" / "example.yaml").read_text()
    shipped = next(prefix.glob("venv/lib/python3.*/site-packages/gateway/shipped_files"))
    for name in ("config/gateway.schema.json", "config/demo.yaml", "docs/install.md",
                 "README.md", "LICENSE", "CHANGELOG.md"):
        assert (shipped / name).is_file(), name
    console = shipped.parent / "console" / "static"  # the web console's shell, uPlot
    for name in ("index.html", "console.js", "vendor/uPlot.iife.min.js", "vendor/LICENSE"):
        assert (console / name).is_file(), name
    # the demo runs from the installed wheel (its own broker: Mosquitto, or the embedded one)
    demo = subprocess.run([str(gw), "demo", "--duration", "12", "--plain"], timeout=300,
                          capture_output=True, text=True, cwd=away)
    assert demo.returncode == 0, demo.stdout + demo.stderr

    # an upgrade: the next release beside it, the link switched, the previous one kept
    nxt = f"{__version__}.post1"
    src = shutil.copytree(src, tmp_path / "src-next", ignore=shutil.ignore_patterns(
        "build", "dist"))  # the shared source copy stays as it is
    init = src / "gateway" / "__init__.py"
    init.write_text(init.read_text().replace(f'"{__version__}"', f'"{nxt}"'))
    wheels2 = tmp_path / "wheelhouse-next"
    shutil.copytree(wheels, wheels2, ignore=shutil.ignore_patterns("chenxing_edge-*"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", str(src),
                    "-w", str(wheels2)], check=True, timeout=600, cwd=src, env=no_index(machine))
    out = install(wheels2, prefix)
    assert os.readlink(prefix / "venv") == f"venv-{nxt}"
    assert f"previous release stays in {prefix}/venv-{__version__}" in out
    version = subprocess.run([str(gw), "--version"], check=True, capture_output=True,
                             text=True, timeout=60).stdout
    assert version.split()[-1] == nxt
    assert (prefix / f"venv-{__version__}" / "bin" / "chenxing-gateway").is_file()
    assert sorted(p.name for p in prefix.iterdir()) == ["venv", f"venv-{__version__}",
                                                        f"venv-{nxt}"]


def test_an_install_before_versioned_venvs_is_refused_with_the_way_out(tmp_path: Path) -> None:
    """A real folder at PREFIX/venv (the layout before versioned venvs): nothing is installed,
    the message says how to move it aside. Runs in the parallel phase: two runs of the shell
    script in the test's tmp dir, no index, no port, nothing timed."""
    wheels, prefix = tmp_path / "wheelhouse", tmp_path / "opt"
    wheels.mkdir()
    shutil.copy(Path(__file__).resolve().parents[2] / "scripts" / "install-offline.sh", wheels)
    (wheels / f"chenxing_edge-{__version__}-py3-none-any.whl").touch()
    (prefix / "venv" / "bin").mkdir(parents=True)
    done = subprocess.run([str(wheels / "install-offline.sh"), str(wheels), str(prefix),
                           sys.executable], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert re.search(rf"mv {prefix}/venv {prefix}/venv-OLD\n", done.stderr), done.stderr
    assert sorted(p.name for p in prefix.iterdir()) == ["venv"]
    # and a venv given where the folder of venvs belongs (the older docs' usage)
    done = subprocess.run([str(wheels / "install-offline.sh"), str(wheels),
                           str(prefix / f"venv-{__version__}"), sys.executable],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and "give the folder that holds the venvs" in done.stderr
