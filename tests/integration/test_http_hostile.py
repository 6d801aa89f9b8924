"""Hostile requests to the local HTTP API of a running gateway, sent as raw bytes where a
client library would tidy them: odd Host headers, absolute-form targets, tokens without
``Bearer``, and 40 MiB firmware bodies that must cost the process no lasting memory."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil  # type: ignore[import-untyped]
import pytest

from hil.broker import MqttBroker
from hil.devices.mcu_node import McuNodeSimulator
from hil.netutil import free_port
from tests.firmware_bridge.test_fb_smp_gateway import node_device, write_config
from tests.integration.gateway_harness import gateway_config, meter_device, running

pytestmark = pytest.mark.broker

REPO = Path(__file__).resolve().parents[2]
TOKEN = "let-me-in"


async def raw(port: int, head: str, extra: bytes = b"") -> tuple[int, bytes]:
    """Send ``head`` (request line and headers, ``\\n`` between lines) exactly as written."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.replace("\n", "\r\n").encode("latin-1") + extra + b"\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)  # Connection: close below
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def get(target: str, *headers: str) -> str:
    return "\n".join([f"GET {target} HTTP/1.1", *headers, "Connection: close"])


async def test_host_names_are_parsed_strictly_and_must_be_loopback_without_a_token(
    tmp_path: Path, mosquitto: MqttBroker, caplog: pytest.LogCaptureFixture
) -> None:
    config = gateway_config(tmp_path, mosquitto.port, [meter_device("meter", free_port())])
    async with running(config) as gw:
        port = gw.gateway.http_port
        assert port
        malformed = [
            get("/api/tags", "Host: evil.example:80@127.0.0.1"),  # userinfo: yarl saw 127.0.0.1
            get("/api/tags", "Host: localhost/api"),
            get("/api/tags", "Host: local host"),
            get("/api/tags", f"Host: localhost:{port}:{port}"),
            get("/api/tags", "Host: localhost:"),
            get("/api/tags", "Host: localhost:65536"),
            get("/api/tags", "Host: ::1"),
            get("/api/tags", "Host: [::1"),
            get("/api/tags", "Host: [fe80::1%25lo]"),
            get("/api/tags", "Host:"),
            get("http://evil@localhost/api/tags", "Host: localhost"),
            get("https://localhost/api/tags", "Host: localhost"),
            "CONNECT localhost:80 HTTP/1.1\nHost: localhost\nConnection: close",
        ]
        for head in malformed:
            status, body = await raw(port, head)
            assert status == 400 and b"malformed request host" in body, (head, status, body)
        foreign = [
            get("/api/tags", "Host: evil.example"),
            get("http://localhost/api/tags", "Host: evil.example"),  # used to return data
            get(f"http://evil.example:{port}/api/tags", "Host: localhost"),
            get("/api/tags", "Host: localhost.evil.example"),
        ]
        for head in foreign:
            status, body = await raw(port, head)
            assert status == 403 and b"loopback host names only" in body, (head, status, body)
        fine = [
            get("/api/tags", f"Host: localhost:{port}"),
            get("/api/tags", "Host: LOCALHOST"),
            get("/api/tags", f"Host: [::1]:{port}"),
            get("/api/tags", "Host: 127.0.0.2"),
            get(f"http://localhost:{port}/api/tags", f"Host: 127.0.0.1:{port}"),  # RFC 7230 5.3.2
        ]
        for head in fine:
            status, body = await raw(port, head)
            assert status == 200 and "meter.voltage" in json.loads(body)["tags"][0]["tag"], head
        # what aiohttp refuses itself (no Host in HTTP/1.1, two of them): a 400 and a one-line
        # warning in the gateway's log, not an error with a traceback per request
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="aiohttp.server"):
            for head in ("GET /api/tags HTTP/1.1\nConnection: close",
                         get("/api/tags", "Host: localhost", "Host: evil.example")):
                status, _ = await raw(port, head)
                assert status == 400, head
        logged = [r for r in caplog.records if r.name == "aiohttp.server"]
        assert len(logged) == 2 and all(r.exc_info is None for r in logged), logged
        assert all(r.levelno == logging.WARNING and "400" in r.getMessage() for r in logged)


