"""The status page in a real headless browser (Debian's chromium driven by Playwright):
the demo's line (two simulated Modbus meters, a real Mosquitto, the gateway with
``config/demo.yaml``) shows up, updates, filters and sorts; off loopback the page asks
for the token and shows nothing without it.

Chromium missing is a failure, not a skip: ``scripts/bootstrap.sh`` installs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config.loader import load_config
from gateway.config.models import GatewayConfig, HttpConfig, ModelsConfig
from hil.broker import MqttBroker
from hil.devices.modbus_generic import ModbusGenericSimulator
from hil.devices.modbus_meter import ModbusMeterSimulator
from hil.process.energy_meter import EnergyMeterModel, MeterParams
from tests.edge_models.helpers import identity_manifest, write_model
from tests.integration.gateway_harness import RunningGateway, gateway_config, running
from tests.integration.test_exact_values import WIDE_REGISTERS, modbus_tags, wide_map

pytestmark = pytest.mark.broker

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
DEMO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "demo.yaml"
DEMO_DEVICES = ("compressor-meter", "imm-meter")
TIMEOUT_MS = 20_000


@pytest.fixture
async def browser_page() -> AsyncIterator[Any]:
    """A page in a fresh headless chromium (own user-data-dir), closed after the test."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/bootstrap.sh as root (apt-get chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail("playwright is not installed in the venv (pip install playwright)")
    with tempfile.TemporaryDirectory(prefix="chenxing-chromium-") as profile:
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                context.set_default_timeout(TIMEOUT_MS)
                page = context.pages[0] if context.pages else await context.new_page()
                yield page
            finally:
                await context.close()


@contextlib.asynccontextmanager
async def demo_line(tmp: Path, broker: MqttBroker, http: dict[str, Any],
                    models: Path | None = None) -> AsyncIterator[RunningGateway]:
    """The demo's devices as ``chenxing-gateway demo`` wires them, in this event loop."""
    config: GatewayConfig = load_config(DEMO_CONFIG)
    sims: list[ModbusMeterSimulator] = []
    try:
        devices = []
        for i, device in enumerate(config.devices):
            if device.protocol != "modbus_tcp":  # the PLC and the MCU node: left down
                devices.append(device)
                continue
            params = MeterParams(initial_energy_kwh=18_250.0 + 7_300.0 * i,
                                 idle_power_kw=3.0 + 2.0 * i, running_power_kw=25.0 + 15.0 * i)
            sim = ModbusMeterSimulator(EnergyMeterModel(seed=i + 1, params=params,
                                                        time_scale=10.0), port=0)
            await sim.start()
            sims.append(sim)
            devices.append(device.model_copy(update={"port": sim.port}))
        nb = config.northbound
        config = config.model_copy(update={
            "gateway": config.gateway.model_copy(update={"state_dir": tmp / "state"}),
            "devices": devices,
            "northbound": nb.model_copy(update={"mqtt": nb.mqtt.model_copy(
                update={"host": broker.host, "port": broker.port})}),
            "http": HttpConfig.model_validate({**config.http.model_dump(), "port": 0, **http}),
        })
        if models is not None:
            config = config.model_copy(update={"models": ModelsConfig(
                enabled=True, dir=models, watch_interval=0, tick=0.05)})
        async with running(config) as gw:
            yield gw
    finally:
        for sim in sims:
            with contextlib.suppress(Exception):
                await sim.stop()


