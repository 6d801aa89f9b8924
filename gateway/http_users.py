"""The local API's logins and users: ``/api/login``, ``/api/logout``, ``/api/me`` and
``/api/users`` (admin), every outcome in the audit log.

``POST /api/login`` ``{"user", "password"}`` answers ``{"token", "user", "role",
"expires_in_s"}``; a wrong name or password is 401 (the same answer and about the same time
for both: unknown names are checked against a dummy hash); past ``max_failed_logins`` for
a name or an address it is 429 with ``Retry-After``, without the password being checked.
Passwords are checked in a thread, two at a time (an Argon2id check is ~0.1 s of CPU and
64 MiB): a burst of logins cannot stall polling.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway.access import LoginLimiter, PasswordPolicy, Role, Sessions, UserStore
from gateway.access.passwords import DUMMY_HASH, hash_password, needs_rehash, verify_password
from gateway.access.users import USER_NAME, User, check_user_name
from gateway.errors import (
    ApiRefused,
    PasswordRejected,
    UnknownUser,
    UserRefused,
    UserStoreError,
)
from gateway.http_access import (
    PUBLIC,
    Audit,
    Principal,
    principal_of,
    read_json_object,
    string_field,
)

log = logging.getLogger(__name__)

#: password checks (Argon2id) running at once
PARALLEL_CHECKS = 2

#: route name -> least role (merged into the API's table)
ROUTE_ROLES: dict[str, Role | None] = {
    "login": PUBLIC,
    "logout": Role.VIEWER,
    "me": Role.VIEWER,
    "users-list": Role.ADMIN,
    "users-add": Role.ADMIN,
    "users-remove": Role.ADMIN,
    "users-role": Role.ADMIN,
    # viewers change their own password; the handler refuses others' unless admin
    "users-password": Role.VIEWER,
}


class UserRoutes:
    def __init__(self, users: UserStore, sessions: Sessions, limiter: LoginLimiter,
                 policy: PasswordPolicy, audit: Audit) -> None:
        self.users = users
        self.sessions = sessions
        self.limiter = limiter
        self.policy = policy
        self._audit = audit
        self._checks = asyncio.Semaphore(PARALLEL_CHECKS)
        #: logins refused for a wrong name or password
        self.failed_logins = 0

    def add_to(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/api/login", self.login, name="login")
        r.add_post("/api/logout", self.logout, name="logout")
        r.add_get("/api/me", self.me, name="me")
        r.add_get("/api/users", self.list_users, name="users-list")
        r.add_post("/api/users", self.add_user, name="users-add")
        r.add_delete("/api/users/{name}", self.remove_user, name="users-remove")
        r.add_put("/api/users/{name}/role", self.set_role, name="users-role")
        r.add_put("/api/users/{name}/password", self.set_password,
                  name="users-password")

    # -- sessions -----------------------------------------------------------------------
    async def login(self, request: web.Request) -> web.Response:
        address = request.remote or "?"
        body = await read_json_object(request)
        name = string_field(body, "user", 64)
        password = string_field(body, "password", 4096)
        shown = name if USER_NAME.fullmatch(name) else repr(name[:40])
        locked = self.limiter.retry_after(name, address)
        if locked is not None:
            wait, first = locked
            if first:
                self._audit("login", user=shown, addr=address, outcome="locked",
                            reason=f"{self.limiter.max_failures} failed logins within "
                            f"{self.limiter.window_s:g} s")
            raise ApiRefused(429, "too_many_failures", "too many failed logins: try again in "
                             f"{math.ceil(wait)} s", {"Retry-After": str(math.ceil(wait))})
        user = self._user(name)
        async with self._checks:
            ok = await asyncio.to_thread(verify_password,
                                         user.password_hash if user else DUMMY_HASH, password)
        if user is None or not ok:
            self.failed_logins += 1
            self.limiter.failed(name, address)
            self._audit("login", user=shown, addr=address, outcome="failed",
                        reason="unknown user" if user is None else "wrong password")
            raise ApiRefused(401, "wrong_login", "wrong user name or password")
        self.limiter.succeeded(name)
        if needs_rehash(user.password_hash):  # parameters raised since it was set
            new_hash = await asyncio.to_thread(hash_password, password)
            await asyncio.to_thread(self.users.rehash, user.name, user.password_hash, new_hash)
        token, session = self.sessions.open(user.name, user.role)
        self._audit("login", user=user.name, addr=address, outcome="ok", role=user.role.label,
                    session=session.id)
        return web.json_response({"token": token, "user": user.name, "role": user.role.label,
                                  "expires_in_s": round(self.sessions.ttl_s, 3)},
                                 headers={"Cache-Control": "no-store"})

    async def logout(self, request: web.Request) -> web.Response:
        who = principal_of(request)
        if who.session is None:
            raise ApiRefused(400, "no_session", f"{who.name} has no session to end "
                             "(only a login's token can log out)")
        self.sessions.end(who.session)
        self._audit("logout", **who.audit_fields(), session=who.session.id)
        return web.json_response({"ended": True})

    async def me(self, request: web.Request) -> web.Response:
        who = principal_of(request)
        body: dict[str, Any] = {"user": who.user, "role": who.role.label, "via": who.via}
        if who.session is not None:
            body["expires_in_s"] = round(self.sessions.expires_in(who.session), 3)
        return web.json_response(body)

    # -- users (admin) --------------------------------------------------------------------
    async def list_users(self, request: web.Request) -> web.Response:
        users = self._all()
        return web.json_response({"users": [u.public() for u in sorted(
            users.values(), key=lambda u: u.name)]})

    async def add_user(self, request: web.Request) -> web.Response:
        who = principal_of(request)
        body = await read_json_object(request)
        name = string_field(body, "user", 64)
        try:
            check_user_name(name)
        except UserRefused as exc:
            raise ApiRefused(400, "bad_field", str(exc)) from None
        role = _role(body)
        password = string_field(body, "password", 4096)
        self._check_password(name, password)
        password_hash = await self._hash(password)
        user = await self._change(who, "add", name, lambda: self.users.add(name, role,
                                                                          password_hash))
        return web.json_response(user.public(), status=201)

    async def remove_user(self, request: web.Request) -> web.Response:
        who = principal_of(request)
        name = request.match_info["name"]
        user = await self._change(who, "remove", name, lambda: self.users.remove(name))
        return web.json_response({"removed": user.name,
                                  "sessions_ended": self.sessions.end_user(user.name)})

    async def set_role(self, request: web.Request) -> web.Response:
        who = principal_of(request)
        name = request.match_info["name"]
        role = _role(await read_json_object(request))
        user = await self._change(who, "role", name, lambda: self.users.set_role(name, role))
        self.sessions.end_user(user.name)
        return web.json_response(user.public())

    async def set_password(self, request: web.Request) -> web.Response:
        """An admin sets anyone's; a user changes their own, giving the current one."""
        who = principal_of(request)
        name = request.match_info["name"]
        body = await read_json_object(request)
        password = string_field(body, "password", 4096)
        if who.user != name:
            if not who.role.allows(Role.ADMIN):
                self._audit("denied", **who.audit_fields(), role=who.role.label,
                            method=request.method, path=request.path[:200], needed="admin")
                raise ApiRefused(403, "forbidden", "only an admin sets another user's password")
        else:  # the current password is guessed no faster than at the login
            current = string_field(body, "current_password", 4096)
            if self.limiter.retry_after(name, who.address) is not None:
                raise ApiRefused(429, "too_many_failures", "too many failed password checks: "
                                 "try again later")
            user = self._user(name)
            async with self._checks:
                ok = user is not None and await asyncio.to_thread(
                    verify_password, user.password_hash, current)
            if not ok:
                self.limiter.failed(name, who.address)
                self._audit("user", **who.audit_fields(), action="passwd", target=name,
                            outcome="refused", reason="wrong current password")
                raise ApiRefused(403, "wrong_password", "the current password is wrong")
        self._check_password(name, password)
        password_hash = await self._hash(password)
        user = await self._change(who, "passwd", name,
                                  lambda: self.users.set_password(name, password_hash))
        # every session of the user ends, the caller's too: log in with the new password
        return web.json_response({**user.public(),
                                  "sessions_ended": self.sessions.end_user(user.name)})

    # -- helpers ----------------------------------------------------------------------------
    def _user(self, name: str) -> User | None:
        return self._all().get(name)

    def _all(self) -> dict[str, User]:
        try:
            return self.users.users()
        except UserStoreError as exc:
            log.error("%s", exc)
            raise ApiRefused(503, "user_store", "the user store cannot be read: see the "
                             "gateway's log") from None

    def _check_password(self, name: str, password: str) -> None:
        try:
            self.policy.check(name, password)
        except PasswordRejected as exc:
            raise ApiRefused(400, "weak_password", str(exc)) from None

    async def _hash(self, password: str) -> str:
        async with self._checks:
            return await asyncio.to_thread(hash_password, password)

    async def _change(self, who: Principal, action: str, target: str,
                      change: Callable[[], User]) -> User:
        try:
            user = await asyncio.to_thread(change)
        except UserRefused as exc:
            self._audit("user", **who.audit_fields(), action=action, target=target[:64],
                        outcome="refused", reason=str(exc))
            status = 404 if isinstance(exc, UnknownUser) else 409
            raise ApiRefused(status, "refused", str(exc)) from None
        except UserStoreError as exc:
            log.error("%s", exc)
            raise ApiRefused(503, "user_store", "the user store cannot be changed: see the "
                             "gateway's log") from None
        self._audit("user", **who.audit_fields(), action=action, target=user.name,
                    outcome="ok", role=user.role.label)
        return user


def _role(body: dict[str, Any]) -> Role:
    try:
        return Role.named(string_field(body, "role", 16))
    except ValueError as exc:
        raise ApiRefused(400, "bad_field", str(exc)) from None

