"""The pure parts of the local API's access control (a fake clock where time is the point),
the user store on a real file system, and the config-change audit lines."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from gateway.access import LoginLimiter, PasswordPolicy, Role, Sessions, UserStore
from gateway.access.passwords import DUMMY_HASH, hash_password, needs_rehash, verify_password
from gateway.audit import AuditLog, AuditQuery, read_audit, record_config_change
from gateway.audit.events import MAX_DIFF_CHARS, config_diff, record_deployment, record_rollback
from gateway.audit.reader import parse_when
from gateway.errors import PasswordRejected, UnknownUser, UserRefused, UserStoreError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_roles_are_ordered_and_named() -> None:
    assert Role.ADMIN.allows(Role.OPERATOR) and Role.OPERATOR.allows(Role.VIEWER)
    assert not Role.VIEWER.allows(Role.OPERATOR) and not Role.OPERATOR.allows(Role.ADMIN)
    assert Role.named("Operator") is Role.OPERATOR and Role.ADMIN.label == "admin"
    with pytest.raises(ValueError, match="viewer, operator or admin"):
        Role.named("root")


def test_the_limiter_refuses_past_the_limit_until_the_oldest_failure_leaves_the_window() -> None:
    clock = Clock()
    limiter = LoginLimiter(max_failures=3, window_s=60, clock=clock)
    for _ in range(3):
        assert limiter.retry_after("vic", "10.0.0.1") is None
        limiter.failed("vic", "10.0.0.1")
        clock.now += 1
    first = limiter.retry_after("vic", "10.0.0.1")
    assert first is not None and first[1] is True and first[0] == pytest.approx(57)
    again = limiter.retry_after("vic", "10.0.0.1")
    assert again is not None and again[1] is False  # one audit line per lock-out
    assert limiter.retry_after("ann", "10.0.0.1") is None  # other names: not yet
    clock.now += 57
    assert limiter.retry_after("vic", "10.0.0.1") is None  # the first failure left the window
    limiter.failed("vic", "10.0.0.1")
    locked = limiter.retry_after("vic", "10.0.0.1")
    assert locked is not None and locked[1] is True  # a new lock-out is reported again
    assert limiter.refused == 3
    limiter.succeeded("vic")
    assert limiter.retry_after("vic", "10.0.0.2") is None


def test_the_limiter_counts_an_address_across_names_and_forgets_the_oldest_keys() -> None:
    clock = Clock()
    limiter = LoginLimiter(max_failures=2, window_s=60, max_keys=50, clock=clock)
    for i in range(8):  # 4 x 2 failures from one address, each name failing once
        limiter.failed(f"user{i}", "10.0.0.9")
    assert limiter.retry_after("fresh", "10.0.0.9") is not None
    assert limiter.retry_after("fresh", "10.0.0.8") is None
    for i in range(200):
        limiter.failed(f"spray{i}", f"10.1.{i}.1")
    assert len(limiter._failures) <= 50  # bounded, whatever is sprayed


def test_sessions_expire_end_and_keep_only_digests() -> None:
    clock = Clock()
    sessions = Sessions(ttl_s=10, max_sessions=3, clock=clock)
    token, session = sessions.open("vic", Role.VIEWER)
    assert sessions.find(token.encode()) == session
    assert token.encode() not in repr(sessions._by_digest).encode()
    clock.now += 9.9
    assert sessions.find(token.encode()) is not None
    clock.now += 0.1
    assert sessions.find(token.encode()) is None
    tokens = [sessions.open("otto", Role.OPERATOR)[0] for _ in range(4)]
    assert len(sessions) == 3 and sessions.find(tokens[0].encode()) is None  # oldest ended
    assert sessions.end_user("otto") == 3 and len(sessions) == 0


def test_password_policy_and_hashes() -> None:
    policy = PasswordPolicy(min_length=12)
    for bad, why in [("short", "at least 12"), ("vic-vic-vic-vic", "user name"),
                     ("aaaaaaaaaaaaab", "5 different"), ("good\npassword123", "line breaks")]:
        with pytest.raises(PasswordRejected, match=why):
            policy.check("vic", bad)
    policy.check("vic", "glass window 3x")
    stored = hash_password("glass window 3x")
    assert stored.startswith("$argon2id$") and "glass" not in stored
    assert verify_password(stored, "glass window 3x")
    assert not verify_password(stored, "glass window 3X")
    assert not verify_password("not a hash", "x")
    assert not verify_password(stored, "x" * 5000)
    assert not needs_rehash(stored)
    assert needs_rehash("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA")


def test_the_unknown_users_hash_costs_what_a_users_hash_costs() -> None:
    """The hash checked for an unknown user name is written out in the module (hashing it
    at import took 64 MiB and 0.3 s): it must have the parameters new hashes get, so that a
    wrong user name takes as long as a wrong password."""
    assert not needs_rehash(DUMMY_HASH)
    assert not verify_password(DUMMY_HASH, "not a password")


def test_the_user_store_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "state" / "users.json"
    store = UserStore(path)
    assert store.users() == {}
    store.add("ann", Role.ADMIN, hash_password("harbour lights 41"))
    store.add("vic", Role.VIEWER, "$argon2id$placeholder")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(path.parent.glob(".users-*"))  # no temporary file left
    other = UserStore(path)  # another process's view
    assert set(other.users()) == {"ann", "vic"} and other.users()["vic"].role is Role.VIEWER
    with pytest.raises(UserRefused, match="exists"):
        store.add("vic", Role.ADMIN, "x")
    with pytest.raises(UserRefused, match="bad user name"):
        store.add("Vic Smith", Role.ADMIN, "x")
    with pytest.raises(UnknownUser):
        store.remove("nobody")
    with pytest.raises(UserRefused, match="last admin"):
        store.remove("ann")
    with pytest.raises(UserRefused, match="last admin"):
        store.set_role("ann", Role.OPERATOR)
    before = other.users()["vic"].changed_ms
    store.set_role("vic", Role.ADMIN)
    assert other.users()["vic"].role is Role.ADMIN and other.users()["vic"].changed_ms >= before
    store.set_role("ann", Role.OPERATOR)  # vic is an admin now
    body = json.loads(path.read_text())
    assert "harbour" not in path.read_text() and body["users"]["ann"]["role"] == "operator"
    path.chmod(0o640)
    with pytest.raises(UserStoreError, match="chmod 600"):
        UserStore(path).users()
    path.chmod(0o600)
    path.write_text('{"version": 1, "users": {"ann": {"role": "boss"}}}')
    path.chmod(0o600)
    with pytest.raises(UserStoreError, match="damaged"):
        UserStore(path).users()
    path.write_text("{not json")
    with pytest.raises(UserStoreError, match="not JSON"):
        UserStore(path).users()
    path.unlink()
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text('{"version": 1, "users": {}}')
    elsewhere.chmod(0o600)
    os.symlink(elsewhere, path)  # a link is not followed
    with pytest.raises(UserStoreError):
        UserStore(path).users()


def test_config_changes_rollbacks_and_deployments_are_audited_with_a_diff(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.log")
    old = "gateway: {id: gw}\ndevices:\n  - name: meter\n    port: 502\n"
    new = old.replace("502", "5020") + "  - name: press\n"
    seq = record_config_change(audit, author="ann", via="api", outcome="applied",
                               old_text=old, new_text=new, version=8, parent=7)
    record_rollback(audit, author="gateway", from_version=8, to_version=7,
                    reason="press did not come up within 30 s", automatic=True)
    record_deployment(audit, author="brain", via="mqtt", kind="model", name="quality",
                      version="1.2.0", outcome="refused", reason="bad signature")
    audit.close()
    entries = read_audit(tmp_path / "audit.log", AuditQuery()).entries
    assert [e["event"] for e in entries] == ["deploy", "rollback", "config"]
    change = entries[2]
    assert change["seq"] == seq and change["version"] == 8 and change["parent"] == 7
    assert "--- v7\n+++ v8\n" in change["diff"]
    assert "-    port: 502\n+    port: 5020\n" in change["diff"]
    assert "+  - name: press" in change["diff"]
    assert "diff_cut" not in change or change["diff_cut"] is None
    assert entries[1]["automatic"] is True and entries[0]["reason"] == "bad signature"
    big_old = "".join(f"tag{i}: {i}\n" for i in range(20_000))
    diff, cut = config_diff(big_old, big_old.replace(": ", ":  "))
    assert cut and len(diff) == MAX_DIFF_CHARS


def test_times_for_audit_queries() -> None:
    now = 1_800_000_000_000
    assert parse_when("1718000000000", now) == 1718000000000
    assert parse_when("15m", now) == now - 900_000
    assert parse_when("2h", now) == now - 7_200_000
    assert parse_when("2025-06-10T08:00Z", now) == 1749542400000
    assert parse_when("2025-06-10T08:00", now) == 1749542400000  # UTC unless it says
    assert parse_when("2025-06-10T10:00+02:00", now) == 1749542400000
    with pytest.raises(ValueError, match="not a time"):
        parse_when("yesterday", now)


async def test_off_a_loopback_bind_nothing_works_without_a_login(tmp_path: Path) -> None:
    """The real middleware in a real aiohttp server: bound elsewhere than loopback (here
    the policy says so; the test itself only talks to 127.0.0.1), even a caller on this
    machine gets nothing but the page's shell and the login without credentials."""
    import aiohttp
    from aiohttp import web

    from gateway.http_access import PUBLIC, AccessGuard, AccessPolicy

    lines: list[tuple[str, dict[str, object]]] = []
    policy = AccessPolicy(loopback_bind=False, token=None, token_role=Role.OPERATOR,
                          anonymous_loopback=Role.OPERATOR)
    guard = AccessGuard(policy, {"shell": PUBLIC, "login": PUBLIC, "tags": Role.VIEWER},
                        Sessions(60), UserStore(tmp_path / "users.json"),
                        lambda event, **fields: lines.append((event, fields)))
    app = web.Application(middlewares=[guard.middleware])

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app.router.add_get("/", ok, name="shell")
    app.router.add_post("/api/login", ok, name="login")
    app.router.add_get("/api/tags", ok, name="tags")
    app.router.add_get("/api/unlisted", ok, name="unlisted")  # no role: refused to all
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            async def status(method: str, path: str, **kw: object) -> int:
                async with http.request(method, f"http://127.0.0.1:{port}{path}", **kw) as r:
                    return r.status

            assert await status("GET", "/") == 200
            assert await status("POST", "/api/login") == 200
            assert await status("GET", "/api/tags") == 401
            assert await status("GET", "/api/tags", headers={"Host": "gw.plant.local"}) == 401
            assert await status("GET", "/api/unlisted") == 401
            # a session of a user the store does not have: ended
            token, _ = guard.sessions.open("vic", Role.VIEWER)
            assert await status("GET", "/api/tags",
                                headers={"Authorization": f"Bearer {token}"}) == 401
            UserStore(tmp_path / "users.json").add("vic", Role.VIEWER, "x")
            token, _ = guard.sessions.open("vic", Role.VIEWER)
            auth = {"Authorization": f"Bearer {token}"}
            assert await status("GET", "/api/tags", headers=auth) == 200
            assert await status("GET", "/api/unlisted", headers=auth) == 403
    finally:
        await runner.cleanup()
    assert guard.unauthenticated == 1
