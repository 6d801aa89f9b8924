"""A package's lazy names (gateway/lazy_names.py): imported on first use, unknown names refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.lazy_names import lazy_names

REPO = Path(__file__).resolve().parents[2]


def test_a_name_is_read_from_its_module_and_an_unknown_one_refused() -> None:
    getattr_ = lazy_names("plant.line", {"dumps": "json"})
    import json

    assert getattr_("dumps") is json.dumps
    with pytest.raises(AttributeError, match=r"module 'plant\.line' has no attribute 'loads'"):
        getattr_("loads")


@pytest.mark.parametrize(("package", "name", "module"), [
    ("drivers.fins", "FinsDriver", "drivers.fins.driver"),
    ("drivers.s7", "S7Driver", "drivers.s7.driver"),
    ("drivers.mc", "McDriver", "drivers.mc.driver"),
    ("drivers.dlt645", "Dlt645TcpDriver", "drivers.dlt645.driver"),
])
def test_a_driver_package_imports_its_driver_on_first_use_only(
        package: str, name: str, module: str) -> None:
    code = (f"import sys, {package} as p\n"
            f"before = {module!r} in sys.modules\n"
            f"cls = p.{name}\n"
            f"print(before, {module!r} in sys.modules, cls.__module__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.split()
    assert out == ["False", "True", module]
