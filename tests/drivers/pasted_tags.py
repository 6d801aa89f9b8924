"""What ``browse --yaml`` and ``scan --yaml`` print, pasted as a person would: the lines
indented under a device block's ``tags:``, the whole file validated as a config."""

from __future__ import annotations

import json
from typing import Any

from gateway.config.loader import load_config_text
from gateway.config.models import GatewayConfig


def paste(device: dict[str, Any], printed: str) -> GatewayConfig:
    """A config with ``device`` (its keys besides tags) and the printed entries as its
    tags, indented by six spaces as under ``devices: - ... tags:``."""
    lines = ["gateway: {id: gw, site: s, line: l}", "devices:", "  - name: dev"]
    lines += [f"    {key}: {json.dumps(value)}" for key, value in device.items()]
    lines.append("    tags:")
    lines += [f"      {line}" if line else "" for line in printed.splitlines()]
    return load_config_text("\n".join(lines) + "\n", "pasted.yaml")
