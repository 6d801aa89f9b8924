"""The console's data routes on a real gateway (aiohttp on loopback, a real Mosquitto, a
simulated meter): the tag list with last good values, the trend ring, the event stream
(status every tick, only changed tags), the shell public and the data behind a login."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.console import ROUTE_ROLES
from gateway.http_api import ROUTE_ROLES as API_ROLES
from hil.broker import MqttBroker
from hil.devices.modbus_meter import ModbusMeterSimulator
from hil.process.energy_meter import EnergyMeterModel
from tests.integration.gateway_harness import gateway_config, meter_device, running
from tests.waiting import until

pytestmark = pytest.mark.broker


async def events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, Any]]:
    """The (event, data) pairs of a text/event-stream response, as they come."""
    event, data = "message", []
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and data:
            text = "\n".join(data)
            yield event, json.loads(text) if text[:1] in "{[" else text
            event, data = "message", []


def test_every_console_route_has_a_role_in_the_api_table() -> None:
    assert set(ROUTE_ROLES) <= set(API_ROLES)
    data = {name: role for name, role in ROUTE_ROLES.items() if name.startswith("console-")
            and role is not None}
    assert set(data) == {"console-tags", "console-events", "console-trend", "console-messages"}


async def test_tags_trend_and_stream_of_a_running_line(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    async with ModbusMeterSimulator(EnergyMeterModel(seed=3, time_scale=10.0)) as sim:
        config = gateway_config(tmp_path, mosquitto.port, [meter_device("meter", sim.port)])
        async with running(config) as gw, aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{gw.gateway.http_port}"

            async def tags() -> dict[str, Any]:
                async with http.get(f"{base}/api/console/tags") as resp:
                    assert resp.status == 200
                    return dict(await resp.json())

            async def voltage_good() -> dict[str, Any] | None:
                body = await tags()
                ids = {t["tag"]: t["id"] for t in body["tags"]}
                rows = {r["i"]: r for r in body["values"]["rows"]}
                row = rows.get(ids["meter.voltage"])
                good = row is not None and row["q"] == 0 and row["v"] is not None
                return body if good and "gv" not in row else None

            body = await until(voltage_good, "meter.voltage good in the console's tag list")
            meta = {t["tag"]: t for t in body["tags"]}["meter.voltage"]
            assert meta["unit"] == "V" and meta["numeric"] and meta["device"] == "meter"
            assert body["qualities"][:4] == ["good", "uncertain", "bad", "stale"]

            # the shell is public; a trend of the ring, and its refusals
            async with http.get(f"{base}/console/") as resp:
                assert resp.status == 200 and "uPlot" in await resp.text()
            async with http.get(f"{base}/console/vendor/uPlot.iife.min.js") as resp:
                assert resp.status == 200
            async with http.get(f"{base}/console/nothing.js") as resp:
                assert resp.status == 404

            async def trend() -> dict[str, Any] | None:
                async with http.get(f"{base}/api/console/trend",
                                    params={"tag": "meter.voltage", "seconds": "60"}) as resp:
                    got = dict(await resp.json())
                return got if sum(v is not None for v in got["v"][0]) >= 2 else None

            got = await until(trend, "two points of meter.voltage in the ring")
            assert len(got["ts"]) == len(got["v"][0]) == len(got["q"][0])
            assert got["ts"] == sorted(got["ts"])
            for params, status in (({"tag": "meter.nothing"}, 404), ({}, 400),
                                   ({"tag": "meter.voltage", "seconds": "x"}, 400)):
                async with http.get(f"{base}/api/console/trend", params=params) as resp:
                    assert resp.status == status, params

            # the stream: a status each tick, then only what changed since the list's seq
            async with http.get(f"{base}/api/console/events",
                                params={"since": str(body["seq"])}) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/event-stream")
                seen: dict[str, Any] = {}
                async for event, data in events(resp):
                    seen.setdefault(event, data)
                    if {"status", "tags"} <= set(seen):
                        break
            status = seen["status"]
            assert status["summary"]["devices"] == 1 and status["devices"][0]["name"] == "meter"
            assert "samples_per_s" in status["devices"][0]
            assert all(r["i"] in {t["id"] for t in body["tags"]} for r in seen["tags"]["rows"])
            assert seen["tags"]["seq"] > body["seq"]


async def test_off_loopback_or_without_anonymous_access_the_data_needs_a_login(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    config = gateway_config(tmp_path, mosquitto.port, [meter_device("meter", 1)],
                            http={"auth": {"anonymous_loopback": "none"}})
    async with running(config) as gw, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{gw.gateway.http_port}"
        for path in ("/api/console/tags", "/api/console/events",
                     "/api/console/trend?tag=x", "/api/console/messages"):
            async with http.get(base + path) as resp:
                assert resp.status == 401, path
        async with http.get(f"{base}/console/console.js") as resp:
            assert resp.status == 200


async def test_a_model_output_carries_its_alarm_thresholds_as_bands(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    """The demo's line with a model whose alarm is set above 0.5: the output tag has the
    band the chart draws, and the alarm is in the status."""
    from tests.integration.test_status_page_browser import demo_line, energy_model_folder

    async with demo_line(tmp_path, mosquitto, {}, energy_model_folder(tmp_path)) as gw, \
            aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{gw.gateway.http_port}"

        async def output() -> dict[str, Any] | None:
            async with http.get(f"{base}/api/console/tags") as resp:
                tags = {t["tag"]: t for t in (await resp.json())["tags"]}
            tag = tags.get("models.kpi/power_mean")  # declared at start, banded once loaded
            return tag if tag is not None and "bands" in tag else None

        tag = await until(output, "the model's output with its band in the console's tags")
        assert tag["bands"] == [{"alarm": "drawing_power", "above": 0.5}]
        async with http.get(f"{base}/api/console/events") as resp:
            async for event, data in events(resp):
                if event == "status" and data.get("models", {}).get("alarms"):
                    break
        assert [a["tag"] for a in data["models"]["alarms"]] == ["models.kpi/drawing_power"]


async def test_the_messages_published_come_decoded_with_sparkplug_aliases_resolved(
    tmp_path: Path, mosquitto: MqttBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.console.messages

    monkeypatch.setattr(gateway.console.messages, "LOOKED_S", 3.0)
    async with ModbusMeterSimulator(EnergyMeterModel(seed=4, time_scale=10.0)) as sim:
        config = gateway_config(tmp_path, mosquitto.port, [meter_device("meter", sim.port)],
                                format="sparkplug")
        async with running(config) as gw, aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{gw.gateway.http_port}"

            async def data_with_voltage() -> list[dict[str, Any]] | None:
                async with http.get(f"{base}/api/console/messages",
                                    params={"filter": "meter.voltage"}) as resp:
                    assert resp.status == 200
                    got = (await resp.json())["messages"]
                return [m for m in got if "/DDATA/" in m["topic"]] or None

            found = await until(data_with_voltage, "a DDATA message with meter.voltage")
            sample = found[-1]["samples"][0]
            assert sample["tag"] == "meter.voltage" and 150 < sample["value"] < 300, sample
            assert found[-1]["kind"] == "data" and found[-1]["msg_seq"] is not None
            # births: kept once someone looks, as any message (a rebirth asked for here)
            nb = gw.gateway.northbound
            assert nb is not None
            nb.rebirth()

            async def with_birth() -> dict[str, Any] | None:
                async with http.get(f"{base}/api/console/messages") as resp:
                    got = dict(await resp.json())
                return got if any("/NBIRTH/" in m["topic"] for m in got["messages"]) else None

            everything = await until(with_birth, "a birth among the messages")
            async with http.get(f"{base}/api/console/messages",
                                params={"since": str(everything["seq"])}) as resp:
                later = await resp.json()
            assert all(m["seq"] > everything["seq"] for m in later["messages"])
            # nobody looks any more: the log lets go of the publisher and of what it kept
            assert nb.watchers
            await until(lambda: not nb.watchers, "the console stopped watching the publisher")


async def test_a_stream_ends_by_itself_and_after_a_logout_the_next_one_is_refused(
    tmp_path: Path, mosquitto: MqttBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.console
    from gateway.access import Role, UserStore, hash_password

    monkeypatch.setattr(gateway.console, "STREAM_S", 1.0)
    UserStore(tmp_path / "state" / "users.json").add("vic", Role.VIEWER,
                                                     hash_password("glass window 3x"))
    config = gateway_config(tmp_path, mosquitto.port, [meter_device("meter", 1)],
                            http={"auth": {"anonymous_loopback": "none"}})
    async with running(config) as gw, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{gw.gateway.http_port}"
        async with http.post(f"{base}/api/login",
                             json={"user": "vic", "password": "glass window 3x"}) as resp:
            auth = {"Authorization": f"Bearer {(await resp.json())['token']}"}
        async with http.get(f"{base}/api/console/events", headers=auth) as resp:
            assert resp.status == 200
            seen = [event async for event, _ in events(resp)]  # ends by itself
        assert "status" in seen
        async with http.post(f"{base}/api/logout", headers=auth) as resp:
            assert resp.status == 200
        async with http.get(f"{base}/api/console/events", headers=auth) as resp:
            assert resp.status == 401
