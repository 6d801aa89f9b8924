"""``GET /api/audit`` (admin): the audit trail, newest first, filtered and paged.

Query: ``since``, ``until`` (ms since the epoch, ISO 8601, or an age: ``15m``, ``2h``),
``kind`` (an event kind; repeat it or separate by commas: ``login,denied``), ``user``,
``limit`` (1..1000, default 100), ``before`` (the ``cursor`` of the previous page).
Answer: ``{"entries": [...], "cursor": n | null, "damaged": n}``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from gateway.access import Role
from gateway.audit import AuditQuery, read_audit
from gateway.audit.reader import MAX_PAGE, parse_when
from gateway.errors import ApiRefused
from gateway.types import now_ns

ROUTE_ROLES: dict[str, Role | None] = {"audit": Role.ADMIN}


def add_audit_route(app: web.Application, path: Path, files: int) -> None:
    async def audit(request: web.Request) -> web.Response:
        query = audit_query(request.query.getall("kind", []), dict(request.query))
        page = await asyncio.to_thread(read_audit, path, query, files)
        return web.json_response(page.as_dict(), headers={"Cache-Control": "no-store"})

    app.router.add_get("/api/audit", audit, name="audit")


def audit_query(kinds: list[str], params: dict[str, str]) -> AuditQuery:
    """The query of ``/api/audit``'s parameters (ApiRefused 400 naming a bad one)."""
    now_ms = now_ns() // 1_000_000

    def when(key: str) -> int | None:
        if key not in params:
            return None
        try:
            return parse_when(params[key], now_ms)
        except ValueError as exc:
            raise ApiRefused(400, "bad_query", f"{key}: {exc}") from None

    def number(key: str, default: int | None, low: int, high: int) -> int | None:
        if key not in params:
            return default
        text = params[key]
        if not text.lstrip("-").isdigit() or not low <= int(text) <= high:
            raise ApiRefused(400, "bad_query", f"{key}: a whole number from {low} to {high}")
        return int(text)

    unknown = sorted(set(params) - {"since", "until", "kind", "user", "limit", "before"})
    if unknown:
        raise ApiRefused(400, "bad_query", f"unknown parameter(s): {', '.join(unknown)[:200]}")
    limit = number("limit", 100, 1, MAX_PAGE)
    assert limit is not None
    return AuditQuery(
        since_ms=when("since"), until_ms=when("until"),
        kinds=frozenset(k.strip() for kind in kinds for k in kind.split(",") if k.strip()),
        user=params.get("user"), before=number("before", None, -(2**62), 2**62), limit=limit)
