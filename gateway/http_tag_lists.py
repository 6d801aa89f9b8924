"""A device's tag list as CSV or XLSX through the config API (admin).

``GET /api/config/devices/{device}/tags.csv`` (or ``.xlsx``): the device's tags as the
config running has them (:mod:`gateway.tag_lists`). ``POST`` the same path with the file
as the body (``?version=N``, ``mode=merge`` (default: rows replace the tags of their name,
new names are added) or ``mode=replace`` (the file is the whole tag list), ``dry_run=1``):
every row is checked first and a file with bad rows is refused whole (422, ``problems``:
``{file, line: the row, key: the column, message}``), so nothing changes; a good one goes
through the one apply of every change, like any edit of the config API.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.access import Role
from gateway.errors import ApiRefused, ConfigError
from gateway.http_config import edited, expected_version, json_answer
from gateway.tag_lists import (
    CSV_TYPE,
    XLSX_TYPE,
    read_csv,
    read_xlsx,
    tags_of,
    write_csv,
    write_xlsx,
)

if TYPE_CHECKING:
    from gateway.http_config import ConfigRoutes

ROUTE_ROLES: dict[str, Role | None] = dict.fromkeys(
    ("config-tag-list", "config-tag-list-load"), Role.ADMIN)
#: the largest tag list file a request may carry
MAX_FILE_BYTES = 16 * 1024 * 1024
_FORMATS = ("csv", "xlsx")


class TagListRoutes:
    def __init__(self, config: ConfigRoutes) -> None:
        self.config = config

    def add_to(self, app: web.Application) -> None:
        path = "/api/config/devices/{device}/tags.{format:csv|xlsx}"
        app.router.add_get(path, self.export, name="config-tag-list")
        app.router.add_post(path, self.import_, name="config-tag-list-load")

    async def export(self, request: web.Request) -> web.Response:
        name, kind = request.match_info["device"], request.match_info["format"]
        running = await self.config.running()
        tags = edited(lambda: running.tags(name))
        if kind == "csv":
            data, ctype = await asyncio.to_thread(write_csv, tags), CSV_TYPE
        else:
            data, ctype = await asyncio.to_thread(write_xlsx, tags, name), XLSX_TYPE
        return web.Response(body=data, headers={
            "Content-Type": ctype, "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="{name}-tags.{kind}"',
            "ETag": f'"{running.version}"'})

    async def import_(self, request: web.Request) -> web.Response:
        name, kind = request.match_info["device"], request.match_info["format"]
        unknown = sorted(set(request.query) - {"version", "mode", "dry_run"})
        if unknown:
            raise ApiRefused(400, "bad_query", f"unknown parameter(s): "
                                               f"{', '.join(unknown)[:200]}")
        mode = request.query.get("mode", "merge")
        if mode not in ("merge", "replace"):
            raise ApiRefused(400, "bad_query", "mode: merge or replace")
        expected_version(request, {})  # asked before the file is read
        data = await _file(request)
        running = await self.config.running()
        device = edited(lambda: running.device(name))
        reg = self.config.gateway.drivers.get(device.get("protocol"))
        if reg is None:
            raise ApiRefused(422, "invalid", f"device {name} has no known protocol")
        file = f"{name}-tags.{kind}"
        try:
            rows = await asyncio.to_thread(read_csv if kind == "csv" else read_xlsx, data, file)
            tags = await asyncio.to_thread(tags_of, rows, device, reg.config, file)
        except ConfigError as exc:
            return json_answer(_refused(exc), 422)
        return await self.config.change(
            request, {}, lambda c: c.merge_tags(name, tags, replace=mode == "replace"))


async def _file(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_FILE_BYTES:
        raise ApiRefused(413, "too_large", f"a file of at most {MAX_FILE_BYTES >> 20} MiB")
    data = await request.content.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ApiRefused(413, "too_large", f"a file of at most {MAX_FILE_BYTES >> 20} MiB")
    if not data:
        raise ApiRefused(400, "empty", "send the file as the request's body")
    return data


def _refused(exc: ConfigError) -> dict[str, Any]:
    """The answer to a file with bad rows: the outcome ``invalid`` and every problem."""
    return {"outcome": "invalid", "reason": f"{len(exc.problems)} bad row(s) or cell(s): "
                                            "nothing changed",
            "problems": [{"file": p.file, "line": p.line, "key": p.path_text,
                          "message": p.message} for p in exc.problems]}
