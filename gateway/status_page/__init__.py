"""The local status page: a static shell (HTML, CSS, JS shipped in this package) at ``/``
that polls ``GET /api/status`` and ``GET /api/tags`` about once a second.

Only the shell's three files are served without the bearer token (they hold no data);
every data endpoint stays behind the API's token rule. Everything is GET: the page
cannot change anything on the gateway.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.status_page.snapshot import status_snapshot

if TYPE_CHECKING:
    from gateway.runtime.gateway import Gateway

ASSET_DIR = Path(__file__).resolve().parent

#: the page's static files: URL path -> (file, content type)
ASSETS: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/status.css": ("status.css", "text/css; charset=utf-8"),
    "/status.js": ("status.js", "text/javascript; charset=utf-8"),
}

#: names of the routes served without a token (the shell: no data in it)
PUBLIC_ROUTES = frozenset(f"status-page-asset-{file.split('.')[-1]}" for file, _ in ASSETS.values())

#: no external assets, no framing, no inline script: the page runs offline and cannot be
#: turned into something else by a tag name or an error message
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def add_status_page(app: web.Application, gateway: Gateway) -> None:
    """Register the shell's files and ``GET /api/status`` on the local API's app."""
    for url, (file, content_type) in ASSETS.items():
        body = (ASSET_DIR / file).read_bytes()  # a missing file fails at start-up, not later
        app.router.add_get(url, _asset_handler(body, content_type),
                           name=f"status-page-asset-{file.split('.')[-1]}")

    async def api_status(request: web.Request) -> web.Response:
        return web.json_response(status_snapshot(gateway),
                                 headers={"Cache-Control": "no-store", **SECURITY_HEADERS})

    app.router.add_get("/api/status", api_status, name="api-status")


def _asset_handler(
    body: bytes, content_type: str
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": content_type,
                                                "Cache-Control": "no-cache", **SECURITY_HEADERS})

    return handler
