"""The status page's HTTP side on a running gateway: the shell, ``/api/status``, read-only
routes, the DNS-rebinding guard on a loopback bind and the token rule off loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gateway import __version__
from gateway.config.models import ModelsConfig
from hil.broker import MqttBroker
from hil.netutil import free_port
from tests.edge_models.helpers import identity_manifest, write_model
from tests.integration.gateway_harness import gateway_config, meter_device, running
from tests.waiting import until

pytestmark = pytest.mark.broker


def request(port: int, path: str, token: str | None = None, method: str = "GET",
            host: str | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if host is not None:
        req.add_header("Host", host)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


async def poll_status(port: int, check: Any, token: str | None = None,
                      timeout: float = 15.0) -> dict[str, Any]:
    """GET /api/status until ``check(body)`` holds; fail with the last body otherwise."""
    last: list[dict[str, Any]] = [{}]

    async def matching() -> dict[str, Any] | None:
        status, _, raw = await asyncio.to_thread(request, port, "/api/status", token)
        assert status == 200, raw
        last[0] = json.loads(raw)
        return last[0] if check(last[0]) else None

    return await until(matching, "the status to match", timeout=timeout, interval=0.2,
                       seen=lambda: json.dumps(last[0], indent=1)[:4000])


def kpi_manifest() -> dict[str, Any]:
    """Mean active power of the meter over 1 s, alarm ``running`` above 0.5 kW."""
    return identity_manifest(
        inputs=[{"tag": "meter.active_power", "aggregation": "mean", "window": "1s"}],
        cycle=None,
        trigger={"on": "interval", "every": "300ms", "settle": "100ms"},
        outputs=[{"name": "power_mean", "onnx": "kwh", "unit": "kW"}],
        alarms=[{"name": "running", "output": "power_mean", "above": 0.5}],
    )


async def test_status_shows_devices_spool_broker_models_alarms_and_errors(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any
) -> None:
    folder = tmp_path / "models"
    write_model(folder, "kpi", kpi_manifest())
    ghost = meter_device("ghost", free_port("127.0.0.1"))  # nothing listens: refused
    config = gateway_config(tmp_path, mosquitto.port,
                            [meter_device("meter", waveform_meter.port), ghost])
    config = config.model_copy(update={"models": ModelsConfig(
        enabled=True, dir=folder, watch_interval=0, tick=0.05)})
    async with running(config) as gw:
        port = gw.gateway.http_port
        assert port
        body = await poll_status(port, lambda b: any(
            a["active"] for a in b["models"]["alarms"]) and b["broker"]["connected"])

        assert body["gateway"]["id"] == "gw-test" and body["gateway"]["version"] == __version__
        assert body["gateway"]["uptime_s"] > 0
        assert body["gateway"]["tags"] == len(gw.gateway.catalog)
        assert body["status"] == "degraded"  # the ghost meter is down
        devices = {d["name"]: d for d in body["devices"]}
        assert devices["meter"]["state"] == "up" and devices["meter"]["samples_read"] > 0
        assert devices["meter"]["protocol"] == "modbus_tcp"
        assert devices["ghost"]["state"] == "down" and devices["ghost"]["last_error"]
        assert body["broker"]["url"].endswith(f":{mosquitto.port}")
        spool = body["spool"]
        assert spool["kind"] == "disk" and spool["oldest_age_s"] >= 0 and spool["dropped"] == 0

        models = body["models"]
        assert models["enabled"] and models["files"][0]["name"] == "kpi"
        assert models["files"][0]["loaded"] is True
        output = next(o for o in models["outputs"] if o["tag"] == "models.kpi/power_mean")
        assert output["quality"] == "good" and output["unit"] == "kW" and output["value"] > 0.5
        alarm = models["alarms"][0]
        assert alarm["tag"] == "models.kpi/running" and alarm["active"] is True
        assert alarm["since_ms"] > 0
        assert models["events"][0]["state"] == "raised"
        assert models["events"][0]["tag"] == "models.kpi/running"

        # the ghost's connect failure is among the recent warnings, newest first
        messages = [e["message"] for e in body["errors"]]
        assert any("device ghost: cannot connect" in m for m in messages), messages
        assert all(e["level"] in ("WARNING", "ERROR", "CRITICAL") for e in body["errors"])
        assert body["errors_total"] >= 1

        # /api/tags carries the server's clock so the page computes ages with it
        status, _, raw = await asyncio.to_thread(request, port, "/api/tags")
        tags = json.loads(raw)
        assert status == 200 and abs(tags["now_ns"] - body["now_ns"]) < 60 * 10**9
    # the handler leaves the root logger with the gateway
    assert gw.gateway.recent_errors not in logging.getLogger().handlers


async def test_shell_is_static_offline_and_every_route_is_read_only(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any
) -> None:
    config = gateway_config(tmp_path, mosquitto.port, [meter_device("meter", waveform_meter.port)])
    async with running(config) as gw:
        port = gw.gateway.http_port
        assert port
        status, headers, html = await asyncio.to_thread(request, port, "/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY"
        # no external assets: every src/href is relative
        refs = re.findall(rb'(?:src|href)="([^"]+)"', html)
        assert refs and all(not re.match(rb"^[a-z]+:|^//", r) for r in refs), refs
        for path, kind in (("/status.js", "text/javascript"), ("/status.css", "text/css")):
            status, headers, asset = await asyncio.to_thread(request, port, path)
            assert status == 200 and headers["Content-Type"].startswith(kind) and asset
            assert b"http://" not in asset and b"https://" not in asset

        for method in ("POST", "PUT", "DELETE", "PATCH"):
            for path in ("/", "/api/status", "/api/tags", "/healthz", "/metrics"):
                status, _, _ = await asyncio.to_thread(request, port, path, None, method)
                assert status == 405, (method, path, status)

        # DNS rebinding: with no token the API answers to loopback host names only
        status, _, raw = await asyncio.to_thread(
            request, port, "/api/status", None, "GET", f"evil.example:{port}")
        assert status == 403 and b"loopback" in raw
        status, _, raw = await asyncio.to_thread(  # a malformed Host: refused, not a 500
            request, port, "/api/status", None, "GET", "localhost:abc")
        assert status == 400 and b"malformed request host" in raw
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
            status, _, _ = await asyncio.to_thread(request, port, "/api/status", None, "GET", host)
            assert status == 200, host


async def test_off_loopback_the_shell_loads_but_data_needs_the_token(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_STATUS_TOKEN", "s3cret-token")
    config = gateway_config(tmp_path, mosquitto.port, [meter_device("meter", waveform_meter.port)],
                            http={"bind": "0.0.0.0", "token": {"env": "TEST_STATUS_TOKEN"}})
    async with running(config) as gw:
        port = gw.gateway.http_port
        assert port
        for path in ("/", "/status.js", "/status.css"):  # the shell holds no data
            status, _, _ = await asyncio.to_thread(request, port, path)
            assert status == 200, path
        for path in ("/api/status", "/api/tags", "/healthz", "/metrics", "/no-such-page"):
            for token in (None, "wrong"):
                status, _, raw = await asyncio.to_thread(request, port, path, token)
                assert status == 401 and b"bearer token" in raw, (path, token)
        # with a token any Host is fine (it is how the page is reached from elsewhere)
        status, _, raw = await asyncio.to_thread(
            request, port, "/api/status", "s3cret-token", "GET", f"edge-box-7:{port}")
        assert status == 200 and json.loads(raw)["gateway"]["id"] == "gw-test"
