"""The files that ship with the gateway beside its code: the demo and example configs,
the config's JSON Schema, the docs, README, LICENSE and CHANGELOG.

An installed wheel or Debian package has them in ``gateway/shipped_files/`` (copied there by
the build, ``setup.py``); a checkout (editable install, tests) reads them in the
repository. Either way a caller names them by their path in the repository:
``shipped_file("config/demo.yaml")``.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def shipped_root() -> Path:
    """The folder that holds ``config/``, ``docs/`` and the top-level files."""
    installed = _PACKAGE_DIR / "shipped_files"
    if (installed / "config").is_dir():
        return installed
    return _PACKAGE_DIR.parent  # a checkout: the repository itself


def shipped_file(relative: str) -> Path:
    """The shipped file at ``relative``, named as in the repository (``config/demo.yaml``).
    Reading a file an installation lacks fails as any unreadable file does."""
    return shipped_root() / relative
