"""The web console (/console/) in a real headless Chromium (Debian's, driven by Playwright)
against a running gateway, two simulated Modbus meters and a real Mosquitto, as a person on
the shop floor would use it: tiles and lamps follow a meter stopped and started, values
arrive by server-sent events, a BAD tag keeps its last good value greyed, the layout holds
at 1024 px without a word broken inside, zh-CN when the browser asks for it, a login off
loopback, a viewer cannot write, an operator's write (confirmed) reaches the meter.

Screenshots of each step go to the test's tmp_path (kept by pytest as artefacts).
Chromium missing is a failure, not a skip: ``scripts/bootstrap.sh`` installs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.access import Role, UserStore, hash_password
from gateway.config.loader import load_config
from hil.broker import MqttBroker
from hil.devices.modbus_generic import ModbusGenericSimulator
from hil.devices.modbus_map import ModbusMap
from hil.devices.modbus_meter import ModbusMeterSimulator
from hil.devices.opcua_plc import OpcUaPlcSimulator
from hil.process.energy_meter import EnergyMeterModel
from hil.process.injection_moulding import InjectionMouldingModel
from hil.recorder import TelemetryRecorder
from tests.integration.gateway_harness import (
    METER_TAGS,
    RunningGateway,
    gateway_body,
    gateway_config,
    meter_device,
    running,
)
from tests.integration.test_status_page_browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS
from tests.waiting import until

pytestmark = pytest.mark.broker

SETPOINT = {"name": "power_limit", "table": "holding", "address": 101, "type": "float32",
            "unit": "kW", "writable": True, "range": [0, 100]}
DEVICES = ("press-meter", "oven-meter-1")

#: a word (a run of letters, digits and name punctuation) drawn on more than one line
BROKEN_WORDS_JS = """() => {
  const broken = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || parent.closest('[hidden]') || parent.closest('dialog:not([open])')) continue;
    const re = /[A-Za-z0-9][A-Za-z0-9_.:\\/-]*[A-Za-z0-9]/g;
    let m;
    while ((m = re.exec(node.data)) !== null) {
      const range = document.createRange();
      range.setStart(node, m.index);
      range.setEnd(node, m.index + m[0].length);
      const tops = new Set([...range.getClientRects()].filter(r => r.width > 0)
        .map(r => Math.round(r.top)));
      if (tops.size > 1) broken.push(m[0]);
    }
  }
  return broken;
}"""

OVERFLOW_JS = """() => ({scroll: document.documentElement.scrollWidth,
                   client: document.documentElement.clientWidth})"""


@contextlib.asynccontextmanager
async def browser(**options: Any) -> AsyncIterator[Any]:
    """A page of a fresh headless Chromium (own profile) with ``options`` (viewport, locale)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/bootstrap.sh as root (apt-get chromium)")
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory(prefix="chenxing-chromium-") as profile:
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, **options)
            try:
                context.set_default_timeout(TIMEOUT_MS)
                yield context.pages[0] if context.pages else await context.new_page()
            finally:
                await context.close()


@contextlib.asynccontextmanager
async def line(tmp: Path, broker: MqttBroker, http: dict[str, Any] | None = None
               ) -> AsyncIterator[tuple[RunningGateway, list[ModbusMeterSimulator]]]:
    """Two meters (the first with a writable setpoint) and a gateway with writes on."""
    sims = [ModbusMeterSimulator(EnergyMeterModel(seed=i + 1, time_scale=10.0))
            for i in range(len(DEVICES))]
    try:
        for sim in sims:
            await sim.start()
        devices = [meter_device(DEVICES[0], sims[0].port, tags=[*METER_TAGS, SETPOINT]),
                   meter_device(DEVICES[1], sims[1].port)]
        config = gateway_config(tmp, broker.port, devices, http=http or {},
                                commands={"enabled": True})
        async with running(config) as gw:
            yield gw, sims
    finally:
        for sim in sims:
            with contextlib.suppress(Exception):
                await sim.stop()


def console_url(gw: RunningGateway) -> str:
    return f"http://127.0.0.1:{gw.gateway.http_port}/console/"


async def shot(page: Any, tmp: Path, name: str) -> None:
    await page.screenshot(path=str(tmp / f"console-{name}.png"), full_page=True)


