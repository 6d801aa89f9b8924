"""Which config edits a running gateway applies on SIGHUP, and which need a restart."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.config.loader import load_config_text
from gateway.config.models import GatewayConfig
from gateway.errors import ReloadRefused
from gateway.runtime.reload import plan_reload
from tests.integration.gateway_harness import meter_device

BASE: dict[str, Any] = {
    "gateway": {"id": "gw", "site": "s", "line": "l"},
    "devices": [meter_device("a", 5020), meter_device("b", 5021),
                {**meter_device("off", 5022), "enabled": False}],
}


def _cfg(body: dict[str, Any], tmp: Path) -> GatewayConfig:
    return load_config_text(json.dumps(body), "gw.yaml", tmp)


def test_connection_change_restarts_only_that_device(tmp_path: Path) -> None:
    new = copy.deepcopy(BASE)
    new["devices"][1]["host"] = "127.0.0.2"
    new["devices"][2]["port"] = 6000  # disabled: nothing to restart
    assert plan_reload(_cfg(BASE, tmp_path), _cfg(new, tmp_path)).restart == ("b",)
    assert plan_reload(_cfg(BASE, tmp_path), _cfg(BASE, tmp_path)).restart == ()


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda b: b["devices"].append(meter_device("c", 1)), "devices added: c"),
        (lambda b: b["devices"].pop(0), "devices removed: a"),
        (lambda b: b["devices"][2].update(enabled=True), "devices added: off"),
        (lambda b: b["devices"][0]["tags"][0].update(scale=2), "tags changed on a"),
        (lambda b: b["devices"].reverse(), "devices reordered"),
        (lambda b: b.update(http={"port": 9000}), "http changed: restart required"),
        (lambda b: b.update(northbound={"publish_interval": 1}), "northbound changed"),
    ],
)
def test_catalog_and_section_changes_are_refused(tmp_path: Path, edit, reason: str) -> None:  # type: ignore[no-untyped-def]
    new = copy.deepcopy(BASE)
    edit(new)
    with pytest.raises(ReloadRefused, match="restart required") as info:
        plan_reload(_cfg(BASE, tmp_path), _cfg(new, tmp_path))
    assert reason in str(info.value)
