"""Who is asking the local API, and may they: the middleware in front of every route.

Each request is, in this order:

1. **Named hosts checked** (:mod:`gateway.http_guard`): a malformed ``Host`` or absolute
   target is refused 400; on a loopback bind without ``http.token`` only loopback names are
   answered (403), so a page whose name was rebound to 127.0.0.1 gets nothing.
2. **Identified**: ``Authorization: Bearer <token>`` is either a session token from
   ``POST /api/login`` (a user and the user's role *now*: a user removed, or given a new
   password or role, ends the session) or the shared ``http.token`` (a machine, with
   ``http.token_role``). Without credentials a request is anonymous: on a loopback bind
   without ``http.token``, from a loopback address naming a loopback host, it gets
   ``http.auth.anonymous_loopback``; anywhere else it gets 401 (nothing works without a
   login off loopback).
3. **Authorised** by its route's role (:data:`ROUTE_ROLES` of the API, deny by default: a
   route without one is refused): too low a role is 403 and a ``denied`` audit line.

Handlers raise :class:`~gateway.errors.ApiRefused` for 4xx answers; every error body is
``{"error": message, "code": code}``. Wrong or expired bearer tokens are counted
(``unauthenticated``), not audited: a flood of them must not rotate real events away.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from gateway.access import Role, Session, Sessions, UserStore
from gateway.access.sessions import TOKEN_PREFIX
from gateway.config.types import is_loopback
from gateway.errors import ApiRefused, UserStoreError
from gateway.http_guard import bearer_token, request_hosts

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Audit = Callable[..., object]

#: marks a route anyone may call, logged in or not (the status page's shell, the login)
PUBLIC = None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is from: a user (``via`` session), the shared token or an anonymous
    caller on this machine (``user`` None)."""

    user: str | None
    role: Role
    via: Literal["session", "token", "loopback"]
    address: str
    session: Session | None = None

    @property
    def name(self) -> str:
        """For logs and audit lines: the user, or ``token`` / ``loopback``."""
        return self.user if self.user is not None else self.via

    def audit_fields(self) -> dict[str, Any]:
        return {"user": self.user, "via": self.via, "addr": self.address}


#: the key of the request's :class:`Principal` (set below, read by the routes)
PRINCIPAL_KEY: web.RequestKey[Principal] = web.RequestKey("chenxing.principal", Principal)


def principal_of(request: web.Request) -> Principal:
    """The request's principal (set by the middleware; routes that are public have none)."""
    principal = request.get(PRINCIPAL_KEY)
    if not isinstance(principal, Principal):
        raise ApiRefused(401, "login_required", "log in first: POST /api/login")
    return principal


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """The parts of ``http`` the middleware needs."""

    loopback_bind: bool
    token: str | None
    token_role: Role
    anonymous_loopback: Role | None


