"""Users, roles, sessions and the audit trail on a real gateway's local API (aiohttp on
loopback, a real Mosquitto, the simulated meter): every route refused or answered by role,
sessions that end (expiry, logout, a new password, removal), failed logins limited (counted
by refusals, not timed), HTTPS with the gateway's certificate, hostile bodies answered 4xx
without a traceback, and an audit line for every event."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import logging
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway import exit_codes
from gateway.access import Role, UserStore, hash_password
from hil.broker import MqttBroker
from tests.integration.gateway_harness import METER_TAGS, gateway_config, meter_device, running
from tests.integration.http_client import api_call
from tests.waiting import until

pytestmark = pytest.mark.broker

REPO = Path(__file__).resolve().parents[2]
PASSWORDS = {"ann": "harbour lights 41", "otto": "steady torque 22", "vic": "glass window 3x"}
ROLES = {"ann": Role.ADMIN, "otto": Role.OPERATOR, "vic": Role.VIEWER}
TAGS = [*METER_TAGS,
        {"name": "power_limit_w", "table": "holding", "address": 101, "type": "float32",
         "unit": "W", "scale": 1000, "writable": True, "range": [0, 100_000]}]


def add_users(state: Path, names: tuple[str, ...] = ("ann", "otto", "vic")) -> UserStore:
    store = UserStore(state / "users.json")
    for name in names:
        store.add(name, ROLES[name], hash_password(PASSWORDS[name]))
    return store


def audit_lines(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "state" / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


class Api:
    """A client of one gateway's local API; ``token`` None: no Authorization header."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def call(self, method: str, path: str, token: str | None = None,
                   body: Any = None, data: bytes | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        return await api_call(self.session, method, self.base + path, token, body, data,
                              headers)  # fmt: skip

    async def login(self, user: str, password: str | None = None,
                    role: Role | None = None) -> str:
        status, body = await self.call("POST", "/api/login", body={
            "user": user, "password": password or PASSWORDS[user]})
        assert status == 200, body
        assert body["token"].startswith("chxs_") and body["role"] == (role or ROLES[user]).label
        return str(body["token"])

    async def status_is(self, token: str, wanted: int) -> bool:
        return (await self.call("GET", "/api/me", token))[0] == wanted


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


def config_for(tmp_path: Path, broker: MqttBroker, sim: Any, **http: Any) -> Any:
    return gateway_config(tmp_path, broker.port, [meter_device("meter", sim.port, tags=TAGS)],
                          http=http, commands={"enabled": True})


