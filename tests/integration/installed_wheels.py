"""Wheels rebuilt from the distributions installed in this Python.

The offline-install test needs every wheel chenxing-edge depends on without a package
index or pip's cache: they are installed here already (the test runs in the project's
venv), so each one is packed back into a wheel from its installed files and RECORD, into
a folder pip reads with ``--find-links``. What a wheel installs outside site-packages
(console scripts, headers, data files) is left out: pip writes console scripts again
from the entry points, and chenxing-edge uses none of the rest.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]

#: files of an installed .dist-info that belong to the installation, not the wheel
_INSTALL_ONLY = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


def requirement_closure(root: str) -> dict[str, metadata.Distribution]:
    """The installed distributions ``root`` needs (with the extras its requirements ask
    for, none of its own), by canonical name, not ``root`` itself. A missing one raises
    :class:`PackageNotFoundError`."""
    found: dict[str, metadata.Distribution] = {}
    done: set[tuple[str, str]] = set()  # (distribution, extra) whose requirements are in
    todo: list[tuple[str, str]] = [(root, "")]
    while todo:
        name, extra = todo.pop()
        key = (canonicalize_name(name), extra)
        if key in done:
            continue
        done.add(key)
        dist = found.setdefault(key[0], metadata.distribution(key[0]))
        for line in dist.requires or []:
            req = Requirement(line)
            if (req.marker is None and extra == "") or (
                req.marker is not None and req.marker.evaluate({"extra": extra})
            ):
                todo += [(req.name, wanted) for wanted in ("", *req.extras)]
    del found[canonicalize_name(root)]
    return found


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def repack(dist: metadata.Distribution, out: Path) -> Path:
    """``dist`` as a wheel in ``out``, tagged as it was installed."""
    name, version = dist.metadata["Name"], dist.version
    wheel_info = dist.read_text("WHEEL")
    tags = [line.split(":", 1)[1].strip() for line in (wheel_info or "").splitlines()
            if line.startswith("Tag:")]  # fmt: skip
    if not tags or dist.files is None:
        raise ValueError(f"{name} {version} was not installed from a wheel: cannot repack it")
    # the file name carries every tag it was installed under (py2.py3-none-any, ...)
    fields = [sorted({tag.split("-")[i] for tag in tags}) for i in range(3)]
    tag = "-".join(".".join(f) for f in fields)
    path = out / f"{re.sub(r'[-_.]+', '_', name)}-{version}-{tag}.whl"
    record: list[str] = []
    dist_info = ""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as whl:
        for file in dist.files:
            parts = file.parts
            if parts[0] == ".." or "__pycache__" in parts:
                continue  # outside site-packages, or bytecode of this interpreter
            if parts[0].endswith(".dist-info"):
                dist_info = parts[0]
                if parts[-1] in _INSTALL_ONLY:
                    continue
            data = Path(str(dist.locate_file(file))).read_bytes()
            arcname = "/".join(parts)
            whl.writestr(arcname, data)
            record.append(f"{arcname},{_record_hash(data)},{len(data)}")
        record.append(f"{dist_info}/RECORD,,")
        whl.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return path


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


def machine_wheels(into: Path) -> str | None:
    """Every wheel chenxing-edge needs, pip and the build backend, into ``into``, a folder
    that stands in for the package index. The reason when the build backend is missing."""
    into.mkdir(parents=True, exist_ok=True)
    reason = build_backend(into)
    if reason is not None:
        return reason
    for dist in [*requirement_closure("chenxing-edge").values(), metadata.distribution("pip")]:
        repack(dist, into)
    return None


def source_copy(into: Path) -> Path:
    """The checkout without what a build leaves behind (pip's in-tree build writes build/)."""
    shutil.copytree(REPO, into, ignore=shutil.ignore_patterns(
        ".venv", "build", "dist", "*.egg-info", "__pycache__", "var", ".git", "wheelhouse",
        "reports", "node_modules", ".mypy_cache", ".ruff_cache", ".pytest_cache"))
    return into


def no_index(machine: Path) -> dict[str, str]:
    """The environment of a pip that sees ``machine``'s wheels and no index."""
    return {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": str(machine), "PIP_EXTRA_INDEX_URL": ""}  # fmt: skip


def offline_build_inputs(work: Path) -> tuple[Path, Path]:
    """(the machine's wheels, a source copy) under ``work`` for a build without an index;
    the test is skipped with pip's reason when the build backend cannot be had."""
    machine = work / "machine-wheels"  # stands in for the package index
    reason = machine_wheels(machine)
    if reason is not None:
        print(reason)
        pytest.skip(reason)
    return machine, source_copy(work / "src")


@dataclass(frozen=True, slots=True)
class OfflineWheelhouse:
    """What the offline install and the Debian package are built from."""

    machine: Path  #: the machine's wheels, standing in for the package index
    src: Path  #: a source copy; a test that edits it works on a copy of its own
    wheels: Path  #: scripts/build-wheelhouse.sh's wheelhouse, built from ``src``


def offline_wheelhouse_in(work: Path) -> OfflineWheelhouse:
    """The machine's wheels, a source copy and the wheelhouse built from them without an
    index, under ``work`` (skipped as :func:`offline_build_inputs` is)."""
    machine, src = offline_build_inputs(work)
    wheels = work / "wheelhouse"
    subprocess.run([str(src / "scripts/build-wheelhouse.sh"), sys.executable, str(wheels)],
                   check=True, timeout=900, cwd=src, env=no_index(machine),
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return OfflineWheelhouse(machine, src, wheels)
