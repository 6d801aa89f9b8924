"""Local HTTP API: the status page (``/``, ``/api/status``: :mod:`gateway.status_page`), the
web console (``/console/``: :mod:`gateway.console`),
``/healthz`` (JSON), ``/metrics`` (Prometheus), ``/api/tags`` (latest values), tag writes
(:mod:`gateway.http_writes`), firmware updates (:mod:`gateway.http_firmware`), logins and
users (:mod:`gateway.http_users`), the audit trail (:mod:`gateway.http_audit`), the config
API (:mod:`gateway.http_config`, :mod:`gateway.http_tag_lists`, :mod:`gateway.http_discover`)
and its OpenAPI document (:mod:`gateway.http_openapi`).

Who may call what is :data:`ROUTE_ROLES` (deny by default), enforced by
:mod:`gateway.http_access`: viewers read, operators also write tags and update firmware,
admins also manage users and read the audit trail. Bound to 127.0.0.1 by default, where
a caller on this machine may act without a login (``http.auth.anonymous_loopback``);
elsewhere nothing works without a login (or the shared machine token). HTTPS with
``http.tls``. docs/security.md has the whole picture.
"""

from __future__ import annotations

import logging
import ssl
from typing import TYPE_CHECKING

from aiohttp import web

from gateway import __version__
from gateway.access import LoginLimiter, PasswordPolicy, Role, Sessions, UserStore
from gateway.config.secrets import resolve_secret
from gateway.config.types import is_loopback
from gateway.console import ROUTE_ROLES as CONSOLE_ROLES
from gateway.console import add_console
from gateway.http_access import PUBLIC, AccessGuard, AccessPolicy
from gateway.http_audit import ROUTE_ROLES as AUDIT_ROLES
from gateway.http_audit import add_audit_route
from gateway.http_config import ROUTE_ROLES as CONFIG_ROLES
from gateway.http_config import ConfigRoutes
from gateway.http_discover import ROUTE_ROLES as DISCOVER_ROLES
from gateway.http_discover import DiscoveryRoutes
from gateway.http_firmware import add_firmware_route
from gateway.http_guard import ProtocolErrorLog
from gateway.http_openapi import ROUTE_ROLES as OPENAPI_ROLES
from gateway.http_openapi import add_openapi_route
from gateway.http_tag_lists import ROUTE_ROLES as TAG_LIST_ROLES
from gateway.http_tag_lists import TagListRoutes
from gateway.http_users import ROUTE_ROLES as USER_ROLES
from gateway.http_users import UserRoutes
from gateway.http_writes import ROUTE_ROLES as WRITE_ROLES
from gateway.http_writes import add_writes_route
from gateway.metrics import CONTENT_TYPE, render_async
from gateway.status_page import PUBLIC_ROUTES, add_status_page
from gateway.types import QUALITY_NAMES, now_ns

if TYPE_CHECKING:
    from gateway.runtime.gateway import Gateway

log = logging.getLogger(__name__)

#: every route's least role (None: public). A route missing here is refused to everyone.
ROUTE_ROLES: dict[str, Role | None] = {
    **dict.fromkeys(PUBLIC_ROUTES, PUBLIC),  # the status page's shell: no data in it
    "healthz": Role.VIEWER,
    "metrics": Role.VIEWER,
    "api-tags": Role.VIEWER,
    "api-status": Role.VIEWER,
    "firmware-upload": Role.OPERATOR,
    **WRITE_ROLES,
    **USER_ROLES,
    **AUDIT_ROLES,
    **CONFIG_ROLES,  # the config API: admin; its schema and protocols: viewer
    **TAG_LIST_ROLES,
    **DISCOVER_ROLES,
    **OPENAPI_ROLES,
    **CONSOLE_ROLES,
}


class HttpApi:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        cfg = gateway.config.http
        token = None if cfg.token is None else resolve_secret(cfg.token, gateway.config_dir)
        auth = cfg.auth
        self.users = UserStore(cfg.resolved_users_file(gateway.config.gateway.state_dir))
        self.sessions = Sessions(auth.session_ttl)
        self.login_limiter = LoginLimiter(auth.max_failed_logins, auth.failed_login_window)
        policy = AccessPolicy(
            loopback_bind=is_loopback(cfg.bind), token=token,
            token_role=Role.named(cfg.token_role),
            anonymous_loopback=None if auth.anonymous_loopback == "none"
            else Role.named(auth.anonymous_loopback))
        self.guard = AccessGuard(policy, ROUTE_ROLES, self.sessions, self.users,
                                 gateway.audit.record)
        app = self.app = web.Application(middlewares=[self.guard.middleware])
        app.router.add_get("/healthz", self.healthz, name="healthz")
        app.router.add_get("/metrics", self.metrics, name="metrics")
        app.router.add_get("/api/tags", self.tags, name="api-tags")
        add_status_page(app, gateway)  # GET / (the shell) and /api/status
        add_console(app, gateway)  # /console/ and /api/console/* (gateway/console/)
        add_firmware_route(app, gateway)  # POST /api/firmware/{device} (gateway/http_firmware.py)
        add_writes_route(app, gateway)  # POST /api/writes
        self.user_routes = UserRoutes(self.users, self.sessions, self.login_limiter,
                                      PasswordPolicy(auth.min_password_length),
                                      gateway.audit.record)
        self.user_routes.add_to(app)
        add_audit_route(app, gateway.config.audit_path(), gateway.config.audit.files)
        config_routes = ConfigRoutes(gateway)
        config_routes.add_to(app)  # /api/config... (gateway/http_config.py)
        TagListRoutes(config_routes).add_to(app)  # tags.csv, tags.xlsx
        DiscoveryRoutes(gateway).add_to(app)  # test-connection, browse, scan
        add_openapi_route(app, ROUTE_ROLES)  # GET /api/openapi.json
        self._ssl = _server_tls(gateway) if cfg.tls is not None else None
        self._runner = web.AppRunner(
            app, access_log=None, logger=ProtocolErrorLog(logging.getLogger("aiohttp.server")))

    async def start(self) -> int:
        cfg = self.gateway.config.http
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.bind, cfg.port, ssl_context=self._ssl)
        await site.start()
        addresses = self._runner.addresses  # the bound port, when port 0 asked for a free one
        port = addresses[0][1] if addresses else cfg.port
        scheme = "https" if self._ssl is not None else "http"
        log.info("local API on %s://%s:%d (status page /, /healthz, /metrics)", scheme, cfg.bind,
                 port)
        if self._ssl is None and not is_loopback(cfg.bind):
            log.warning("the local API is bound to %s without http.tls: passwords and session "
                        "tokens cross the network in clear text", cfg.bind)
        return int(port)

    async def stop(self) -> None:
        await self._runner.cleanup()

    def access_counts(self) -> dict[str, int]:
        """Requests refused, by reason (``/metrics``: ``chenxing_http_refused_total``)."""
        return {"unauthenticated": self.guard.unauthenticated, "forbidden": self.guard.denied,
                "login_failed": self.user_routes.failed_logins,
                "login_locked": self.login_limiter.refused}

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
        body = await render_async(self.gateway)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

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


def _server_tls(gateway: Gateway) -> ssl.SSLContext:
    """The server side of ``http.tls``: TLS 1.2 or newer, the gateway's certificate."""
    tls = gateway.config.http.tls
    assert tls is not None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(tls.certificate), str(tls.key))
    except (OSError, ssl.SSLError) as exc:
        raise OSError(f"http.tls: cannot load the certificate {tls.certificate} and key "
                      f"{tls.key}: {exc}") from exc
    return context