async def test_every_route_is_answered_or_refused_by_role_and_refusals_are_audited(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any, http: aiohttp.ClientSession
) -> None:
    add_users(tmp_path / "state")
    config = config_for(tmp_path, mosquitto, waveform_meter, auth={"anonymous_loopback": "none"})
    async with running(config) as gw:
        api = Api(http, f"http://127.0.0.1:{gw.gateway.http_port}")
        tokens: dict[str, str | None] = {"anonymous": None}
        for name in ("vic", "otto", "ann"):
            tokens[name] = await api.login(name)
        write = {"writes": [{"tag": "meter.power_limit_w", "value": 42000}]}
        new_user = {"user": "eve", "role": "admin", "password": "quiet meadow 77"}
        # (method, path, body) -> status for anonymous, viewer, operator, admin
        table: list[tuple[str, str, Any, tuple[int, int, int, int]]] = [
            ("GET", "/", None, (200, 200, 200, 200)),  # the page's shell: no data in it
            ("GET", "/api/tags", None, (401, 200, 200, 200)),
            ("GET", "/api/status", None, (401, 200, 200, 200)),
            ("GET", "/metrics", None, (401, 200, 200, 200)),
            ("GET", "/api/me", None, (401, 200, 200, 200)),
            ("POST", "/api/writes", write, (401, 403, 200, 200)),
            ("POST", "/api/firmware/meter", None, (401, 403, 400, 400)),  # 400: no MCU node
            ("GET", "/api/audit", None, (401, 403, 403, 200)),
            ("GET", "/api/users", None, (401, 403, 403, 200)),
            ("POST", "/api/users", new_user, (401, 403, 403, 201)),
            ("PUT", "/api/users/eve/role", {"role": "viewer"}, (401, 403, 403, 200)),
            ("DELETE", "/api/users/eve", None, (401, 403, 403, 200)),
            ("GET", "/api/nothing-here", None, (401, 404, 404, 404)),
        ]
        for method, path, body, wanted in table:
            for who, status in zip(tokens, wanted, strict=True):
                got, answer = await api.call(method, path, tokens[who], body=body)
                assert got == status, (method, path, who, got, answer)
                if got in (401, 403):
                    assert answer["code"] and answer["error"], answer
        # refusals are counted for monitoring too (wrong credentials, roles, logins)
        status, metrics = await api.call("GET", "/metrics", tokens["vic"])
        assert 'chenxing_http_refused_total{reason="forbidden"} 12.0' in metrics
        assert 'chenxing_http_refused_total{reason="login_failed"} 0.0' in metrics
        assert "chenxing_audit_write_errors_total 0.0" in metrics
        # the write reached the meter, through the brain's checks
        assert waveform_meter.get_value("power_limit") == pytest.approx(42.0)
        status, me = await api.call("GET", "/api/me", tokens["otto"])
        assert me["user"] == "otto" and me["role"] == "operator" and me["via"] == "session"
        assert 0 < me["expires_in_s"] <= 8 * 3600
        # a viewer may change their own password (with the current one), not another's
        status, answer = await api.call("PUT", "/api/users/otto/password", tokens["vic"],
                                        body={"password": "vic sets otto's"})
        assert status == 403, answer
        # the admin reads it all back through the API, filtered
        status, page = await api.call("GET", "/api/audit?kind=denied&limit=100", tokens["ann"])
        assert status == 200
        denied = page["entries"]
    assert {(d["user"], d["path"]) for d in denied} >= {
        ("vic", "/api/writes"), ("vic", "/api/firmware/meter"), ("vic", "/api/audit"),
        ("otto", "/api/audit"), ("otto", "/api/users"), ("vic", "/api/users/otto/password")}
    assert all(d["addr"] == "127.0.0.1" and d["via"] == "session" for d in denied)
    lines = audit_lines(tmp_path)
    logins = [(e["user"], e["outcome"]) for e in lines if e["event"] == "login"]
    assert logins == [("vic", "ok"), ("otto", "ok"), ("ann", "ok")]
    writes = [e for e in lines if e["event"] == "write"]
    assert [(e["user"], e["topic"], e["outcome"]) for e in writes] == [
        ("otto", "http:session", "accepted"), ("ann", "http:session", "accepted")]
    firmware = [e for e in lines if e["event"] == "firmware"]
    assert [(e["user"], e["outcome"]) for e in firmware] == [("otto", "rejected"),
                                                           ("ann", "rejected")]
    users = [(e["user"], e["action"], e["target"], e["outcome"]) for e in lines
             if e["event"] == "user"]
    assert users == [("ann", "add", "eve", "ok"), ("ann", "role", "eve", "ok"),
                     ("ann", "remove", "eve", "ok")]
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))


