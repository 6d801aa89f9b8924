"""Which config edits a running gateway applies live, and which need a restart."""

from __future__ import annotations

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
    new = json.loads(json.dumps(BASE))  # no list shared between devices
    new["devices"][1]["host"] = "127.0.0.2"
    new["devices"][2]["port"] = 6000  # disabled: nothing to restart
    assert plan_reload(_cfg(BASE, tmp_path), _cfg(new, tmp_path)).restart == ("b",)
    assert plan_reload(_cfg(BASE, tmp_path), _cfg(BASE, tmp_path)).restart == ()


@pytest.mark.parametrize(
    ("edit", "summary", "restart", "stop"),
    [
        (lambda b: b["devices"].append(meter_device("c", 1)), "devices added: c", ("c",), ()),
        (lambda b: b["devices"].pop(0), "removed: a", (), ("a",)),
        (lambda b: b["devices"][2].update(enabled=True), "devices added: off", ("off",), ()),
        (lambda b: b["devices"][0].update(enabled=False), "removed: a", (), ("a",)),
        (lambda b: b["devices"][0]["tags"][0].update(scale=2), "changed: a", ("a",), ("a",)),
        (lambda b: b["devices"][1]["tags"].pop(), "changed: b", ("b",), ("b",)),
        (lambda b: b["devices"].reverse(), "devices reordered", (), ()),
        (lambda b: b.update(management={"watch": "3s"}), "management changed", (), ()),
    ],
)
def test_device_and_tag_changes_are_applied_live(tmp_path: Path, edit, summary: str,  # type: ignore[no-untyped-def]
                                                 restart: tuple[str, ...],
                                                 stop: tuple[str, ...]) -> None:
    new = json.loads(json.dumps(BASE))  # no list shared between devices
    edit(new)
    plan = plan_reload(_cfg(BASE, tmp_path), _cfg(new, tmp_path))
    assert plan and summary in plan.summary()
    assert plan.restart == restart and plan.stop == stop


def test_only_connection_changes_are_connect_tested(tmp_path: Path) -> None:
    new = json.loads(json.dumps(BASE))  # no list shared between devices
    new["devices"][0]["tags"][0]["scale"] = 2
    new["devices"][1]["port"] = 6001
    new["devices"].append(meter_device("c", 1))
    plan = plan_reload(_cfg(BASE, tmp_path), _cfg(new, tmp_path))
    assert plan.changed == ("a", "b") and plan.reconnected == ("b",) and plan.added == ("c",)
    assert not plan_reload(_cfg(BASE, tmp_path), _cfg(BASE, tmp_path))


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda b: b.update(http={"port": 9000}), "http changed: restart required"),
        (lambda b: b.update(northbound={"publish_interval": 1}), "northbound changed"),
        (lambda b: b["gateway"].update(id="other"), "gateway changed"),
    ],
)
def test_section_changes_are_refused(tmp_path: Path, edit, reason: str) -> None:  # type: ignore[no-untyped-def]
    new = json.loads(json.dumps(BASE))  # no list shared between devices
    edit(new)
    with pytest.raises(ReloadRefused, match="restart required") as info:
        plan_reload(_cfg(BASE, tmp_path), _cfg(new, tmp_path))
    assert reason in str(info.value)


def test_trusted_keys_change_without_a_restart(tmp_path: Path) -> None:
    """A compromised key is dropped by a reload: the bundles block restarts nothing."""
    from gateway.bundles import keys

    key = keys.public_key_text(keys.generate_private_key().public_key())
    trusting = {**BASE, "bundles": {"keys": {"brain": {"public_key": key}},
                                    "signers": {"firmware": ["brain"]}}}
    for old, new in ((trusting, BASE), (BASE, trusting)):
        plan = plan_reload(_cfg(old, tmp_path), _cfg(new, tmp_path))
        assert plan.restart == () and plan.bundles  # not empty: the new block is taken
        assert plan.summary() == "trusted bundle keys changed"
