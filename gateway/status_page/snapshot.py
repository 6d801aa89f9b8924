"""What the status page shows, as one JSON-ready dict (``GET /api/status``).

Everything here is read from the running gateway's objects on the event loop; nothing
is changed. Tag values are not included (``GET /api/tags`` has them), so this stays
small whatever the number of tags.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from gateway import __version__
from gateway.types import QUALITY_NAMES

if TYPE_CHECKING:
    from gateway.runtime.gateway import Gateway


def status_snapshot(gw: Gateway) -> dict[str, Any]:
    devices = device_summaries(gw)
    broker = broker_summary(gw)
    healthy = bool(broker["connected"]) and all(d["state"] == "up" for d in devices)
    now = time.time_ns()
    ident = gw.config.gateway
    recent = getattr(gw, "recent_errors", None)
    return {
        "now_ns": now,
        "status": "ok" if healthy else "degraded",
        "gateway": {
            "id": ident.id,
            "site": ident.site,
            "line": ident.line,
            "description": ident.description,
            "version": __version__,
            "uptime_s": round(gw.uptime_s, 3),
            "started_ms": (now // 1_000_000) - int(gw.uptime_s * 1000),
            "tags": len(gw.catalog),
        },
        "broker": broker,
        "spool": spool_summary(gw),
        "devices": devices,
        "models": model_summary(gw),
        "errors": recent.snapshot() if recent is not None else [],
        "errors_total": recent.total if recent is not None else 0,
    }


def device_summaries(gw: Gateway) -> list[dict[str, Any]]:
    configs = {d.name: d for d in gw.config.devices}
    out = []
    for name, runner in gw.runners.items():
        s = runner.stats
        cfg = configs.get(name)
        errors = dict(runner.driver.errors) if runner.driver else {}
        out.append({
            "name": name,
            "protocol": cfg.protocol if cfg is not None else "",
            "description": cfg.description if cfg is not None else "",
            "state": s.state.value,
            "since_ms": s.since_ns // 1_000_000,
            "last_error": s.last_error,
            "samples_read": s.samples_read,
            "errors": sum(errors.values()),
            "error_kinds": errors,
            "reconnects": s.connection_losses,
        })
    return out


def broker_summary(gw: Gateway) -> dict[str, Any]:
    nb = gw.northbound
    if nb is None:
        return {"url": None, "connected": False, "last_error": None, "disconnects": 0}
    return {
        "url": nb.link.url,
        "connected": nb.link.connected.is_set(),
        "last_error": nb.link.last_error,
        "disconnects": nb.link.disconnects,
    }


def spool_summary(gw: Gateway) -> dict[str, Any]:
    nb = gw.northbound
    spool = gw.config.northbound.spool
    kind = "disk" if spool.enabled else "memory"
    if nb is None:
        return {"kind": kind, "queued": 0, "inflight": 0, "backlog": 0, "bytes": 0,
                "dropped": 0, "oldest_age_s": 0.0}
    st = nb.outbox.stats()
    return {
        "kind": kind,
        "queued": st.queued,
        "inflight": st.inflight,
        "backlog": st.backlog,
        "bytes": st.bytes,
        "dropped": st.dropped,
        "drops": {reason: d.messages for reason, d in st.drops.items()},
        "oldest_age_s": round(st.oldest_age_s, 3),
    }


def model_summary(gw: Gateway) -> dict[str, Any]:
    """Models in service, their output values, alarm states and recent alarm events."""
    service = gw.models
    if service is None:
        return {"enabled": False, "files": [], "outputs": [], "alarms": [], "events": []}
    events = [e.as_dict() for e in reversed(getattr(gw, "recent_alarms", ()))]
    raised_at = {}
    for e in reversed(events):  # oldest first: the last raise wins
        if e["state"] == "raised":
            raised_at[e["tag"]] = e["ts"]
    outputs: list[dict[str, Any]] = []
    alarms: list[dict[str, Any]] = []
    engine = service.engine
    for name, slot in sorted(engine.slots.items()):
        for role, installed in sorted(slot.roles.items()):
            for tag_id in installed.output_ids.tolist():
                outputs.append({"model": name, "role": role, **_tag_value(gw, int(tag_id))})
        for alarm in slot.alarms:
            path = gw.catalog[alarm.tag_id].path
            alarms.append({
                "model": name,
                "alarm": alarm.name,
                "tag": path,
                "active": bool(alarm.active),
                "since_ms": raised_at.get(path) if alarm.active else None,
            })
    return {
        "enabled": True,
        "files": service.health(),
        "outputs": outputs,
        "alarms": alarms,
        "events": events,
    }


def _tag_value(gw: Gateway, tag_id: int) -> dict[str, Any]:
    p = gw.pipeline
    info = gw.catalog[tag_id]
    q = int(p.latest_quality[tag_id])
    return {
        "tag": info.path,
        "unit": info.unit,
        "value": p.latest(tag_id),
        "quality": QUALITY_NAMES[q] if q < len(QUALITY_NAMES) else "none",
        "ts_ns": int(p.latest_ns[tag_id]),
    }