async def test_sessions_end_by_expiry_logout_new_password_removal_and_role_change(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any, http: aiohttp.ClientSession
) -> None:
    store = add_users(tmp_path / "state")
    config = config_for(tmp_path, mosquitto, waveform_meter,
                        auth={"anonymous_loopback": "none", "session_ttl": "1.5s"})
    async with running(config) as gw:
        api = Api(http, f"http://127.0.0.1:{gw.gateway.http_port}")

        # expiry: the session works, then it does not
        token = await api.login("vic")
        assert await api.status_is(token, 200)
        await until(lambda: api.status_is(token, 401), "the session expired", timeout=30)
        status, answer = await api.call("GET", "/api/tags", token)
        assert status == 401 and "log in again" in answer["error"]

    config = config_for(tmp_path, mosquitto, waveform_meter, auth={"anonymous_loopback": "none"})
    async with running(config) as gw:
        api = Api(http, f"http://127.0.0.1:{gw.gateway.http_port}")

        async def status_of(token: str) -> int:
            return (await api.call("GET", "/api/me", token))[0]

        # logout
        token = await api.login("vic")
        assert (await api.call("POST", "/api/logout", token))[0] == 200
        assert await status_of(token) == 401
        # a new password from the CLI's store (another process would do the same) ends it
        token = await api.login("vic")
        other = await api.login("vic")
        store.set_password("vic", hash_password("paper lantern 5"))
        assert await status_of(token) == 401 and await status_of(other) == 401
        assert (await api.call("POST", "/api/login", body={
            "user": "vic", "password": PASSWORDS["vic"]}))[0] == 401
        token = await api.login("vic", "paper lantern 5")
        # own password through the API: the current one is asked for
        status, answer = await api.call("PUT", "/api/users/vic/password", token, body={
            "password": "river stones 66", "current_password": "wrong"})
        assert status == 403 and answer["code"] == "wrong_password"
        status, answer = await api.call("PUT", "/api/users/vic/password", token, body={
            "password": "river stones 66", "current_password": "paper lantern 5"})
        assert status == 200 and answer["sessions_ended"] == 1, answer
        assert await status_of(token) == 401
        # a role change by an admin ends the user's sessions; the new role holds at once
        otto = await api.login("otto")
        ann = await api.login("ann")
        status, _ = await api.call("PUT", "/api/users/otto/role", ann, body={"role": "viewer"})
        assert status == 200 and await status_of(otto) == 401
        otto = await api.login("otto", role=Role.VIEWER)
        assert (await api.call("POST", "/api/writes", otto, body={
            "writes": [{"tag": "meter.power_limit_w", "value": 1000}]}))[0] == 403
        # removal
        status, answer = await api.call("DELETE", "/api/users/otto", ann)
        assert status == 200 and answer["sessions_ended"] == 1
        assert await status_of(otto) == 401
        # the last admin stays
        status, answer = await api.call("DELETE", "/api/users/ann", ann)
        assert status == 409 and "last admin" in answer["error"]
    kinds = [(e["event"], e.get("action"), e.get("outcome")) for e in audit_lines(tmp_path)]
    assert ("logout", None, None) in kinds
    assert ("user", "passwd", "refused") in kinds and ("user", "passwd", "ok") in kinds
    assert ("user", "remove", "refused") in kinds


async def test_failed_logins_are_limited_per_user_and_per_address(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any, http: aiohttp.ClientSession
) -> None:
    add_users(tmp_path / "state")
    config = config_for(tmp_path, mosquitto, waveform_meter,
                        auth={"max_failed_logins": 3, "failed_login_window": "1h"})
    async with running(config) as gw:
        api = Api(http, f"http://127.0.0.1:{gw.gateway.http_port}")

        async def login(user: str, password: str) -> tuple[int, Any]:
            return await api.call("POST", "/api/login", body={"user": user,
                                                              "password": password})

        statuses = [(await login("vic", f"guess {i}"))[0] for i in range(6)]
        assert statuses == [401, 401, 401, 429, 429, 429]
        status, answer = await login("vic", PASSWORDS["vic"])  # right, but locked out
        assert status == 429 and "too many failed logins" in answer["error"]
        # another user from the same address is not locked (yet)
        assert (await login("otto", PASSWORDS["otto"]))[0] == 200
        # the address: 4 x 3 failures from 127.0.0.1 lock out every name
        for i in range(9):
            assert (await login(f"nobody{i % 3}", "x" * 12))[0] in (401, 429)
        status, _ = await login("ann", PASSWORDS["ann"])
        assert status == 429
    lines = [e for e in audit_lines(tmp_path) if e["event"] == "login"]
    vic = [(e["outcome"], e.get("reason")) for e in lines if e["user"] == "vic"]
    # three failures, then one line for the lock-out (the other refusals are counted)
    assert [o for o, _ in vic] == ["failed", "failed", "failed", "locked"]
    assert vic[0][1] == "wrong password"
    unknown = [e for e in lines if e["user"].startswith("nobody")]
    assert unknown and all(e["reason"] == "unknown user" for e in unknown
                           if e["outcome"] == "failed")


