"""The config API (admin): read the config running, change its devices and tags, apply a
whole text, roll back, read the versions; the schema and the protocols (viewer).

Every change becomes a new YAML text, made by splicing only the lines of the device or tag
it touches into the text running (:mod:`gateway.config.splice`: comments, order and
formatting elsewhere stay as the engineer wrote them), and goes through the one entry
point of every config change, :meth:`~gateway.runtime.config_apply.ConfigApplier.apply`:
optimistic locking on the version the edit was based on (body ``"version"``, query
``?version=`` or ``If-Match``), validation with file, line and key, connect test, apply,
watch, rollback, audit. ``dry_run`` (query or body) only validates and answers what the
change would do, with its diff. Answer: ``ApplyResult.as_dict()`` with 200 (applied,
unchanged, valid, rolled_back), 409 (conflict, refused, connect_failed) or 422 (invalid).
The shapes are in docs/config-api.md; the OpenAPI document in :mod:`gateway.http_openapi`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.access import Role
from gateway.config.schema import schema_dict
from gateway.config.splice import ConfigText
from gateway.config.store import unified_diff
from gateway.config.yaml_model import parse_yaml
from gateway.errors import ApiRefused, ConfigEditRefused, ConfigStoreError, ConfigVersionUnknown
from gateway.http_access import principal_of, read_json_object

if TYPE_CHECKING:
    from gateway.runtime.config_apply import ApplyResult, ConfigApplier
    from gateway.runtime.gateway import Gateway

#: the largest config text a request may carry (a 10,000-tag config is about 1.5 MB)
MAX_CONFIG_BYTES = 32 * 1024 * 1024
#: the largest device or tag list a request may carry
MAX_EDIT_BYTES = 8 * 1024 * 1024
#: HTTP status of each outcome of a change
STATUS = {"applied": 200, "unchanged": 200, "valid": 200, "rolled_back": 200,
          "invalid": 422, "conflict": 409, "refused": 409, "connect_failed": 409}
_EDIT_STATUS = {"not_found": 404, "exists": 409, "shape": 422}

ROUTE_ROLES: dict[str, Role | None] = {
    "config-schema": Role.VIEWER,
    "config-protocols": Role.VIEWER,
    **dict.fromkeys((
        "config-text", "config-devices", "config-device", "config-tags", "config-history",
        "config-version", "config-version-diff", "config-device-add", "config-device-replace",
        "config-device-remove", "config-tags-add", "config-tag-replace", "config-tag-remove",
        "config-apply", "config-rollback"), Role.ADMIN),
}


class ConfigRoutes:
    """The routes above, on one running gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    @property
    def live(self) -> ConfigApplier:
        return self.gateway.live

    def add_to(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/api/config", self.text, name="config-text")
        r.add_get("/api/config/schema", self.schema, name="config-schema")
        r.add_get("/api/config/protocols", self.protocols, name="config-protocols")
        r.add_get("/api/config/history", self.history, name="config-history")
        r.add_get("/api/config/versions/{n}", self.version, name="config-version")
        r.add_get("/api/config/versions/{n}/diff", self.version_diff, name="config-version-diff")
        r.add_post("/api/config/apply", self.apply, name="config-apply")
        r.add_post("/api/config/rollback", self.rollback, name="config-rollback")
        r.add_get("/api/config/devices", self.devices, name="config-devices")
        r.add_post("/api/config/devices", self.add_device, name="config-device-add")
        r.add_get("/api/config/devices/{device}", self.device, name="config-device")
        r.add_put("/api/config/devices/{device}", self.replace_device,
                  name="config-device-replace")
        r.add_delete("/api/config/devices/{device}", self.remove_device,
                     name="config-device-remove")
        r.add_get("/api/config/devices/{device}/tags", self.tags, name="config-tags")
        r.add_post("/api/config/devices/{device}/tags", self.add_tags, name="config-tags-add")
        r.add_put("/api/config/devices/{device}/tags/{tag:.+}", self.replace_tag,
                  name="config-tag-replace")
        r.add_delete("/api/config/devices/{device}/tags/{tag:.+}", self.remove_tag,
                     name="config-tag-remove")

    # --- reading ----------------------------------------------------------------------------
    async def text(self, request: web.Request) -> web.Response:
        live = self.live
        current = live.store.current()
        return json_answer({"version": live.version, "sha256": current.sha256 if current else None,
                            "path": live.file_name, "text": live.text}, version=live.version)

    async def schema(self, request: web.Request) -> web.Response:
        return json_answer(await asyncio.to_thread(schema_dict, self.gateway.drivers))

    async def protocols(self, request: web.Request) -> web.Response:
        out = []
        for reg in self.gateway.drivers.registrations:
            doc = (reg.config.__doc__ or "").strip().splitlines()
            for protocol in reg.protocols:
                out.append({"protocol": protocol, "family": reg.name,
                            "title": doc[0] if doc else protocol,
                            "browse": "browse" in reg.discovery,
                            "scan": "scan" in reg.discovery,
                            "writes": reg.writes,
                            "fields": reg.config.model_json_schema(mode="validation")})
        return json_answer({"protocols": out})

    async def history(self, request: web.Request) -> web.Response:
        _only_query(request, {"last"})
        last = _whole(request.query.get("last", "50"), "last", 1, 10_000)
        records = await asyncio.to_thread(self.live.store.history, last)
        return json_answer({"version": self.live.version,
                            "versions": [r.as_dict() for r in reversed(records)]})

    async def version(self, request: web.Request) -> web.Response:
        n = _whole(request.match_info["n"], "version", 1, 2**31)
        store = self.live.store
        record, text = await asyncio.to_thread(_stored, lambda: (store.get(n), store.text(n)))
        return json_answer({**record.as_dict(), "text": text})

    async def version_diff(self, request: web.Request) -> web.Response:
        n = _whole(request.match_info["n"], "version", 1, 2**31)
        diff = await asyncio.to_thread(_stored, lambda: self.live.store.diff(n))
        return json_answer({"version": n, "diff": diff})

    async def devices(self, request: web.Request) -> web.Response:
        config = await self.running()
        out = []
        for device in config.devices():
            tags = device.get("tags")
            out.append({**{k: v for k, v in device.items() if k != "tags"},
                        "enabled": device.get("enabled", True),
                        "tags": len(tags) if isinstance(tags, list) else 0})
        return json_answer({"version": config.version, "devices": out}, version=config.version)

    async def device(self, request: web.Request) -> web.Response:
        config = await self.running()
        device = edited(lambda: config.device(request.match_info["device"]))
        return json_answer({"version": config.version, "device": device},
                           version=config.version)

    async def tags(self, request: web.Request) -> web.Response:
        config = await self.running()
        tags = edited(lambda: config.tags(request.match_info["device"]))
        return json_answer({"version": config.version, "tags": tags}, version=config.version)

    # --- changing ---------------------------------------------------------------------------
    async def apply(self, request: web.Request) -> web.Response:
        body = await self._body(request, {"text"}, MAX_CONFIG_BYTES)
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiRefused(400, "bad_field", "'text' must be the whole config as YAML text")
        return await self.change(request, body, lambda _: text)

    async def rollback(self, request: web.Request) -> web.Response:
        body = await self._body(request, {"to"})
        to = body.get("to")
        if to is not None and (not isinstance(to, int) or isinstance(to, bool) or to < 1):
            raise ApiRefused(400, "bad_field", "'to' must be a version number (or absent: "
                                               "the parent of the version running)")
        expected = expected_version(request, body)
        if not dry_run(request, body):
            result = await self.live.rollback(to, principal_of(request).name, expected, "api")
            return answer(result)
        store = self.live.store
        target = to if to is not None else await asyncio.to_thread(
            _stored, lambda: _parent_of_running(self.live))
        text = await asyncio.to_thread(_stored, lambda: store.text(target))
        return await self.change(request, body, lambda _: text)

    async def add_device(self, request: web.Request) -> web.Response:
        body = await self._body(request, {"device"})
        device = _mapping(body, "device")
        return await self.change(request, body, lambda c: c.add_device(device))

    async def replace_device(self, request: web.Request) -> web.Response:
        body = await self._body(request, {"device"})
        device = _mapping(body, "device")
        name = request.match_info["device"]
        return await self.change(request, body, lambda c: c.replace_device(name, device))

    async def remove_device(self, request: web.Request) -> web.Response:
        body = await self._body(request, set(), optional=True)
        name = request.match_info["device"]
        return await self.change(request, body, lambda c: c.remove_device(name))

    async def add_tags(self, request: web.Request) -> web.Response:
        body = await self._body(request, {"tags"})
        tags = body.get("tags")
        if not isinstance(tags, list) or not tags or not all(isinstance(t, dict) for t in tags):
            raise ApiRefused(400, "bad_field", "'tags' must be a non-empty list of tag objects")
        name = request.match_info["device"]
        return await self.change(request, body, lambda c: c.add_tags(name, tags))

    async def replace_tag(self, request: web.Request) -> web.Response:
        body = await self._body(request, {"tag"})
        tag = _mapping(body, "tag")
        device, name = request.match_info["device"], request.match_info["tag"]
        return await self.change(request, body, lambda c: c.replace_tag(device, name, tag))

    async def remove_tag(self, request: web.Request) -> web.Response:
        body = await self._body(request, set(), optional=True)
        device, name = request.match_info["device"], request.match_info["tag"]
        return await self.change(request, body, lambda c: c.remove_tag(device, name))

    async def change(self, request: web.Request, body: Mapping[str, Any],
                     edit: Callable[[ConfigText], str]) -> web.Response:
        """Make the new text with ``edit`` from the version running, then apply it (or, for
        a dry run, validate it) as the caller's change based on the version they name."""
        who = principal_of(request)
        expected = expected_version(request, body)
        dry = dry_run(request, body)
        live = self.live
        if expected != live.version:  # refused as a conflict, whatever the edit
            text = live.text
        else:
            running = await self.running(lines=True)
            text = await asyncio.to_thread(edited, lambda: edit(running))
            if len(text.encode()) > MAX_CONFIG_BYTES:
                raise ApiRefused(413, "too_large", f"the config would pass {MAX_CONFIG_BYTES} "
                                                   "bytes")
        if not dry:
            return answer(await live.apply(text, who.name, expected, "api"))
        base = live.text
        result = await live.preview(text, expected)
        extra = {"diff": await asyncio.to_thread(
            unified_diff, base, text, f"v{live.version}", "preview")}
        return answer(result, extra)

    # --- helpers ----------------------------------------------------------------------------
    async def running(self, lines: bool = False) -> ConfigText:
        """The version running, as read by the applier (or read now). ``lines``: its line
        map read now if it was left for later, under the applier's lock (the applier's
        own partial reads look at it from a worker thread too); so is its data when the
        gateway started without it."""
        live = self.live
        document, version = live.document, live.version  # taken together: no await between
        if document is not None:
            if lines or document.data is None:  # read now if left for later
                async with live.lock:
                    data = await asyncio.to_thread(live.read_data, document)
                    if lines:
                        await asyncio.to_thread(len, document.lines)
                return ConfigText(document.text, data, document.lines, version)
            return ConfigText(document.text, document.data, document.lines, version)
        text, name = live.text, live.file_name
        parsed = await asyncio.to_thread(parse_yaml, text, name)
        if lines:
            await asyncio.to_thread(len, parsed.lines)
        return ConfigText(text, parsed.data, parsed.lines, version)

    async def _body(self, request: web.Request, keys: set[str], max_bytes: int = MAX_EDIT_BYTES,
                    optional: bool = False) -> dict[str, Any]:
        """The JSON body: ``keys``, ``version`` and ``dry_run``, nothing else (400)."""
        if optional and not request.can_read_body:
            return {}
        body = await read_json_object(request, max_bytes)
        unknown = sorted(set(body) - keys - {"version", "dry_run"})
        if unknown:
            raise ApiRefused(400, "bad_field", f"unknown field(s): {', '.join(unknown)[:200]}")
        return body


def answer(result: ApplyResult, extra: Mapping[str, Any] | None = None) -> web.Response:
    """A change's result as the answer: ``ApplyResult.as_dict()`` with its HTTP status."""
    body = {**result.as_dict(), **(extra or {})}
    return json_answer(body, STATUS.get(result.outcome, 409))


def expected_version(request: web.Request, body: Mapping[str, Any]) -> int:
    """The version a change was based on: body ``version``, query ``version`` or
    ``If-Match`` (400 when none, or not a whole number)."""
    value: object = body.get("version")
    if value is None:
        value = request.query.get("version")
    if value is None:
        value = request.headers.get("If-Match", "").strip().strip('"') or None
    if value is None:
        raise ApiRefused(400, "version_required", "say which version the change is based on: "
                         "\"version\": N in the body, ?version=N or If-Match: \"N\" (GET "
                         "/api/config tells the version running)")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ApiRefused(400, "bad_field", "'version' must be a whole number")
    return _whole(str(value), "version", 1, 2**31)


def dry_run(request: web.Request, body: Mapping[str, Any]) -> bool:
    flag = body.get("dry_run", request.query.get("dry_run", False))
    if isinstance(flag, bool):
        return flag
    if flag in ("1", "true", "yes"):
        return True
    if flag in ("0", "false", "no", ""):
        return False
    raise ApiRefused(400, "bad_field", "'dry_run' must be true or false (1 or 0)")


def _whole(text: str, what: str, low: int, high: int) -> int:
    if not text.isdigit() or not low <= int(text) <= high:
        raise ApiRefused(400, "bad_field", f"{what}: a whole number from {low} to {high}")
    return int(text)


def _only_query(request: web.Request, keys: set[str]) -> None:
    unknown = sorted(set(request.query) - keys)
    if unknown:
        raise ApiRefused(400, "bad_query", f"unknown parameter(s): {', '.join(unknown)[:200]}")


def _mapping(body: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if not isinstance(value, dict) or not value:
        raise ApiRefused(400, "bad_field", f"{key!r} must be an object (as in the YAML file)")
    return value


def edited(make: Callable[[], Any]) -> Any:
    """``make()``, its refusal as the API's (404 no such part, 409 taken, 422 shape)."""
    try:
        return make()
    except ConfigEditRefused as exc:
        raise ApiRefused(_EDIT_STATUS.get(exc.reason, 422), exc.reason, exc.message) from None
    except RecursionError:  # a value nested a thousand deep: no config holds one
        raise ApiRefused(400, "too_deep", "a value is nested too deeply") from None


def _stored(read: Callable[[], Any]) -> Any:
    """``read()`` from the store, a version it lacks as 404."""
    try:
        return read()
    except ConfigVersionUnknown as exc:
        raise ApiRefused(404, "no_version", str(exc)) from None
    except ConfigStoreError as exc:
        raise ApiRefused(409, "store", str(exc)) from None


def _parent_of_running(live: ConfigApplier) -> int:
    current = live.store.current()
    if current is None or current.parent is None:
        raise ConfigStoreError("the version running has no parent to go back to")
    return current.parent


def json_answer(body: Any, status: int = 200, version: int | None = None) -> web.Response:
    """``body`` as JSON, never cached; ``version``: the config version it shows, as its
    ``ETag`` (to send back as ``If-Match``)."""
    headers = {"Cache-Control": "no-store"}
    if version is not None:
        headers["ETag"] = f'"{version}"'
    return web.json_response(body, status=status, dumps=_dumps, headers=headers)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)  # a date in YAML data: as text
