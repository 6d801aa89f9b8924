"""The local HTTP API on a running gateway: latest tag values and the bearer token."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from hil.broker import MqttBroker
from tests.integration.gateway_harness import gateway_config, meter_device, running
from tests.waiting import until

pytestmark = pytest.mark.broker


def get(port: int, path: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


async def test_token_is_required_when_configured_and_tags_show_latest_values(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_HTTP_TOKEN", "let-me-in")
    config = gateway_config(tmp_path, mosquitto.port, [meter_device("meter", waveform_meter.port)],
                            http={"token": {"env": "TEST_HTTP_TOKEN"}})
    async with running(config) as gw:
        port = gw.gateway.http_port
        assert port
        for token in (None, "wrong"):
            status, body = await asyncio.to_thread(get, port, "/healthz", token)
            assert status == 401 and b"bearer token" in body

        async def good_tags() -> dict[str, Any] | None:
            status, body = await asyncio.to_thread(get, port, "/api/tags", "let-me-in")
            assert status == 200, body
            tags = {t["tag"]: t for t in json.loads(body)["tags"]}
            return tags if tags["meter.voltage"]["quality"] == "good" else None

        tags = await until(good_tags, "a good voltage in /api/tags", interval=0.1)
        voltage = tags["meter.voltage"]
        assert voltage["unit"] == "V" and 219 < voltage["value"] < 241 and voltage["ts_ns"] > 0
        assert tags["meter.relay_closed"]["value"] == 1.0
        status, _ = await asyncio.to_thread(get, port, "/metrics", "let-me-in")
        assert status == 200
