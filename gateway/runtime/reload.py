"""What a new config changes in a running gateway, and whether it can be applied live.

Applied live (``gateway/runtime/live.py``): every change under ``devices`` (devices
added, removed, enabled, disabled, reordered, their connection settings and their tags
added, removed or redefined) and ``management``. Only the devices whose block changed
restart; the others keep polling and publishing untouched. The tag catalog keeps the id
of every tag that stays (``gateway/tags.py``), so samples in flight stay valid. Changes to
``bundles`` (trusted keys, signers, require_signed) restart nothing: the next bundle
is checked against the new block (a compromised key is dropped by a change).

Refused ("restart required"), the old config keeps running: a change to ``gateway``
(identity, state folder), ``northbound``, ``http``, ``commands``, ``models`` or
``logging``: what those build (the broker session, the spool, the local API, the
model service) lives as long as the process.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from gateway.config.models import GatewayConfig
from gateway.errors import ReloadRefused

#: sections whose change needs a restart, in the order they are reported
RESTART_SECTIONS = ("gateway", "northbound", "http", "commands", "models", "logging")


@dataclass(slots=True)
class ReloadCounters:
    """Outcomes of config reloads (exported in /metrics)."""

    outcomes: Counter[str] = field(default_factory=Counter)
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """Device names (enabled devices only) by what the new config does to them."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    #: in both, with another block: restarted with the new one
    changed: tuple[str, ...] = ()
    #: of :attr:`changed`, those whose settings besides their tags changed (connection,
    #: poll interval...): what a connect test is worth trying on
    reconnected: tuple[str, ...] = ()
    #: the device order changed (the births list them in the new order; nothing restarts)
    reordered: bool = False
    #: ``management`` changed (applied live: it is read when used)
    management: bool = False
    #: ``bundles`` changed (applied live: the next bundle is checked against it)
    bundles: bool = False

    @property
    def restart(self) -> tuple[str, ...]:
        """Devices whose runner is (re)started by the change: added and changed."""
        return self.added + self.changed

    @property
    def stop(self) -> tuple[str, ...]:
        """Devices whose runner is stopped first: removed and changed."""
        return self.removed + self.changed

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed or self.reordered
                    or self.management or self.bundles)

    def summary(self) -> str:
        """In words, for the log and the audit: ``devices added: c; changed: a``."""
        parts = [f"{what}: {', '.join(names)}" for what, names in (
            ("devices added", self.added), ("removed", self.removed),
            ("changed", self.changed)) if names]  # fmt: skip
        if self.reordered:
            parts.append("devices reordered")
        if self.management:
            parts.append("management changed")
        if self.bundles:
            parts.append("trusted bundle keys changed")
        return "; ".join(parts) or "no change"


def plan_reload(old: GatewayConfig, new: GatewayConfig) -> ReloadPlan:
    """Compare two validated configs; raise :class:`ReloadRefused` when a restart is needed."""
    changed = [s for s in RESTART_SECTIONS if getattr(old, s) != getattr(new, s)]
    if changed:
        raise ReloadRefused(f"{', '.join(changed)} changed: restart required")
    before = {d.name: d for d in old.devices if d.enabled}
    after = {d.name: d for d in new.devices if d.enabled}
    both = [name for name in after if name in before]
    redefined = tuple(name for name in both if after[name] != before[name])
    reconnected = tuple(
        name for name in redefined
        if after[name].model_copy(update={"tags": []}) != before[name].model_copy(
            update={"tags": []}))  # fmt: skip
    return ReloadPlan(
        added=tuple(name for name in after if name not in before),
        removed=tuple(name for name in before if name not in after),
        changed=redefined,
        reconnected=reconnected,
        reordered=[n for n in before if n in after] != both,
        management=old.management != new.management,
        bundles=old.bundles != new.bundles,
    )
