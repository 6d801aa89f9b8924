"""``GET /api/openapi.json`` (viewer): the OpenAPI 3.1 document of every ``/api`` route of
the local API.

Written here by hand, route by route, so that it says what each route takes and answers
(a test checks that it names every route the API registers and nothing else, and
validates it with openapi-spec-validator). The role each route needs is in
``x-role``. docs/config-api.md tells the config routes in words.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import __version__
from gateway.access import Role

ROUTE_ROLES: dict[str, Role | None] = {"openapi": Role.VIEWER}

_OBJECT: dict[str, Any] = {"type": "object"}
_ERROR = {"type": "object", "required": ["error", "code"],
          "properties": {"error": {"type": "string"}, "code": {"type": "string"}}}
_PROBLEM = {"type": "object", "properties": {
    "file": {"type": "string"}, "line": {"type": "integer"}, "key": {"type": "string"},
    "message": {"type": "string"}}}
_RESULT = {"type": "object", "required": ["outcome"], "properties": {
    "outcome": {"enum": ["applied", "unchanged", "valid", "invalid", "conflict", "refused",
                         "connect_failed", "rolled_back"]},
    "version": {"type": ["integer", "null"]}, "previous": {"type": ["integer", "null"]},
    "summary": {"type": "string"}, "reason": {"type": ["string", "null"]},
    "problems": {"type": "array", "items": {"$ref": "#/components/schemas/Problem"}},
    "devices": {"type": "object", "additionalProperties": {"type": "string"}},
    "rolled_back": {"type": ["integer", "null"]}, "seconds": {"type": "number"},
    "stages": {"type": "object", "additionalProperties": {"type": "number"}},
    "diff": {"type": "string", "description": "a dry run: the unified diff of the change"}}}
_RECORD = {"type": "object", "properties": {
    "version": {"type": "integer"}, "time": {"type": "string"}, "author": {"type": "string"},
    "source": {"type": "string"}, "parent": {"type": ["integer", "null"]},
    "sha256": {"type": "string"}, "summary": {"type": "string"}, "status": {"type": "string"},
    "reason": {"type": ["string", "null"]}, "restores": {"type": ["integer", "null"]}}}
_VERSION = {"type": "integer", "minimum": 1,
            "description": "the version the change is based on (or ?version=N, If-Match)"}
_DRY = {"type": "boolean", "description": "only validate; answer with the diff"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _ok(schema: dict[str, Any], what: str = "done") -> dict[str, Any]:
    return {"200": {"description": what, **_json(schema)}}


def _fields(**fields: Any) -> dict[str, Any]:
    return {"type": "object", "properties": fields}


_LIST_FILE = {"200": {"description": "the tag list", "content": {
    "text/csv": {"schema": {"type": "string"}},
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
        "schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}}}


def _change(fields: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": required,
            "properties": {**fields, "version": _VERSION, "dry_run": _DRY}}


_CHANGED = {"200": {"description": "applied, unchanged, valid (dry run) or rolled back",
                    **_json(_ref("ApplyResult"))},
            "409": {"description": "conflict (another version runs), refused, connect_failed",
                    **_json(_ref("ApplyResult"))},
            "422": {"description": "invalid: problems with file, line and key",
                    **_json(_ref("ApplyResult"))}}

#: (method, path, route name, summary, request body schema or None, answers)
_ROUTES: list[tuple[str, str, str, str, dict[str, Any] | None, dict[str, Any]]] = [
    ("get", "/api/openapi.json", "openapi", "This document", None, {}),
    ("get", "/api/tags", "api-tags", "Latest value, quality and time of every tag", None, {}),
    ("get", "/api/status", "api-status", "The status page's data", None, {}),
    ("get", "/api/console/tags", "console-tags", "The web console's tag list: every tag with "
     "its latest figures and last good value (docs/console.md)", None, {}),
    ("get", "/api/console/events", "console-events", "The web console's server-sent events "
     "(status each second, changed tags; ?since=seq)", None,
     {"200": {"description": "a text/event-stream",
              "content": {"text/event-stream": {"schema": {"type": "string"}}}}}),
    ("get", "/api/console/trend", "console-trend", "The trend ring of some tags "
     "(?tag=a&tag=b&seconds=300&points=N)", None, {"404": "no such tag"}),
    ("get", "/api/console/messages", "console-messages", "The last messages published, "
     "decoded (?since=N&filter=text)", None, {}),
    ("post", "/api/writes", "writes", "Write tags (the brain's checks)",
     {"type": "object", "properties": {"writes": {"type": "array"}, "id": {"type": "string"}}},
     {"422": "rejected", "502": "a device failed the write"}),
    ("post", "/api/firmware/{device}", "firmware-upload", "Update an MCU node's firmware",
     None, {}),
    ("post", "/api/login", "login", "Log in: a session token",
     {"type": "object", "required": ["user", "password"],
      "properties": {"user": {"type": "string"}, "password": {"type": "string"}}}, {}),
    ("post", "/api/logout", "logout", "End the session", None, {}),
    ("get", "/api/me", "me", "Who is asking", None, {}),
    ("get", "/api/users", "users-list", "The users", None, {}),
    ("post", "/api/users", "users-add", "Add a user", _OBJECT, {}),
    ("delete", "/api/users/{name}", "users-remove", "Remove a user", None, {}),
    ("put", "/api/users/{name}/role", "users-role", "Set a user's role", _OBJECT, {}),
    ("put", "/api/users/{name}/password", "users-password", "Set a password", _OBJECT, {}),
    ("get", "/api/audit", "audit", "The audit trail, newest first", None, {}),
    ("get", "/api/config", "config-text", "The config running: version, sha256, text", None,
     _ok(_fields(version={"type": "integer"}, sha256={"type": "string"},
                 path={"type": "string"}, text={"type": "string"}))),
    ("get", "/api/config/schema", "config-schema", "The config's JSON Schema", None, {}),
    ("get", "/api/config/protocols", "config-protocols",
     "The protocols: title, browse, scan, writes, fields (JSON Schema)", None, {}),
    ("get", "/api/config/history", "config-history", "The versions kept, newest first "
     "(?last=N)", None, _ok(_fields(version={"type": "integer"},
                                    versions={"type": "array", "items": _ref("Version")}))),
    ("get", "/api/config/versions/{n}", "config-version", "One version's record and text",
     None, {"404": "no such version"}),
    ("get", "/api/config/versions/{n}/diff", "config-version-diff",
     "One version's diff to its parent", None,
     {**_ok(_fields(version={"type": "integer"}, diff={"type": "string"})),
      "404": "no such version"}),
    ("post", "/api/config/apply", "config-apply", "Apply a whole new config text",
     _change({"text": {"type": "string"}}, ["text", "version"]), _CHANGED),
    ("post", "/api/config/rollback", "config-rollback",
     "Back to version 'to' (default: the parent of the version running)",
     _change({"to": {"type": "integer", "minimum": 1}}, ["version"]), _CHANGED),
    ("get", "/api/config/devices", "config-devices", "The devices, with their tag counts",
     None, _ok(_fields(version={"type": "integer"}, devices={"type": "array", "items": _fields(
         name={"type": "string"}, protocol={"type": "string"}, enabled={"type": "boolean"},
         tags={"type": "integer"})}))),
    ("post", "/api/config/devices", "config-device-add", "Add a device",
     _change({"device": _OBJECT}, ["device", "version"]), {**_CHANGED, "409": "name taken"}),
    ("get", "/api/config/devices/{device}", "config-device",
     "One device as in the YAML file (secrets as their references)", None,
     {**_ok(_fields(version={"type": "integer"}, device=_OBJECT)), "404": "no such device"}),
    ("put", "/api/config/devices/{device}", "config-device-replace", "Replace a device",
     _change({"device": _OBJECT}, ["device", "version"]), {**_CHANGED, "404": "no device"}),
    ("delete", "/api/config/devices/{device}", "config-device-remove", "Remove a device "
     "(?version=N)", None, {**_CHANGED, "404": "no such device"}),
    ("get", "/api/config/devices/{device}/tags", "config-tags", "A device's tags", None,
     {**_ok(_fields(version={"type": "integer"}, tags={"type": "array", "items": _OBJECT})),
      "404": "no such device"}),
    ("post", "/api/config/devices/{device}/tags", "config-tags-add", "Add tags to a device",
     _change({"tags": {"type": "array", "items": _OBJECT, "minItems": 1}},
             ["tags", "version"]), {**_CHANGED, "404": "no such device"}),
    ("put", "/api/config/devices/{device}/tags/{tag}", "config-tag-replace", "Replace a tag",
     _change({"tag": _OBJECT}, ["tag", "version"]), {**_CHANGED, "404": "no such tag"}),
    ("delete", "/api/config/devices/{device}/tags/{tag}", "config-tag-remove",
     "Remove a tag (?version=N)", None, {**_CHANGED, "404": "no such tag"}),
    ("get", "/api/config/devices/{device}/tags.{format}", "config-tag-list",
     "The device's tags as CSV or XLSX", None, {**_LIST_FILE, "404": "no such device"}),
    ("post", "/api/config/devices/{device}/tags.{format}", "config-tag-list-load",
     "Import a CSV or XLSX tag list (body: the file; ?version=N&mode=merge|replace"
     "&dry_run=1); bad rows refused with row and column", {"content": {
         media: {"schema": {"type": "string"}} for media in (
             "text/csv", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")}},
     {**_CHANGED, "413": "too large"}),
    ("post", "/api/config/test-connection", "config-test-connection",
     "Connect to a device once and read its tags, in the words of `check`",
     {"type": "object", "required": ["device"], "additionalProperties": False,
      "properties": {"device": _OBJECT, "timeout": {"type": "number"}}},
     {"422": "the device does not validate"}),
    ("post", "/api/browse", "browse", "Browse a device's address space (OPC UA)",
     {"type": "object", "required": ["device"], "additionalProperties": False,
      "properties": {"device": _OBJECT, "start": {"type": "string"},
                     "depth": {"type": "integer", "minimum": 1, "maximum": 10},
                     "builtin": {"type": "boolean"}}},
     {"422": "no browse for the protocol", "502": "the device could not be browsed"}),
    ("post", "/api/scan", "scan", "Read a register range once under every type (Modbus)",
     {"type": "object", "required": ["device"], "additionalProperties": False,
      "properties": {"device": _OBJECT, "table": {"enum": ["holding", "input"]},
                     "area": {"type": "string"}, "start": {"type": "integer"},
                     "count": {"type": "integer", "minimum": 1}}},
     {"422": "no scan for the protocol", "502": "the device could not be read"}),
]


def route_names() -> dict[tuple[str, str], str]:
    """(METHOD, path) -> route name, of every route the document describes."""
    return {(method.upper(), path): name for method, path, name, *_ in _ROUTES}


def openapi_document(roles: dict[str, Role | None]) -> dict[str, Any]:
    """The document; ``roles``: the API's route roles (each operation's ``x-role``)."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path, name, summary, body, answers in _ROUTES:
        role = roles.get(name)
        operation: dict[str, Any] = {
            "operationId": name, "summary": summary,
            "x-role": role.label if role is not None else "public",
            "responses": {"200": {"description": "done", **_json(_OBJECT)},
                          "400": _error("bad request"), "401": _error("log in first"),
                          "403": _error(f"needs the {role.label if role else 'no'} role")}}
        for status, what in answers.items():
            operation["responses"][status] = what if isinstance(what, dict) else _error(what)
        params = [p.strip("{}") for p in path.split("/") if p.startswith("{")]
        if path.endswith(".{format}"):
            params.append("format")
        if params:
            operation["parameters"] = [
                {"name": p, "in": "path", "required": True,
                 "schema": {"enum": ["csv", "xlsx"]} if p == "format" else {"type": "string"}}
                for p in params]
        if body is not None:
            # a schema of JSON, or (a file) the request body's content by media type
            operation["requestBody"] = {"required": True,
                                        **(body if "content" in body else _json(body))}
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "chenxing-edge gateway local API", "version": __version__,
                 "description": "Roles: viewer < operator < admin (x-role of each "
                                "operation). Send 'Authorization: Bearer <token>' "
                                "(POST /api/login), or call from loopback when "
                                "http.auth.anonymous_loopback allows."},
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR, "Problem": _PROBLEM, "ApplyResult": _RESULT,
                        "Version": _RECORD},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}, {}],
    }


def _error(what: str) -> dict[str, Any]:
    return {"description": what, **_json(_ref("Error"))}


def add_openapi_route(app: web.Application, roles: dict[str, Role | None]) -> None:
    document = openapi_document(roles)

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(document, headers={"Cache-Control": "no-store"})

    app.router.add_get("/api/openapi.json", openapi, name="openapi")
