"""The catalog's HTTP endpoint (aiohttp): the public export only.

``GET /catalog`` (JSON), ``/catalog.csv``, ``/catalog.aas.json`` (AAS). Loopback by
default; the same request guard as the gateway's local API (strict Host parsing, a
bearer token when configured, required off loopback)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from brain_reader.catalog import Catalog
from brain_reader.catalog_export import export
from brain_reader.config import IngestHttpConfig
from gateway.http_guard import ProtocolErrorLog, RequestGuard

log = logging.getLogger(__name__)

ROUTES = {"/catalog": ("json", "application/json"), "/catalog.csv": ("csv", "text/csv"),
          "/catalog.aas.json": ("aas", "application/json")}  # fmt: skip


class CatalogServer:
    def __init__(self, catalog: Catalog, config: IngestHttpConfig, token: str | None) -> None:
        self.catalog = catalog
        self.config = config
        self.app = web.Application(middlewares=[RequestGuard(token).middleware])
        for path in ROUTES:
            self.app.router.add_get(path, self._export)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def _export(self, request: web.Request) -> web.Response:
        fmt, content_type = ROUTES[request.path]
        # SQLite and the AAS serializer block: off the event loop, on a connection of its own
        body = await asyncio.get_running_loop().run_in_executor(None, self._read, fmt)
        return web.Response(text=body, content_type=content_type, charset="utf-8")

    def _read(self, fmt: str) -> str:
        catalog = Catalog(self.catalog.path, self.catalog.grading)
        try:
            return export(catalog, fmt)
        finally:
            catalog.close()

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None,
                                     logger=ProtocolErrorLog(log, {}))  # fmt: skip
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.bind, self.config.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.config.port
        log.info("catalog endpoint on http://%s:%s/catalog", self.config.bind, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