async def test_only_authorization_bearer_is_accepted(
    tmp_path: Path, mosquitto: MqttBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_HTTP_TOKEN", TOKEN)
    config = gateway_config(tmp_path, mosquitto.port, [meter_device("meter", free_port())],
                            http={"token": {"env": "TEST_HTTP_TOKEN"}})
    async with running(config) as gw:
        port = gw.gateway.http_port
        assert port
        refused = [
            (f"Authorization: {TOKEN}",),  # the raw token used to be accepted
            (f"Authorization: Bearer{TOKEN}",),
            (f"Authorization: Basic {TOKEN}",),
            (f"Authorization: Bearer {TOKEN}x",),
            (f"Authorization: Bearer {TOKEN[:-1]}",),
            ("Authorization: Bearer",),
            (f"Authorization: Bearer {TOKEN}", f"Authorization: Bearer {TOKEN}"),
            ("Authorization: Bearer \xff\xfe",),  # not UTF-8: a 401, not a 500
            (),
        ]
        for headers in refused:
            status, body = await raw(port, get("/healthz", "Host: localhost", *headers))
            assert status == 401 and b"Authorization: Bearer <token>" in body, (headers, body)
        for auth in (f"Bearer {TOKEN}", f"bearer {TOKEN}", f"Bearer   {TOKEN}"):
            status, _ = await raw(port, get("/api/tags", "Host: localhost",
                                            f"Authorization: {auth}"))
            assert status == 200, auth
        # a malformed Host is refused with or without the token
        status, body = await raw(port, get("/api/tags", "Host: evil.example:80@127.0.0.1",
                                           f"Authorization: Bearer {TOKEN}"))
        assert status == 400 and b"malformed request host" in body


# --- firmware bodies -------------------------------------------------------------------------
MIB = 1024 * 1024
BODY_MIB = 40


@pytest.fixture
async def sim() -> AsyncIterator[McuNodeSimulator]:
    async with McuNodeSimulator(node_id=6, seed=2, boot_time=0.1) as node:
        yield node


async def _post(session: aiohttp.ClientSession, url: str, data: Any) -> tuple[int, str]:
    async with session.post(url, data=data) as resp:
        return resp.status, await resp.text()


async def _chunks(total_mib: int) -> AsyncIterator[bytes]:
    block = b"\xa5" * MIB
    for _ in range(total_mib):
        yield block


async def test_refused_firmware_bodies_leave_no_lasting_memory(
    tmp_path: Path, mosquitto: MqttBroker, sim: McuNodeSimulator
) -> None:
    """A real gateway process, an MCU node device up, 40 MiB bodies refused with 413: by
    Content-Length before a byte is read, and without one (chunked) once 16 MiB have been
    streamed to disk. Its RSS must come back to where it was; a growing 16 MiB buffer used
    to leave it about 24 MB higher."""
    http_port = free_port()
    config = write_config(tmp_path, mosquitto.port, node_device(sim), http_port)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli.main", "run", "-c", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=REPO)
    base = f"http://127.0.0.1:{http_port}"
    url = f"{base}/api/firmware/spindle-node"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            deadline = asyncio.get_running_loop().time() + 30
            while True:  # the node is up: the route reads the body only then
                try:
                    async with session.get(f"{base}/healthz") as resp:
                        health = await resp.json()
                    if health["devices"]["spindle-node"]["state"] == "up":
                        break
                except aiohttp.ClientConnectionError:
                    pass
                assert asyncio.get_running_loop().time() < deadline, "the node never came up"
                await asyncio.sleep(0.1)
            # the same code paths with small bodies first (imports, buffers, the temp file)
            for _ in range(3):
                assert (await _post(session, url, b"junk" * 20))[0] == 400
                assert (await _post(session, url, _chunks(1)))[0] == 400
            gateway = psutil.Process(proc.pid)
            before = gateway.memory_info().rss
            big = b"\xa5" * (BODY_MIB * MIB)
            for _ in range(3):
                status, text = await _post(session, url, big)  # Content-Length: 40 MiB
                assert status == 413 and "larger than 16777216 bytes" in text, (status, text)
                status, text = await _post(session, url, _chunks(BODY_MIB))  # chunked
                assert status == 413 and "larger than 16777216 bytes" in text, (status, text)
            after = gateway.memory_info().rss
            assert (await _post(session, url, b"junk" * 20))[0] == 400  # still serving
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
    grown = (after - before) / MIB
    assert grown < 6, f"RSS grew {grown:.1f} MiB over six refused {BODY_MIB} MiB bodies"
    assert not list((tmp_path / "state").glob("firmware-upload-*"))  # no temp file left
