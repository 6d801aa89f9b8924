"""Config keys for commands, restricted tags and MQTT TLS: defaults, checks, relative paths."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.config.loader import load_config_text
from gateway.config.models import GatewayConfig
from gateway.errors import ConfigError

TAG = {"name": "sp", "table": "holding", "address": 0, "type": "uint16"}


def load(tmp_path: Path, tag: dict[str, Any] | None = None, **top: Any) -> GatewayConfig:
    body = {
        "gateway": {"id": "gw", "site": "s", "line": "l", "state_dir": "state"},
        "devices": [{"name": "dev", "protocol": "modbus_tcp", "host": "127.0.0.1",
                     "tags": [tag or TAG]}],
        **top,
    }
    return load_config_text(json.dumps(body), "gw.yaml", tmp_path)


def test_defaults_are_safe(tmp_path: Path) -> None:
    cfg = load(tmp_path)
    assert cfg.commands.enabled is False
    assert cfg.commands.resolved_audit_log(cfg.gateway.state_dir) == tmp_path / "state/audit.log"
    assert cfg.northbound.publish_restricted is False
    assert cfg.northbound.mqtt.tls is None
    tag = cfg.devices[0].tags[0]
    assert tag.max_write_rate == 60 and tag.verify_write is False


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        commands={"enabled": True, "audit_log": "logs/audit.jsonl"},
        northbound={"mqtt": {"port": 8883, "tls": {"ca": "pki/ca.crt", "certificate": "c.crt",
                                                   "key": "/etc/k.key"}}},
    )
    assert cfg.commands.audit_log == tmp_path / "logs/audit.jsonl"
    tls = cfg.northbound.mqtt.tls
    assert tls is not None
    assert tls.ca == tmp_path / "pki/ca.crt" and tls.certificate == tmp_path / "c.crt"
    assert tls.key == Path("/etc/k.key") and tls.insecure_skip_verify is False


@pytest.mark.parametrize(
    ("tag", "top", "message"),
    [
        (None, {"northbound": {"mqtt": {"tls": {"certificate": "c.crt"}}}}, "needs its key"),
        ({**TAG, "max_write_rate": 0}, {}, "max_write_rate"),
        (None, {"commands": {"enabled": True, "shell": "x"}}, "unknown key"),
    ],
)
def test_invalid_values_are_reported(
    tmp_path: Path, tag: dict[str, Any] | None, top: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, tag, **top)
