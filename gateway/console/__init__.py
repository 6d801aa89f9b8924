"""The web console for the shop floor at ``/console/``: the line at a glance (device tiles
with a state lamp, broker, spool, models and alarms, a line-wide summary), every tag in a
virtualised table with its sparkline, trends of chosen tags, setpoint writes for operators
and, for admins, devices and tags configured without YAML (through the config API).

Served by the local API like the status page: a static shell (HTML, CSS, JS and the
vendored uPlot chart library, in ``static/``) that anyone may fetch (no data in it), and
data routes behind the API's roles (:data:`ROUTE_ROLES`):

- ``GET /api/console/tags``: every tag in service with its latest figures
- ``GET /api/console/events``: server-sent events: ``status`` once a tick (1 s) and
  ``tags`` with only the tags changed since the stream last sent (``?since=`` the ``seq``
  of ``/api/console/tags``), ``catalog`` when the tag set changed
- ``GET /api/console/trend?tag=a&tag=b&seconds=300&points=N``: the trend ring's rows
- ``GET /api/console/messages?since=N&filter=text``: the last messages published, decoded
  (:mod:`gateway.console.messages`)

docs/console.md describes the page; the ring and the tick are :mod:`gateway.console.live`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.access import Role
from gateway.console.live import TICK_S, LineWatch
from gateway.errors import ApiRefused
from gateway.http_access import principal_of
from gateway.status_page import SECURITY_HEADERS

if TYPE_CHECKING:
    from gateway.runtime.gateway import Gateway

STATIC_DIR = Path(__file__).resolve().parent / "static"

#: the shell's files: name under /console/ -> content type
_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".js": "text/javascript; charset=utf-8"}

#: route name -> least role (merged into the API's table; the shell is public: no data)
ROUTE_ROLES: dict[str, Role | None] = {
    "console-redirect": None,
    "console-shell": None,
    "console-asset": None,
    "console-tags": Role.VIEWER,
    "console-events": Role.VIEWER,
    "console-trend": Role.VIEWER,
    "console-messages": Role.VIEWER,
}

#: a stream that saw no tick for this long sends a comment (proxies keep it open)
KEEPALIVE_S = 15.0
#: a stream ends after this long (or when its session expires): the page opens the next one
#: at once, and that request is checked again (a logout, a removed user or a new role ends
#: what a stream shows within this time)
STREAM_S = 60.0
#: the most tags one trend request names, and the most seconds it covers
MAX_TREND_TAGS = 200
WATCH_KEY: web.AppKey[LineWatch] = web.AppKey("chenxing.console", LineWatch)


def add_console(app: web.Application, gateway: Gateway) -> None:
    """Register the console's shell and data routes, and its tick while the app runs."""
    watch = LineWatch(gateway)
    app[WATCH_KEY] = watch
    assets = {path.relative_to(STATIC_DIR).as_posix(): path.read_bytes()  # missing: fails now
              for path in sorted(STATIC_DIR.rglob("*")) if path.suffix in _TYPES}
    shell = assets["index.html"]

    async def console_redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/console/")

    async def console_shell(request: web.Request) -> web.Response:
        return _static(shell, _TYPES[".html"])

    async def console_asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = assets.get(name)
        if body is None:
            raise web.HTTPNotFound()
        return _static(body, _TYPES[Path(name).suffix])

    async def console_tags(request: web.Request) -> web.Response:
        return web.json_response(text=_dumps(watch.catalog_rows()), headers=_NO_STORE)

    async def console_trend(request: web.Request) -> web.Response:
        return web.json_response(text=_dumps(_trend(watch, request)), headers=_NO_STORE)

    async def console_messages(request: web.Request) -> web.Response:
        since = _int_param(request, "since", 0, 0, 2**62)
        text = request.query.get("filter", "")[:200]
        body = {"seq": watch.messages.seq, "messages": watch.messages.since(since, text)}
        return web.json_response(text=_dumps(body), headers=_NO_STORE)

    async def console_events(request: web.Request) -> web.StreamResponse:
        return await _stream(watch, request)

    r = app.router
    r.add_get("/console", console_redirect, name="console-redirect")
    r.add_get("/console/", console_shell, name="console-shell")
    r.add_get("/console/{name:.+}", console_asset, name="console-asset")
    r.add_get("/api/console/tags", console_tags, name="console-tags")
    r.add_get("/api/console/events", console_events, name="console-events")
    r.add_get("/api/console/trend", console_trend, name="console-trend")
    r.add_get("/api/console/messages", console_messages, name="console-messages")
    app.cleanup_ctx.append(_ticking(watch))
    app.on_shutdown.append(_close(watch))