async def tile_text(page: Any, device: str) -> str:
    return str(await page.text_content(f'#tiles .tile[data-device="{device}"]'))


async def row(page: Any, tag: str) -> dict[str, str]:
    return await page.eval_on_selector(
        f'#tags tr[data-tag="{tag}"]',
        """r => ({value: r.querySelector('.value').textContent,
                 valueClass: r.querySelector('.value').className,
                 quality: r.querySelector('.quality').className,
                 age: r.querySelector('.age').textContent,
                 write: r.querySelectorAll('button.write').length})""")


async def test_tiles_follow_a_meter_stopped_and_started_live_by_server_sent_events(
    tmp_path: Path, mosquitto: MqttBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.console

    monkeypatch.setattr(gateway.console, "STREAM_S", 3600.0)  # one stream for the whole test
    async with line(tmp_path, mosquitto) as (gw, sims), browser() as page:
        requested: list[str] = []
        page.on("request", lambda req: requested.append(req.url))
        await page.goto(console_url(gw))
        for name in DEVICES:
            await page.wait_for_selector(f'#tiles .tile[data-device="{name}"][data-state="up"]')
        assert await page.eval_on_selector(
            f'#tiles .tile[data-device="{DEVICES[0]}"] .lamp', "e => e.className") == "lamp s-up"
        await page.wait_for_function(
            "() => document.querySelector('#sum-devices').textContent === '2 / 2'")
        await page.wait_for_function(
            "() => document.querySelector('#sum-broker').classList.contains('q-good')")
        text = await tile_text(page, DEVICES[0])
        assert "modbus_tcp" in text and "up since 20" in text, text  # ISO-like date
        await page.wait_for_function(f"""() => /[1-9][0-9.]* samples\\/s/.test(
            document.querySelector('#tiles .tile[data-device="{DEVICES[0]}"]').textContent)""")
        await shot(page, tmp_path, "1-overview")

        # the tags: values arrive by the stream and change without a reload
        await page.click('#tabs a[data-tab="tags"]')
        voltage = f"{DEVICES[1]}.voltage"
        await page.wait_for_selector(f'#tags tr[data-tag="{voltage}"] .quality.q-good')
        before = (await row(page, voltage))["value"]
        await page.wait_for_function(
            f"""v => document.querySelector('#tags tr[data-tag="{voltage}"] .value')
                     .textContent !== v""", arg=before)
        # sparklines drawn from the trend ring
        await page.wait_for_function(f"""() => {{
            const c = document.querySelector('#tags tr[data-tag="{voltage}"] canvas');
            return c && c.getContext('2d').getImageData(0, 0, c.width, c.height).data
              .some((x, i) => i % 4 === 3 && x > 0); }}""")
        await shot(page, tmp_path, "2-tags")

        # a meter stops: red lamp, "down for N s", its tags keep their last value, greyed
        await sims[1].stop()
        await page.click('#tabs a[data-tab="overview"]')
        tile = f'#tiles .tile[data-device="{DEVICES[1]}"]'
        await page.wait_for_selector(f'{tile}[data-state="down"]')
        assert await page.eval_on_selector(f"{tile} .lamp", "e => e.className") == "lamp s-down"
        await page.wait_for_function(
            f"() => /down for [0-9]+ s/.test(document.querySelector('{tile}').textContent)")
        await page.wait_for_function(
            "() => document.querySelector('#sum-devices').textContent === '1 / 2'")
        await page.wait_for_function(
            "() => /^[1-9]/.test(document.querySelector('#sum-bad').textContent)")
        await shot(page, tmp_path, "3-meter-down")
        await page.click('#tabs a[data-tab="tags"]')
        await page.wait_for_selector(f'#tags tr[data-tag="{voltage}"] .value.last-good')
        shown = await row(page, voltage)
        assert shown["quality"] in ("quality q-bad", "quality q-stale"), shown
        assert 150 < float(shown["value"]) < 300, shown  # the last good voltage, not "-"
        await shot(page, tmp_path, "4-last-good")

        # back up: green again, "up since"
        await sims[1].start()
        await page.click('#tabs a[data-tab="overview"]')
        await page.wait_for_selector(f'{tile}[data-state="up"]', timeout=60_000)
        assert "up since" in await tile_text(page, DEVICES[1])
        await page.wait_for_function(
            "() => document.querySelector('#sum-devices').textContent === '2 / 2'")

        # recent warnings: the gateway's own lines only (the libraries' are counted)
        sources = await page.eval_on_selector_all(
            "#errors tbody tr td:nth-child(3)", "cells => cells.map(c => c.textContent)")
        assert all(s.split(".")[0] in ("gateway", "drivers", "edge_models", "firmware_bridge")
                   for s in sources), sources

        # trends: a chosen tag's chart over the ring
        await page.click('#tabs a[data-tab="trends"]')
        await page.fill("#chart-add", voltage)
        await page.click("#chart-add-button")
        await page.wait_for_selector("#chart[data-series='1'] canvas")
        await shot(page, tmp_path, "5-trend")

        # the messages published, decoded and filtered
        await page.click('#tabs a[data-tab="messages"]')
        await page.fill("#msg-filter", voltage)
        await page.wait_for_function(f"""() => [...document.querySelectorAll(
            '#messages tbody tr[data-kind="data"] td.msg')].some(
              c => /{voltage.replace(".", "[.]")} = [0-9]/.test(c.textContent))""")
        await shot(page, tmp_path, "6-messages")

        # one stream, nothing polled: no status or tag-list requests after the first
        streams = [u for u in requested if "/api/console/events" in u]
        assert len(streams) == 1, streams
        assert not [u for u in requested if u.endswith("/api/status") or "/api/tags" in u]
        assert all(u.startswith(console_url(gw).removesuffix("console/")) for u in requested)


async def test_layout_at_1024_px_and_on_a_laptop_in_chinese_and_english(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    async with line(tmp_path, mosquitto) as (gw, _sims), \
            browser(viewport={"width": 1024, "height": 768}, locale="zh-CN") as page:
        await page.goto(console_url(gw))
        await page.wait_for_selector(f'#tiles .tile[data-device="{DEVICES[1]}"][data-state="up"]')
        assert await page.evaluate("document.documentElement.lang") == "zh-CN"
        assert await page.text_content('#tabs a[data-tab="overview"]') == "总览"
        assert "自 20" in await tile_text(page, DEVICES[0])  # 自 2026-… 起在线
        for width, lang in ((1024, "zh-CN"), (1024, "en"), (1400, "en"), (1400, "zh-CN")):
            await page.set_viewport_size({"width": width, "height": 800})
            if await page.evaluate("document.documentElement.lang") != lang:
                await page.click("#lang")
                await page.wait_for_function(
                    f"() => document.documentElement.lang === '{lang}'")
            for tab in ("overview", "tags", "trends", "messages"):
                await page.click(f'#tabs a[data-tab="{tab}"]')
                if tab == "tags":
                    await page.wait_for_selector(f'#tags tr[data-tag="{DEVICES[1]}.voltage"]')
                size = await page.evaluate(OVERFLOW_JS)
                assert size["scroll"] <= size["client"], (width, lang, tab, size)
                broken = await page.evaluate(BROKEN_WORDS_JS)
                assert broken == [], (width, lang, tab, broken)
                await shot(page, tmp_path, f"{width}-{lang}-{tab}")


async def test_a_login_is_needed_a_viewer_cannot_write_an_operator_writes_with_confirmation(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    users = UserStore(tmp_path / "state" / "users.json")
    users.add("vic", Role.VIEWER, hash_password("glass window 3x"))
    users.add("olga", Role.OPERATOR, hash_password("steel press 7y"))
    setpoint = f"{DEVICES[0]}.power_limit"
    async with line(tmp_path, mosquitto, {"auth": {"anonymous_loopback": "none"}}) as (gw, sims), \
            browser() as page:
        statuses: dict[str, list[int]] = {}
        page.on("response", lambda r: statuses.setdefault(r.url.split("?")[0], []).append(r.status))
        await page.goto(console_url(gw))
        await page.wait_for_selector("#login", state="visible")
        assert await page.is_hidden("#content")
        assert await page.eval_on_selector_all("#tiles .tile", "t => t.length") == 0
        assert 401 in statuses[console_url(gw).removesuffix("console/") + "api/me"]
        await shot(page, tmp_path, "login")

        # a viewer sees, has no write button, and the API refuses the write anyway
        await log_in(page, "vic", "glass window 3x")
        await page.wait_for_selector(f'#tiles .tile[data-device="{DEVICES[0]}"]')
        await page.click('#tabs a[data-tab="tags"]')
        await page.wait_for_selector(f'#tags tr[data-tag="{setpoint}"] .quality.q-good')
        assert (await row(page, setpoint))["write"] == 0
        refused = await page.evaluate("""async (tag) => {
            const r = await window.ChxApi.api('api/writes', {method: 'POST',
              headers: {'Content-Type': 'application/json'},
              body: JSON.stringify({writes: [{tag, value: 20}]})});
            return r.status; }""", setpoint)
        assert refused == 403
        assert sims[0].get_value("power_limit") == pytest.approx(50.0)

        # an operator: the write is checked, confirmed, then reaches the meter
        await page.click("#logout")
        await log_in(page, "olga", "steel press 7y")
        await page.click('#tabs a[data-tab="tags"]')
        button = f'#tags tr[data-tag="{setpoint}"] button.write'
        await page.wait_for_selector(button)
        await page.click(button)
        await page.fill("#write-value", "250")  # outside [0, 100]: refused in the dialog
        await page.click("#write-ok")
        await page.wait_for_function(
            "() => document.querySelector('#write-result').textContent.includes('outside')")
        assert await page.is_hidden("#write-confirm")
        await page.fill("#write-value", "12.5")
        await page.click("#write-ok")
        await page.wait_for_selector("#write-confirm", state="visible")
        assert sims[0].get_value("power_limit") == pytest.approx(50.0)  # not before the confirm
        await shot(page, tmp_path, "write-confirm")
        await page.click("#write-ok")
        await page.wait_for_function(
            "() => document.querySelector('#write-result').textContent.includes('accepted')")
        await until(lambda: sims[0].get_value("power_limit") == pytest.approx(12.5),
                    "the meter's power_limit is 12.5")
        await page.click("#write-cancel")
        await page.wait_for_function(f"""() => document.querySelector(
            '#tags tr[data-tag="{setpoint}"] .value').textContent === '12.5'""")
    audit = (tmp_path / "state" / "audit.log").read_text()
    assert '"user": "olga"' in audit or '"user":"olga"' in audit


async def test_the_tag_table_stays_usable_at_10000_tags(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    """10,000 tags of one simulated device: only the rows on screen are in the page, the
    last tag is reached by scrolling, its value moves, the filter narrows at once."""
    n = 10_000
    registers: list[dict[str, Any]] = [
        {"name": f"t{i:05d}", "table": "holding", "address": i, "type": "uint16",
         "value": i % 1000} for i in range(n)]
    registers[-1]["waveform"] = {"kind": "counter", "rate": 5.0}
    tags = [{"name": f"t{i:05d}", "table": "holding", "address": i, "type": "uint16"}
            for i in range(n)]
    async with ModbusGenericSimulator(ModbusMap.from_dict({"registers": registers})) as sim:
        device = {"name": "bank", "protocol": "modbus_tcp", "host": "127.0.0.1",
                  "port": sim.port, "poll_interval": "1s", "timeout": "2s", "tags": tags}
        config = gateway_config(tmp_path, mosquitto.port, [device])
        async with running(config) as gw, browser() as page:
            await page.goto(console_url(gw) + "#tags")
            await page.wait_for_function(
                "() => document.querySelector('#tag-count').textContent === '10000 of 10000'",
                timeout=60_000)
            await page.wait_for_selector('#tags tr[data-tag="bank.t00000"] .quality.q-good',
                                         timeout=60_000)
            rows = await page.eval_on_selector_all("#tags tbody tr", "r => r.length")
            assert 10 < rows < 100, rows
            await page.eval_on_selector("#vscroll", "e => { e.scrollTop = e.scrollHeight; }")
            last = "bank.t09999"
            await page.wait_for_selector(f'#tags tr[data-tag="{last}"] .quality.q-good',
                                         timeout=60_000)
            before = (await row(page, last))["value"]
            await page.wait_for_function(
                f"""v => document.querySelector('#tags tr[data-tag="{last}"] .value')
                         .textContent !== v""", arg=before)
            assert await page.eval_on_selector_all("#tags tbody tr", "r => r.length") < 100
            await shot(page, tmp_path, "10k-bottom")
            await page.fill("#tag-filter", "bank.t0500?")
            await page.wait_for_function(
                "() => document.querySelectorAll('#tags tbody tr').length === 10")


async def test_an_admin_adds_a_meter_with_the_wizard_sees_it_publish_and_rolls_it_back(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    """The Configure tab against the real config API: log in as admin, add a Modbus meter of
    the HIL simulator (connection test, scan, three tags ticked and named, the diff
    previewed, applied), its values reach an MQTT subscriber and its sparkline moves; roll
    back to the first version and the meter is gone; a viewer has no Configure tab and the
    API refuses a viewer's change."""
    users = UserStore(tmp_path / "state" / "users.json")
    users.add("ann", Role.ADMIN, hash_password("harbour lights 41"))
    users.add("vic", Role.VIEWER, hash_password("glass window 3x"))
    first = ModbusMeterSimulator(EnergyMeterModel(seed=1, time_scale=10.0))
    added = ModbusMeterSimulator(EnergyMeterModel(seed=2, time_scale=10.0))
    async with first, added:
        body = gateway_body(tmp_path, mosquitto.port, [meter_device(DEVICES[0], first.port)],
                            http={"auth": {"anonymous_loopback": "none"}})
        path = tmp_path / "gateway.yaml"
        path.write_text("# the line, by hand\n" + yaml.safe_dump(json.loads(json.dumps(body)),
                                                                 sort_keys=False))
        with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec:
            async with running(load_config(path), config_path=path) as gw, browser() as page:
                await page.goto(console_url(gw))
                await log_in(page, "ann", "harbour lights 41")
                await page.click('#tabs a[data-tab="config"]')
                await page.wait_for_selector('#wz-protocol option[value="modbus_tcp"]',
                                             state="attached")
                await page.select_option("#wz-protocol", "modbus_tcp")
                await page.fill("#wz-name", "oven-meter")
                await page.fill('#wz-fields input[data-field="host"]', "127.0.0.1")
                await page.fill('#wz-fields input[data-field="port"]', str(added.port))
                await page.fill('#wz-fields input[data-field="poll_interval"]', "100ms")
                await page.select_option("#wz-table", "input")  # the test reads input 0
                await page.click("#wz-test")
                await shot(page, tmp_path, "wizard-test")
                await page.wait_for_function(
                    "() => /^(OK|FAILED)/.test("
                    "document.querySelector('#wz-test-result').textContent)")
                said = str(await page.text_content("#wz-test-result"))
                assert said.startswith("OK: connected"), said
                await page.fill("#wz-count", "6")
                await page.click("#wz-discover")
                picks = {"input:0:float32 ABCD": ("voltage", "V"),
                         "input:2:float32 ABCD": ("current", "A"),
                         "input:4:float32 ABCD": ("active_power", "kW")}
                for key, (name, unit) in picks.items():
                    row_ = f'#wz-candidates tr[data-key="{key}"]'
                    await page.check(f"{row_} input[data-tick]")
                    await page.fill(f'{row_} input[data-edit="name"]', name)
                    await page.fill(f'{row_} input[data-edit="unit"]', unit)
                await shot(page, tmp_path, "wizard-ticked")
                await page.click("#wz-preview")
                await page.wait_for_selector("#cfg-apply", state="visible")
                diff = str(await page.text_content("#cfg-diff"))
                assert "+- name: oven-meter" in diff and "name: active_power" in diff, diff
                assert list(gw.gateway.runners) == [DEVICES[0]]  # a preview changes nothing
                await shot(page, tmp_path, "wizard-preview")
                await page.click("#cfg-apply")
                await page.wait_for_function(
                    "() => document.querySelector('#cfg-change-say').textContent"
                    ".startsWith('applied')")
                assert await rec.until(lambda s: len([x for x in s.samples
                                               if x.tag == "oven-meter.voltage"]) >= 3,
                                timeout=30)
                await page.click('#tabs a[data-tab="overview"]')
                await page.wait_for_selector('#tiles .tile[data-device="oven-meter"]'
                                             '[data-state="up"]')
                await page.click('#tabs a[data-tab="tags"]')
                await page.wait_for_function("""() => {
                    const c = document.querySelector(
                      '#tags tr[data-tag="oven-meter.voltage"] canvas');
                    return c && c.getContext('2d').getImageData(0, 0, c.width, c.height).data
                      .some((x, i) => i % 4 === 3 && x > 0); }""")
                await shot(page, tmp_path, "wizard-applied")

                # the added meter stops: red lamp, "down for N s", its tags keep their last
                # value, marked bad
                await added.stop()
                await page.click('#tabs a[data-tab="overview"]')
                tile = '#tiles .tile[data-device="oven-meter"]'
                await page.wait_for_selector(f'{tile}[data-state="down"]')
                assert await page.eval_on_selector(f"{tile} .lamp", "e => e.className") == \
                    "lamp s-down"
                await page.wait_for_function(
                    f"() => /down for [0-9]+ s/.test(document.querySelector('{tile}')"
                    ".textContent)")
                await page.click('#tabs a[data-tab="tags"]')
                await page.wait_for_selector(
                    '#tags tr[data-tag="oven-meter.voltage"] .value.last-good')
                shown = await row(page, "oven-meter.voltage")
                assert 150 < float(shown["value"]) < 300, shown
                assert shown["quality"] in ("quality q-bad", "quality q-stale"), shown
                await shot(page, tmp_path, "wizard-meter-down")

                # back up, its settings edited: the poll interval, previewed and applied (an
                # edited device is connect-tested: it has to answer)
                await added.start()
                await page.click('#tabs a[data-tab="overview"]')
                await page.wait_for_selector(f'{tile}[data-state="up"]', timeout=60_000)
                await page.click('#tabs a[data-tab="config"]')
                await page.click('#cfg-devices tr[data-device="oven-meter"] button:text("edit")')
                await page.fill('#cfg-device-form input[data-setting="poll_interval"]', "200ms")
                await page.click("#cfg-device-preview")
                diff = await apply_previewed(page)
                assert "-  poll_interval: 100ms" in diff and "+  poll_interval: 200ms" in diff, diff

                # its tags exported as CSV, a unit changed in the file, imported (merge)
                await page.click('#cfg-devices tr[data-device="oven-meter"] button:text("tags")')
                async with page.expect_download() as download_info:
                    await page.click("#cfg-export-csv")
                download = await download_info.value
                saved = await download.path()
                csv_text = await asyncio.to_thread(Path(saved).read_text, encoding="utf-8-sig")
                assert "voltage" in csv_text and "active_power" in csv_text, csv_text
                await page.set_input_files("#cfg-import-file", files=[{
                    "name": "oven-meter-tags.csv", "mimeType": "text/csv",
                    "buffer": csv_text.replace(",kW", ",W").encode()}])
                await page.click("#cfg-import")
                diff = await apply_previewed(page)
                assert "-    unit: kW" in diff and "+    unit: W" in diff, diff

                # roll back to the first version: the meter is gone again
                await page.click('#tabs a[data-tab="config"]')
                await page.click('#cfg-history tr[data-version="1"] button:text("roll back")')
                await apply_previewed(page)
                await page.click('#tabs a[data-tab="overview"]')
                await page.wait_for_selector('#tiles .tile[data-device="oven-meter"]',
                                             state="detached")
                assert list(gw.gateway.runners) == [DEVICES[0]]

                # a viewer: no Configure tab, and the API says no
                await page.click("#logout")
                await log_in(page, "vic", "glass window 3x")
                assert await page.is_hidden('#tabs a[data-tab="config"]')
                status = await page.evaluate("""async () => (await window.ChxApi.api(
                    'api/config/devices/' + 'press-meter' + '?version=3',
                    {method: 'DELETE'})).status""")
                assert status == 403
                assert list(gw.gateway.runners) == [DEVICES[0]]


async def log_in(page: Any, user: str, password: str) -> None:
    await page.wait_for_selector("#login", state="visible")
    await page.fill("#login-user", user)
    await page.fill("#login-password", password)
    await page.click("#login button[type=submit]")
    await page.wait_for_selector("#content", state="visible")


async def test_an_admin_adds_an_opc_ua_plc_by_browsing_it(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    """OPC UA through the wizard: browse the HIL PLC (its own nodes only), tick two
    variables, the connection test reads them, apply, their values arrive in the table."""
    users = UserStore(tmp_path / "state" / "users.json")
    users.add("ann", Role.ADMIN, hash_password("harbour lights 41"))
    meter = ModbusMeterSimulator(EnergyMeterModel(seed=1, time_scale=10.0))
    plc = OpcUaPlcSimulator(InjectionMouldingModel(seed=7, time_scale=5.0), update_interval=0.05)
    async with meter, plc:
        body = gateway_body(tmp_path, mosquitto.port, [meter_device(DEVICES[0], meter.port)],
                            http={"auth": {"anonymous_loopback": "none"}})
        path = tmp_path / "gateway.yaml"
        path.write_text(yaml.safe_dump(json.loads(json.dumps(body)), sort_keys=False))
        async with running(load_config(path), config_path=path) as gw, browser() as page:
            await page.goto(console_url(gw) + "#config")
            await log_in(page, "ann", "harbour lights 41")
            await page.click('#tabs a[data-tab="config"]')
            await page.wait_for_selector('#wz-protocol option[value="opcua"]', state="attached")
            await page.select_option("#wz-protocol", "opcua")
            await page.fill("#wz-name", "press-plc")
            await page.fill('#wz-fields input[data-field="endpoint"]', plc.endpoint)
            await page.click("#wz-discover")
            melt = plc.node_id("Machine.MeltTemp")
            await page.wait_for_selector(f'#wz-candidates tr[data-key="{melt}"]')
            keys = await page.eval_on_selector_all("#wz-candidates tbody tr",
                                                   "rows => rows.map(r => r.dataset.key)")
            assert not any(k.startswith("i=") for k in keys), keys  # no server nodes
            await page.check(f'#wz-candidates tr[data-key="{melt}"] input[data-tick]')
            await page.fill(f'#wz-candidates tr[data-key="{melt}"] input[data-edit="unit"]',
                            "degC")
            await page.click("#wz-test")
            await page.wait_for_function(
                "() => /^(OK|FAILED)/.test(document.querySelector('#wz-test-result').textContent)")
            said = str(await page.text_content("#wz-test-result"))
            assert said.startswith("OK: connected"), said
            await page.click("#wz-preview")
            await apply_previewed(page)
            await page.click('#tabs a[data-tab="tags"]')
            await page.wait_for_selector('#tags tr[data-tag="press-plc.MeltTemp"] .quality.q-good')
            shown = await row(page, "press-plc.MeltTemp")
            assert float(shown["value"]) > 0, shown
            await shot(page, tmp_path, "opcua-added")


async def test_the_page_follows_the_stream_from_one_renewal_to_the_next(
    tmp_path: Path, mosquitto: MqttBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway ends each stream after STREAM_S (1 s here): the page opens the next one at
    once, without reading the tag list again or showing a banner, and keeps updating."""
    import gateway.console

    monkeypatch.setattr(gateway.console, "STREAM_S", 1.0)
    async with line(tmp_path, mosquitto) as (gw, _sims), browser() as page:
        requested: list[str] = []
        page.on("request", lambda req: requested.append(req.url))
        await page.goto(console_url(gw) + "#tags")
        voltage = f"{DEVICES[0]}.voltage"
        await page.wait_for_selector(f'#tags tr[data-tag="{voltage}"] .quality.q-good')
        await until(lambda: len([u for u in requested if "/api/console/events" in u]) >= 4,
                    "four streams opened one after the other")
        before = (await row(page, voltage))["value"]
        await page.wait_for_function(
            f"""v => document.querySelector('#tags tr[data-tag="{voltage}"] .value')
                     .textContent !== v""", arg=before)
        assert await page.is_hidden("#banner")
        assert len([u for u in requested if "/api/console/tags" in u]) == 1


async def apply_previewed(page: Any) -> str:
    """The change previewed on the Configure tab: wait for its diff, apply it, wait for
    'applied'; the diff it showed."""
    await page.wait_for_selector("#cfg-apply", state="visible")
    diff = str(await page.text_content("#cfg-diff"))
    await page.click("#cfg-apply")
    await page.wait_for_function(
        "() => document.querySelector('#cfg-change-say').textContent.startsWith('applied')")
    return diff
