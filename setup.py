"""Build hook: the files an installed gateway needs from outside its packages.

``config/`` (demo and example configs, the JSON Schema), ``docs/``, README, LICENSE and
CHANGELOG live at the top of the repository (the layout is fixed), so setuptools'
package data cannot reach them. This copies them into ``gateway/shipped_files/`` of the
build, where :mod:`gateway.shipped` finds them in an installed wheel or Debian package; from a
checkout it reads them in place.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
#: (source relative to the repository, glob of the files taken)
SHIPPED = (
    ("config", "*.yaml"),
    ("config", "*.json"),
    ("docs", "*.md"),
    ("docs/schemas", "*.json"),
    (".", "README.md"),
    (".", "LICENSE"),
    (".", "CHANGELOG.md"),
)


class BuildWithShippedFiles(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "gateway" / "shipped_files"
        for folder, pattern in SHIPPED:
            for source in sorted((ROOT / folder).glob(pattern)):
                dest = target / source.relative_to(ROOT)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest)


setup(cmdclass={"build_py": BuildWithShippedFiles})