_NO_STORE = {"Cache-Control": "no-store"}


def _dumps(body: object) -> str:
    return json.dumps(body, allow_nan=False, default=str)


def _static(body: bytes, content_type: str) -> web.Response:
    return web.Response(body=body, headers={"Content-Type": content_type,
                                            "Cache-Control": "no-cache", **SECURITY_HEADERS})


def _ticking(watch: LineWatch) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(watch.run(), name="console-tick")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx


def _close(watch: LineWatch) -> Callable[[web.Application], Awaitable[None]]:
    async def close(app: web.Application) -> None:
        watch.closing.set()  # open streams end now, not at the server's shutdown timeout

    return close


def _int_param(request: web.Request, key: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiRefused(400, "bad_field", f"{key!r} must be a whole number") from None
    if not low <= value <= high:
        raise ApiRefused(400, "bad_field", f"{key!r} must be from {low} to {high}")
    return value


def _trend(watch: LineWatch, request: web.Request) -> dict[str, object]:
    catalog = watch.gateway.catalog
    paths = request.query.getall("tag", [])
    if not paths or len(paths) > MAX_TREND_TAGS:
        raise ApiRefused(400, "bad_field", f"name 1 to {MAX_TREND_TAGS} tags: ?tag=a&tag=b")
    ids = []
    for path in paths:
        info = catalog.get(path)
        if info is None:
            raise ApiRefused(404, "unknown_tag", f"no tag {path[:200]!r}")
        ids.append(info.id)
    ring = watch.recording_trends()
    span = ring.slots * TICK_S
    seconds = _int_param(request, "seconds", int(span), 1, 86_400)
    points = _int_param(request, "points", 0, 0, 10_000)
    newest = ring.newest_ms()
    trend = ring.trend(ids, newest - seconds * 1000 if newest else None, points or None)
    return {"ts": trend.ts_ms, "tags": paths, "v": trend.values, "q": trend.quality,
            "tick_s": TICK_S}


async def _stream(watch: LineWatch, request: web.Request) -> web.StreamResponse:
    """``text/event-stream`` until the browser goes, the gateway stops or :data:`STREAM_S`
    (or the session) is over."""
    since = _int_param(request, "since", 0, 0, 2**62)
    catalog_version = _int_param(request, "catalog", watch.catalog_version, 0, 2**62)
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-store",
        "X-Accel-Buffering": "no", **SECURITY_HEADERS})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STREAM_S
    session = principal_of(request).session
    if session is not None:  # Sessions keeps time.monotonic(), the loop's clock
        deadline = min(deadline, session.expires_at)
    await response.prepare(request)
    await response.write(b"retry: 2000\n\n")
    watch.recording_trends()
    watch.streams += 1
    try:
        while not watch.closing.is_set() and loop.time() < deadline:
            if not await watch.next_tick(KEEPALIVE_S):
                if watch.closing.is_set():
                    break
                await response.write(b": keep-alive\n\n")
                continue
            parts = [f"event: status\ndata: {watch.status_json}\n\n"]
            if watch.catalog_version != catalog_version:
                catalog_version = watch.catalog_version
                parts.append(f"event: catalog\ndata: {catalog_version}\n\n")
            else:
                rows = watch.tag_rows(since)
                if rows["rows"]:
                    parts.append(f"event: tags\ndata: {_dumps(rows)}\n\n")
            since = watch.seq
            await response.write("".join(parts).encode())
    except ConnectionResetError:  # the browser went away
        pass
    finally:
        watch.streams -= 1
    return response