class AccessGuard:
    """The local API's middleware (see the module doc). ``roles``: route name -> the least
    role that may call it, or :data:`PUBLIC`."""

    def __init__(self, policy: AccessPolicy, roles: Mapping[str, Role | None],
                 sessions: Sessions, users: UserStore, audit: Audit) -> None:
        self.policy = policy
        self.roles = roles
        self.sessions = sessions
        self.users = users
        self._audit = audit
        self._token_digest = None if policy.token is None \
            else hashlib.sha256(policy.token.encode()).digest()
        #: requests refused 401 because their bearer token was wrong or expired
        self.unauthenticated = 0
        #: requests refused 403 because of their role
        self.denied = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await self._guarded(request, handler)
        except ApiRefused as exc:
            return refusal(exc)

    async def _guarded(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        hosts_loopback = self._hosts_loopback(request)
        if self.policy.loopback_bind and self.policy.token is None and not hosts_loopback:
            # no token means a loopback bind: a foreign name is a DNS-rebinding page
            raise ApiRefused(403, "foreign_host", "the local API answers to loopback host "
                             "names only (set http.token or log in over a non-loopback bind "
                             "to serve others)")
        route = request.match_info.route
        name = route.name
        public = name is not None and name in self.roles and self.roles[name] is PUBLIC
        principal = self._identify(request, hosts_loopback, required=not public)
        if principal is not None:
            request[PRINCIPAL_KEY] = principal
        if public:
            return await handler(request)
        assert principal is not None
        if name is None or name not in self.roles:
            if _system_route(route):  # 404 and 405 of the router: answered to the identified
                return await handler(request)
            log.error("route %s %s has no role: refused (a bug: give it one)",
                      request.method, request.path)
            raise ApiRefused(403, "forbidden", "this route has no role set: refused")
        needed = self.roles[name]
        assert needed is not None
        if not principal.role.allows(needed):
            self.denied += 1
            self._audit("denied", **principal.audit_fields(), role=principal.role.label,
                        method=request.method, path=request.path[:200], needed=needed.label)
            raise ApiRefused(403, "forbidden", f"{request.method} {request.path[:200]} needs the "
                             f"{needed.label} role; {principal.name} is {principal.role.label}")
        return await handler(request)

    def _hosts_loopback(self, request: web.Request) -> bool:
        try:
            hosts = request_hosts(request)
        except ValueError as exc:
            raise ApiRefused(400, "bad_host", f"malformed request host: {exc}") from None
        return all(is_loopback(h.host) for h in hosts)

    def _identify(self, request: web.Request, hosts_loopback: bool,
                  required: bool) -> Principal | None:
        address = request.remote or "?"
        headers = request.headers.getall("Authorization", [])
        if not headers:
            anonymous = self.policy.anonymous_loopback
            if anonymous is not None and self.policy.loopback_bind and self.policy.token is None \
                    and hosts_loopback and _is_loopback_address(address):
                return Principal(None, anonymous, "loopback", address)
            if required:
                raise ApiRefused(401, "login_required", _login_hint(self.policy),
                                 {"WWW-Authenticate": 'Bearer realm="chenxing-gateway"'})
            return None
        given = bearer_token(headers)
        if given is not None:
            if self._token_digest is not None and hmac.compare_digest(
                    hashlib.sha256(given).digest(), self._token_digest):
                return Principal(None, self.policy.token_role, "token", address)
            if given.startswith(TOKEN_PREFIX.encode()):
                principal = self._session_principal(given, address)
                if principal is not None:
                    return principal
        if not required:
            return None
        self.unauthenticated += 1
        raise ApiRefused(401, "bad_credentials", "missing or wrong bearer token, or the session "
                         "ended (send 'Authorization: Bearer <token>'; log in again: POST "
                         "/api/login)", {"WWW-Authenticate": 'Bearer error="invalid_token"'})

    def _session_principal(self, token: bytes, address: str) -> Principal | None:
        session = self.sessions.find(token)
        if session is None:
            return None
        try:
            user = self.users.get(session.user)
        except UserStoreError as exc:
            log.error("%s", exc)
            raise ApiRefused(503, "user_store", "the user store cannot be read: see the "
                             "gateway's log") from None
        if user is None or user.changed_ms > session.started_ms:
            self.sessions.end(session)  # removed, or a new password or role since the login
            return None
        return Principal(user.name, user.role, "session", address, session)


def _login_hint(policy: AccessPolicy) -> str:
    if policy.token is not None:
        return ("missing or wrong bearer token (send 'Authorization: Bearer <token>'; people "
                "log in: POST /api/login)")
    return "log in first: POST /api/login, then send 'Authorization: Bearer <token>'"


def _system_route(route: web.AbstractRoute | Any) -> bool:
    return type(route).__name__ == "SystemRoute"


def _is_loopback_address(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def refusal(exc: ApiRefused) -> web.Response:
    return web.json_response({"error": exc.message, "code": exc.code}, status=exc.status,
                             headers=exc.headers)


MAX_JSON_BODY = 16 * 1024


async def read_json_object(request: web.Request, max_bytes: int = MAX_JSON_BODY
                           ) -> dict[str, Any]:
    """The request's body as a JSON object, or :class:`ApiRefused` (400, 413, 415)."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise ApiRefused(413, "too_large", f"a body of at most {max_bytes} bytes")
    data = await request.content.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ApiRefused(413, "too_large", f"a body of at most {max_bytes} bytes")
    ctype = request.headers.get("Content-Type", "application/json").split(";")[0].strip()
    if ctype.lower() != "application/json":
        raise ApiRefused(415, "not_json", "send Content-Type: application/json")
    try:
        body = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ApiRefused(400, "bad_json", f"the body is not JSON: {str(exc)[:120]}") from None
    if not isinstance(body, dict):
        raise ApiRefused(400, "bad_json", "the body must be a JSON object")
    return body


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def string_field(body: Mapping[str, Any], key: str, max_chars: int = 256) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ApiRefused(400, "bad_field", f"{key!r} must be a non-empty string")
    if len(value) > max_chars:
        raise ApiRefused(400, "bad_field", f"{key!r} has more than {max_chars} characters")
    return value