def api_tags(port: int) -> dict[str, dict[str, Any]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/tags", timeout=5) as resp:
        return {t["tag"]: t for t in json.loads(resp.read())["tags"]}


async def tag_cells(page: Any) -> dict[str, dict[str, str]]:
    """The tag table as shown: tag -> {value, quality, age} texts."""
    return await page.eval_on_selector_all(
        "#tags tbody tr",
        """rows => Object.fromEntries(rows.map(r => [r.dataset.tag, {
            value: r.querySelector('.value').textContent,
            quality: r.querySelector('.quality').textContent,
            age: r.querySelector('.age').textContent}]))""")


async def visible_tags(page: Any) -> list[str]:
    return await page.eval_on_selector_all("#tags tbody tr", "rows => rows.map(r => r.dataset.tag)")


def energy_model_folder(tmp: Path) -> Path:
    folder = tmp / "models"
    write_model(folder, "kpi", identity_manifest(
        inputs=[{"tag": "imm-meter.active_power", "aggregation": "mean", "window": "1s"}],
        cycle=None,
        trigger={"on": "interval", "every": "300ms", "settle": "100ms"},
        outputs=[{"name": "power_mean", "onnx": "kwh", "unit": "kW"}],
        alarms=[{"name": "drawing_power", "output": "power_mean", "above": 0.5}],
    ))
    return folder


async def test_page_shows_the_demo_line_updates_filters_and_sorts(
    tmp_path: Path, mosquitto: MqttBroker, browser_page: Any
) -> None:
    page = browser_page
    async with demo_line(tmp_path, mosquitto, {}, energy_model_folder(tmp_path)) as gw:
        base = f"http://127.0.0.1:{gw.gateway.http_port}/"
        requested: list[str] = []
        page.on("request", lambda req: requested.append(req.url))
        await page.goto(base)

        # devices and their state
        for name in DEMO_DEVICES:
            await page.wait_for_selector(
                f'#devices tr[data-device="{name}"][data-state="up"]')
        assert await page.text_content("#gw-id") == "demo-gw-01"
        await page.wait_for_function(
            "document.querySelector('#broker').textContent.startsWith('connected')")
        assert (await page.text_content("#version")).strip() not in ("", "—")

        # every demo tag with a value that matches the API's
        await page.wait_for_function(
            """() => [...document.querySelectorAll('#tags tbody tr')]
                     .filter(r => r.dataset.tag.includes('-meter.')
                                  && r.querySelector('.quality').textContent === 'good')
                     .length === 20""")
        shown = await tag_cells(page)
        api = await asyncio.to_thread(api_tags, gw.gateway.http_port)
        assert {t for t in shown if "-meter." in t} == {t for t in api if "-meter." in t}
        voltage = float(shown["imm-meter.voltage"]["value"])
        assert 200 < voltage < 260 and abs(voltage - api["imm-meter.voltage"]["value"]) < 15
        energy = float(shown["compressor-meter.energy_import"]["value"])
        assert 25_000 < energy < 26_000  # the demo's second meter starts at 25,550 kWh
        assert shown["imm-meter.voltage"]["age"].endswith(" s")

        # live: values, ages and the update time change without a reload
        before = await tag_cells(page)
        updated = await page.text_content("#updated")
        await page.wait_for_function(
            "u => document.querySelector('#updated').textContent !== u", arg=updated)
        await page.wait_for_function(
            """before => [...document.querySelectorAll('#tags tbody tr')].some(r =>
                 before[r.dataset.tag] &&
                 r.querySelector('.value').textContent !== before[r.dataset.tag].value)""",
            arg=before)
        after = await tag_cells(page)
        assert any(after[t]["age"] != before[t]["age"] for t in before), "ages never change"
        age = float(after["imm-meter.voltage"]["age"].split()[0])
        assert age < 10, after["imm-meter.voltage"]  # polled every 500 ms, shown ~every 1 s

        # the model's output and alarm
        await page.wait_for_selector('#model-outputs tr[data-tag="models.kpi/power_mean"]')
        await page.wait_for_selector('#alarms tr[data-tag="models.kpi/drawing_power"]')
        await page.wait_for_function(
            """() => { const r = document.querySelector(
                 '#model-outputs tr[data-tag="models.kpi/power_mean"] .value');
                 return r && Number.isFinite(parseFloat(r.textContent)); }""")

        # the filter: a substring, then a glob, then nothing
        await page.fill("#tag-filter", "compressor")
        await page.wait_for_function(
            "() => document.querySelectorAll('#tags tbody tr').length === 10")
        assert all(t.startswith("compressor-meter.") for t in await visible_tags(page))
        await page.fill("#tag-filter", "*.VOLTAGE")
        await page.wait_for_function(
            "() => document.querySelectorAll('#tags tbody tr').length === 2")
        assert sorted(await visible_tags(page)) == ["compressor-meter.voltage", "imm-meter.voltage"]
        # the filter holds across live updates
        updated = await page.text_content("#updated")
        await page.wait_for_function(
            "u => document.querySelector('#updated').textContent !== u", arg=updated)
        assert len(await visible_tags(page)) == 2
        await page.fill("#tag-filter", "")
        await page.wait_for_function(
            "() => document.querySelectorAll('#tags tbody tr').length >= 20")

        # sorting: tag descending, then value ascending (numbers, not text)
        await page.click('#tags th[data-sort="tag"]')
        names = await visible_tags(page)
        assert names == sorted(names, reverse=True)
        await page.fill("#tag-filter", "imm-meter.")
        await page.click('#tags th[data-sort="value"]')
        values = await page.eval_on_selector_all(
            "#tags tbody tr .value", "cells => cells.map(c => parseFloat(c.textContent))")
        numbers = [v for v in values if v == v]  # NaN (no value) sorts last
        assert numbers == sorted(numbers) and len(numbers) >= 8

        # nothing but the gateway was asked for anything
        assert requested and all(url.startswith(base) for url in requested), requested


async def test_a_user_logs_in_on_the_page_and_a_wrong_password_is_refused(
    tmp_path: Path, mosquitto: MqttBroker, browser_page: Any
) -> None:
    from gateway.access import Role, UserStore, hash_password

    page = browser_page
    UserStore(tmp_path / "state" / "users.json").add("vic", Role.VIEWER,
                                                     hash_password("glass window 3x"))
    async with demo_line(tmp_path, mosquitto, {"auth": {"anonymous_loopback": "none"}}) as gw:
        base = f"http://127.0.0.1:{gw.gateway.http_port}/"
        await page.goto(base)
        await page.wait_for_selector("#token-form", state="visible")
        await page.fill("#login-user", "vic")
        await page.fill("#login-password", "glass window 3X")
        await page.click("#token-form button")
        await page.wait_for_function(
            "() => document.querySelector('#banner').textContent.includes('Login refused')")
        assert await page.is_hidden("#content")
        await page.fill("#login-password", "glass window 3x")
        await page.click("#token-form button")
        await page.wait_for_selector('#devices tr[data-device="imm-meter"]')
        stored = await page.evaluate("Object.values(sessionStorage)")
        assert len(stored) == 1 and stored[0].startswith("chxs_")
        assert await page.input_value("#login-password") == ""
    logins = [json.loads(line) for line in (tmp_path / "state" / "audit.log").read_text()
              .splitlines()]
    assert [(e["user"], e["outcome"]) for e in logins if e["event"] == "login"] == [
        ("vic", "failed"), ("vic", "ok")]


async def test_off_loopback_the_page_asks_for_the_token_and_shows_nothing_without_it(
    tmp_path: Path, mosquitto: MqttBroker, browser_page: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = browser_page
    monkeypatch.setenv("TEST_PAGE_TOKEN", "page-token-42")
    http = {"bind": "0.0.0.0", "token": {"env": "TEST_PAGE_TOKEN"}}
    async with demo_line(tmp_path, mosquitto, http) as gw:
        base = f"http://127.0.0.1:{gw.gateway.http_port}/"
        statuses: dict[str, list[int]] = {}
        page.on("response", lambda r: statuses.setdefault(
            r.url.removeprefix(base).split("?")[0], []).append(r.status))

        await page.goto(base)
        await page.wait_for_selector("#token-form", state="visible")
        assert await page.is_hidden("#content")
        assert await page.eval_on_selector_all("#devices tbody tr", "rows => rows.length") == 0
        assert 401 in statuses["api/status"] and 200 in statuses[""]

        # a wrong token is refused and asked for again
        await page.fill("#token-input", "not-the-token")
        await page.click("#token-form button")
        await page.wait_for_function(
            "() => document.querySelector('#banner').textContent.includes('refused')")
        await page.wait_for_selector("#token-form", state="visible")
        assert await page.eval_on_selector_all("#devices tbody tr", "rows => rows.length") == 0

        # the right token: the page works, and the token stays in this tab's sessionStorage
        await page.fill("#token-input", "page-token-42")
        await page.click("#token-form button")
        for name in DEMO_DEVICES:
            await page.wait_for_selector(f'#devices tr[data-device="{name}"]')
        await page.wait_for_selector('#tags tr[data-tag="imm-meter.voltage"]')
        assert await page.is_hidden("#token-form")
        stored = await page.evaluate("Object.values(sessionStorage)")
        assert stored == ["page-token-42"]
        assert await page.evaluate("localStorage.length") == 0

        await page.reload()  # same tab: no new prompt
        await page.wait_for_selector('#devices tr[data-device="imm-meter"]')
        assert await page.is_hidden("#token-form")
        assert 200 in statuses["api/status"] and 200 in statuses["api/tags"]


async def test_64_bit_values_are_shown_exactly(
    tmp_path: Path, mosquitto: MqttBroker, browser_page: Any
) -> None:
    """A uint64 all-ones ("not available") and an int64 of 2^53+1 come through the API as
    JSON integers; a JS number would show 18446744073709552000 and 9007199254740992."""
    page = browser_page
    async with ModbusGenericSimulator(wide_map()) as meter:
        device = {"name": "meter", "protocol": "modbus_tcp", "host": "127.0.0.1",
                  "port": meter.port, "poll_interval": "100ms", "tags": modbus_tags()}
        async with running(gateway_config(tmp_path, mosquitto.port, [device])) as gw:
            await page.goto(f"http://127.0.0.1:{gw.gateway.http_port}/")
            for tag in ("meter.u_max_abcd", "meter.i_2_53_plus_1", "meter.i_min"):
                await page.wait_for_selector(f'#tags tr[data-tag="{tag}"] .quality:text("good")')
            shown = await tag_cells(page)
            # and sorting by value still works with them in the table
            await page.click('#tags th[data-sort="value"]')
            order = await visible_tags(page)
    expected = {f"meter.{name}": str(value) for name, _, _, value in WIDE_REGISTERS}
    assert {tag: shown[tag]["value"] for tag in expected} == expected
    assert order.index("meter.i_min") < order.index("meter.flow") < order.index("meter.u_max_abcd")