async def test_the_shared_token_is_a_machine_credential_with_its_role(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any, http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_M2M_TOKEN", "scraper-secret-123")
    add_users(tmp_path / "state", ("ann",))
    config = config_for(tmp_path, mosquitto, waveform_meter,
                        token={"env": "TEST_M2M_TOKEN"}, token_role="viewer")
    async with running(config) as gw:
        api = Api(http, f"http://127.0.0.1:{gw.gateway.http_port}")
        token = "scraper-secret-123"
        assert (await api.call("GET", "/metrics", token))[0] == 200
        assert (await api.call("GET", "/api/tags"))[0] == 401  # a token: nobody is anonymous
        status, answer = await api.call("POST", "/api/writes", token, body={
            "writes": [{"tag": "meter.power_limit_w", "value": 1000}]})
        assert status == 403 and "viewer" in answer["error"]
        assert (await api.call("GET", "/api/users", token))[0] == 403
        status, me = await api.call("GET", "/api/me", token)
        assert me == {"user": None, "role": "viewer", "via": "token"}
        assert (await api.call("POST", "/api/logout", token))[0] == 400
        ann = await api.login("ann")  # people log in beside the token
        assert (await api.call("GET", "/api/users", ann))[0] == 200
    denied = [e for e in audit_lines(tmp_path) if e["event"] == "denied"]
    assert [(e["via"], e["user"], e["path"]) for e in denied] == [
        ("token", None, "/api/writes"), ("token", None, "/api/users")]


async def test_anonymous_callers_on_this_machine_get_the_loopback_role_never_admin(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any, http: aiohttp.ClientSession
) -> None:
    config = config_for(tmp_path, mosquitto, waveform_meter)  # anonymous_loopback: operator
    async with running(config) as gw:
        api = Api(http, f"http://127.0.0.1:{gw.gateway.http_port}")
        assert (await api.call("GET", "/api/tags"))[0] == 200
        status, answer = await api.call("POST", "/api/writes", body={
            "writes": [{"tag": "meter.power_limit_w", "value": 2000}]})
        assert status == 200 and answer["status"] == "accepted", answer
        status, answer = await api.call("POST", "/api/users", body={
            "user": "mallory", "role": "admin", "password": "mallory wants in"})
        assert status == 403 and "admin" in answer["error"]
        status, answer = await api.call("POST", "/api/writes", body={
            "writes": [{"tag": "meter.voltage", "value": 1}]})
        assert status == 422 and "not writable" in answer["results"][0]["reason"]
    lines = audit_lines(tmp_path)
    assert [(e["via"], e["user"]) for e in lines if e["event"] == "denied"] == [
        ("loopback", None)]
    writes = [e for e in lines if e["event"] == "write"]
    assert [(e["topic"], e["outcome"]) for e in writes] == [
        ("http:loopback", "accepted"), ("http:loopback", "rejected")]


def make_certificate(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "gateway.pem", folder / "gateway.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


async def test_https_with_the_gateway_certificate(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any, http: aiohttp.ClientSession
) -> None:
    add_users(tmp_path / "state", ("ann",))
    cert, key = make_certificate(tmp_path)
    config = config_for(tmp_path, mosquitto, waveform_meter,
                        tls={"certificate": str(cert), "key": str(key)},
                        auth={"anonymous_loopback": "none"})
    trust = ssl.create_default_context(cafile=str(cert))
    async with running(config) as gw:
        port = gw.gateway.http_port
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as tls:
            api = Api(tls, f"https://127.0.0.1:{port}")
            token = await api.login("ann")
            status, body = await api.call("GET", "/api/users", token)
            assert status == 200 and [u["user"] for u in body["users"]] == ["ann"]
        # a client that does not trust the certificate gets no answer, nor does plain HTTP
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await Api(http, f"https://localhost:{port}").call("GET", "/api/me")
        with pytest.raises(aiohttp.ClientError):
            await Api(http, f"http://127.0.0.1:{port}").call("POST", "/api/login", body={
                "user": "ann", "password": PASSWORDS["ann"]})
    assert [e["outcome"] for e in audit_lines(tmp_path) if e["event"] == "login"] == ["ok"]


async def test_hostile_requests_get_4xx_and_no_traceback(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any, http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture
) -> None:
    add_users(tmp_path / "state", ("ann", "vic"))
    config = config_for(tmp_path, mosquitto, waveform_meter,
                        auth={"anonymous_loopback": "none", "max_failed_logins": 1000})
    async with running(config) as gw:
        api = Api(http, f"http://127.0.0.1:{gw.gateway.http_port}")
        ann = await api.login("ann")
        caplog.clear()
        json_type = {"Content-Type": "application/json"}
        login_bodies: list[tuple[bytes, dict[str, str], int]] = [
            (b"not json", json_type, 400),
            (b"[1, 2]", json_type, 400),
            (b'{"user": "ann"}', json_type, 400),
            (b'{"user": 5, "password": "x"}', json_type, 400),
            (b'{"user": "ann", "password": NaN}', json_type, 400),
            (b"\xff\xfe\x00", json_type, 400),
            (b"[" * 20_000, json_type, 413),
            (b"[" * 5_000, json_type, 400),
            (b'{"user": "ann", "password": "' + b"a" * 20_000 + b'"}', json_type, 413),
            (json.dumps({"user": "a" * 65, "password": "x"}).encode(), json_type, 400),
            (json.dumps({"user": "ann\x00", "password": "x"}).encode(), json_type, 401),
            (json.dumps({"user": "../../etc", "password": "x"}).encode(), json_type, 401),
            (json.dumps({"user": "ann", "password": "x" * 4000}).encode(), json_type, 401),
            (b'{"user": "ann", "password": "x"}', {"Content-Type": "text/plain"}, 415),
        ]
        for data, headers, wanted in login_bodies:
            status, answer = await api.call("POST", "/api/login", data=data, headers=headers)
            assert status == wanted, (data[:40], status, answer)
        tokens = ["chxs_", "chxs_" + "A" * 5000, "x" * 100, ann + "x", ann[:-1]]
        for token in tokens:
            assert (await api.call("GET", "/api/me", token))[0] == 401, token[:20]
        admin_calls: list[tuple[str, str, Any, int]] = [
            ("POST", "/api/users", {"user": "Bad Name", "role": "viewer",
                                    "password": "a good long one"}, 400),
            ("POST", "/api/users", {"user": "zed", "role": "root",
                                    "password": "a good long one"}, 400),
            ("POST", "/api/users", {"user": "zed", "role": "viewer", "password": "short"}, 400),
            ("POST", "/api/users", {"user": "zed", "role": "viewer",
                                    "password": "zed's name inside"}, 400),
            ("POST", "/api/users", {"user": "vic", "role": "viewer",
                                    "password": "a good long one"}, 409),
            ("DELETE", "/api/users/..%2F..%2Fetc", None, 404),
            ("DELETE", "/api/users/nobody", None, 404),
            ("PUT", "/api/users/vic/role", {"role": ["admin"]}, 400),
            ("GET", "/api/audit?limit=0", None, 400),
            ("GET", "/api/audit?limit=abc", None, 400),
            ("GET", "/api/audit?since=yesterday", None, 400),
            ("GET", "/api/audit?before=99999999999999999999999", None, 400),
            ("GET", "/api/audit?drop=table", None, 400),
            ("POST", "/api/writes", {"writes": "all"}, 422),
            ("POST", "/api/writes", {"writes": [{"tag": "meter.power_limit_w",
                                                 "value": 1e400}]}, 400),
            ("POST", "/api/writes", {"writes": [], "sudo": True}, 400),
            ("GET", "/api/login", None, 405),
        ]
        for method, path, body, wanted in admin_calls:
            status, answer = await api.call(method, path, ann, body=body)
            assert status == wanted, (method, path, body, status, answer)
            if status != 405:  # aiohttp's own answer
                assert isinstance(answer, dict) and ("error" in answer or "status" in answer)
        status, _ = await api.call("GET", "/api/me", ann)
        assert status == 200  # still serving, the session still good
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]


async def test_cli_users_and_audit_show_beside_a_running_gateway(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any, http: aiohttp.ClientSession
) -> None:
    config = config_for(tmp_path, mosquitto, waveform_meter, auth={"anonymous_loopback": "none"})
    config_file = tmp_path / "gw.yaml"
    config_file.write_text(json.dumps({
        "gateway": {"id": "gw-test", "site": "plant", "line": "line-1",
                    "state_dir": str(tmp_path / "state")},
        "devices": [meter_device("meter", waveform_meter.port, tags=TAGS)]}))

    def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway.cli.main", *args, "-c",
                               str(config_file)], input=stdin, capture_output=True, text=True,
                              cwd=REPO, timeout=120)

    async def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(cli, *args, stdin=stdin)

    async with running(config) as gw:
        api = Api(http, f"http://127.0.0.1:{gw.gateway.http_port}")
        done = await run_cli("users", "add", "ann", "--role", "admin", "--password-stdin",
                             stdin=PASSWORDS["ann"] + "\n")
        assert done.returncode == 0, done.stderr
        token = await api.login("ann")  # the running gateway sees the new user at once
        refused = await run_cli("users", "add", "bob", "--role", "viewer", "--password-stdin",
                                stdin="short\n")
        assert refused.returncode == exit_codes.REFUSED
        assert "at least 12 characters" in refused.stderr
        listed = await run_cli("users", "list", "--json")
        assert [json.loads(line)["user"] for line in listed.stdout.splitlines()] == ["ann"]
        assert "hash" not in listed.stdout and "argon2" not in listed.stdout
        last = await run_cli("users", "remove", "ann")
        assert last.returncode == 0  # the only user may go; then nobody can log in
        assert (await api.call("GET", "/api/me", token))[0] == 401
        assert (await api.call("POST", "/api/login", body={
            "user": "ann", "password": PASSWORDS["ann"]}))[0] == 401
    users_file = tmp_path / "state" / "users.json"
    assert users_file.stat().st_mode & 0o777 == 0o600
    shown = cli("audit", "show", "--kind", "user,login", "--json")
    entries = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [(e["event"], e.get("action"), e["outcome"]) for e in entries] == [
        ("login", None, "failed"), ("user", "remove", "ok"), ("login", None, "ok"),
        ("user", "add", "ok")]
    assert all(e["user"].startswith("os:") for e in entries if e["event"] == "user")
    human = cli("audit", "show", "--user", "ann", "--since", "1h", "-n", "1")
    assert human.returncode == 0 and len(human.stdout.splitlines()) == 1
    assert "login" in human.stdout and "outcome=failed" in human.stdout
    users_file.chmod(0o644)  # unsafe: refused, not used
    unsafe = cli("users", "list")
    assert unsafe.returncode == exit_codes.REFUSED and "chmod 600" in unsafe.stderr
