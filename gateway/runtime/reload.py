"""Config reload on SIGHUP: what a new config file changes, and whether it can be applied live.

Applied without a restart: changes to the connection settings of enabled devices
(host, port, timeouts, poll intervals, security...) with their tags unchanged;
those devices restart, all others keep running untouched.

Refused ("restart required"), the old config keeps running:
- any change to the tag catalog: tags added, removed or redefined, devices added,
  removed, enabled or disabled (the catalog, the pipeline's per-tag state and the
  birth are built once at start-up);
- any change outside ``devices`` (identity, northbound, http, commands, models, logging).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from gateway.config.models import GatewayConfig
from gateway.errors import ReloadRefused

#: sections whose change needs a restart, in the order they are reported
_SECTIONS = ("gateway", "northbound", "http", "commands", "models", "logging")


@dataclass(slots=True)
class ReloadCounters:
    """Outcomes of config reloads (exported in /metrics)."""

    outcomes: Counter[str] = field(default_factory=Counter)
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """Devices to restart with their new config (by name); everything else stays."""

    restart: tuple[str, ...]


def _tags_of(config: GatewayConfig) -> dict[str, list[dict[str, Any]]]:
    return {
        d.name: [t.model_dump(mode="json") for t in d.tags] for d in config.devices if d.enabled
    }


def plan_reload(old: GatewayConfig, new: GatewayConfig) -> ReloadPlan:
    """Compare two validated configs; raise :class:`ReloadRefused` when a restart is needed."""
    changed = [s for s in _SECTIONS if getattr(old, s) != getattr(new, s)]
    if changed:
        raise ReloadRefused(f"{', '.join(changed)} changed: restart required")
    old_tags, new_tags = _tags_of(old), _tags_of(new)
    if list(old_tags.items()) != list(new_tags.items()):  # order matters: it gives tag ids
        added = sorted(set(new_tags) - set(old_tags))
        removed = sorted(set(old_tags) - set(new_tags))
        redefined = sorted(n for n in set(old_tags) & set(new_tags) if old_tags[n] != new_tags[n])
        parts = [f"{what} {', '.join(names)}" for what, names in (
            ("devices added:", added), ("devices removed:", removed),
            ("tags changed on", redefined)) if names] or ["devices reordered"]
        raise ReloadRefused(f"tag set changed ({'; '.join(parts)}): restart required")
    old_devices = {d.name: d for d in old.devices if d.enabled}
    restart = tuple(d.name for d in new.devices if d.enabled and d != old_devices[d.name])
    return ReloadPlan(restart)
