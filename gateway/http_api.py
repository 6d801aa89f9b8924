"""Local HTTP API: ``/healthz`` (JSON), ``/metrics`` (Prometheus), ``/api/tags`` (latest values),
and the status page (``/``, ``/api/status``: :mod:`gateway.status_page`). GET only.

Bound to 127.0.0.1 by default. When bound elsewhere a bearer token is required
(the config refuses a non-loopback bind without one); only the page's static shell is
served without it. Without a token, requests must name a loopback host (DNS rebinding).
Host names and the token are checked by :mod:`gateway.http_guard`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web

from gateway import __version__
from gateway.config.secrets import resolve_secret
from gateway.http_firmware import add_firmware_route
from gateway.http_guard import ProtocolErrorLog, RequestGuard
from gateway.metrics import CONTENT_TYPE, render
from gateway.status_page import PUBLIC_ROUTES, add_status_page
from gateway.types import QUALITY_NAMES, now_ns

if TYPE_CHECKING:
    from gateway.runtime.gateway import Gateway

log = logging.getLogger(__name__)


class HttpApi:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        cfg = gateway.config.http
        self._token: str | None = None
        if cfg.token is not None:
            self._token = resolve_secret(cfg.token, gateway.config_dir)
        guard = RequestGuard(self._token, PUBLIC_ROUTES)
        app = web.Application(middlewares=[guard.middleware])
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/api/tags", self.tags)
        add_status_page(app, gateway)  # GET / (the shell) and /api/status
        add_firmware_route(app, gateway)  # POST /api/firmware/{device} (gateway/http_firmware.py)
        self._runner = web.AppRunner(
            app, access_log=None, logger=ProtocolErrorLog(logging.getLogger("aiohttp.server")))

    async def start(self) -> int:
        cfg = self.gateway.config.http
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.bind, cfg.port)
        await site.start()
        addresses = self._runner.addresses  # the bound port, when port 0 asked for a free one
        port = addresses[0][1] if addresses else cfg.port
        log.info("local API on http://%s:%d (status page /, /healthz, /metrics)", cfg.bind, port)
        return int(port)

    async def stop(self) -> None:
        await self._runner.cleanup()

    def health(self) -> tuple[bool, dict[str, object]]:
        gw = self.gateway
        devices = {}
        for name, runner in gw.runners.items():
            s = runner.stats
            devices[name] = {
                "state": s.state.value,
                "since_ns": s.since_ns,
                "last_error": s.last_error,
                "samples_read": s.samples_read,
                "errors": dict(runner.driver.errors) if runner.driver else {},
            }
        nb = gw.northbound
        broker: dict[str, object] = {"connected": False}
        outbox: dict[str, object] = {}
        if nb is not None:
            broker = {
                "url": nb.link.url,
                "connected": nb.link.connected.is_set(),
                "last_error": nb.link.last_error,
                "disconnects": nb.link.disconnects,
            }
            st = nb.outbox.stats()
            outbox = {
                "queued": st.queued,
                "inflight": st.inflight,
                "dropped": st.dropped,
                "backlog": st.backlog,
                "bytes": st.bytes,
                "oldest_age_s": round(st.oldest_age_s, 3),
            }
        healthy = bool(broker["connected"]) and all(d["state"] == "up" for d in devices.values())
        body: dict[str, object] = {
            "status": "ok" if healthy else "degraded",
            "gateway": gw.config.gateway.id,
            "version": __version__,
            "uptime_s": round(gw.uptime_s, 3),
            "broker": broker,
            "devices": devices,
            "outbox": outbox,
        }
        models = getattr(gw, "models", None)
        if models is not None:
            body["models"] = models.health()  # per manifest: loaded, version, last error
        return healthy, body

    async def healthz(self, request: web.Request) -> web.Response:
        healthy, body = self.health()
        return web.json_response(body, status=200 if healthy else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=render(self.gateway), headers={"Content-Type": CONTENT_TYPE})

    async def tags(self, request: web.Request) -> web.Response:
        """Latest value, quality and timestamp of every tag (for ``tail`` and the status page)."""
        p = self.gateway.pipeline
        out = []
        for tag in self.gateway.catalog.tags:
            q = int(p.latest_quality[tag.id])
            value = p.latest(tag.id)
            out.append(
                {
                    "tag": tag.path,
                    "unit": tag.unit,
                    "value": value,
                    "quality": QUALITY_NAMES[q] if q < len(QUALITY_NAMES) else "none",
                    "ts_ns": int(p.latest_ns[tag.id]),
                }
            )
        return web.json_response({"now_ns": now_ns(), "tags": out})
