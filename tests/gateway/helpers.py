"""Small builders shared by gateway unit tests."""

from __future__ import annotations

from typing import Any

from gateway.config.loader import load_config_text
from gateway.config.models import GatewayConfig


def make_config(tags: list[dict[str, Any]], **device: Any) -> GatewayConfig:
    """A one-device Modbus config with the given tag dicts (YAML flow style)."""
    import json

    dev = {"name": "dev", "protocol": "modbus_tcp", "host": "127.0.0.1", **device, "tags": tags}
    text = json.dumps({"gateway": {"id": "gw", "site": "s", "line": "l"}, "devices": [dev],
                       "northbound": {"format": "json"}})
    return load_config_text(text, "test.yaml")
