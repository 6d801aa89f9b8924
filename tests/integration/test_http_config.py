"""The config API over real HTTP on a running gateway, with a real Mosquitto and the HIL
simulators (Modbus meter, OPC UA PLC): edits through the API while the other devices
publish every sample; the file keeps the engineer's comments; refusals (a device that
cannot connect, a stale version, a bad config, bad tag-list rows, a viewer) change
nothing; CSV and XLSX round trips; browse, scan and the connection test; the OpenAPI
document names every route and is valid; hostile requests get a clear 4xx."""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.access import Role, UserStore, hash_password
from gateway.config.loader import load_config
from gateway.http_api import ROUTE_ROLES
from gateway.http_openapi import route_names
from gateway.runtime.gateway import Gateway
from hil.broker import MqttBroker
from hil.devices.fins_plc import FinsPlcSimulator
from hil.devices.mc_plc import McPlcSimulator
from hil.devices.modbus_meter import meter_tag_configs
from hil.devices.opcua_plc import OpcUaPlcSimulator
from hil.devices.s7_plc import S7PlcSimulator
from hil.netutil import free_port
from hil.process.injection_moulding import InjectionMouldingModel
from hil.recorder import TelemetryRecorder
from tests.integration.gateway_harness import METER_TAGS, gateway_body, meter_device, running
from tests.integration.http_client import api_call
from tests.waiting import until

pytestmark = pytest.mark.broker

POLL_MS = 100
HEAD = "# plant config: written by hand, keep my comments\n"


class Api:
    def __init__(self, session: aiohttp.ClientSession, port: int,
                 token: str | None = None) -> None:
        self.session, self.base, self.token = session, f"http://127.0.0.1:{port}", token

    async def call(self, method: str, path: str, body: Any = None, data: bytes | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        return await api_call(self.session, method, self.base + path, self.token, body, data,
                              headers, as_bytes=True)  # fmt: skip

    async def version(self) -> int:
        status, body = await self.call("GET", "/api/config")
        assert status == 200, body
        return int(body["version"])


PASSWORDS = {"ann": "harbour lights 41", "otto": "steady torque 22", "vic": "glass window 3x"}
ROLES = {"ann": Role.ADMIN, "otto": Role.OPERATOR, "vic": Role.VIEWER}


def add_users(tmp_path: Path) -> None:
    """ann (admin), otto (operator), vic (viewer): the config API needs an admin's login."""
    store = UserStore(tmp_path / "state" / "users.json")
    for name, role in ROLES.items():
        store.add(name, role, hash_password(PASSWORDS[name]))


async def login(http: aiohttp.ClientSession, gw: Gateway, user: str = "ann") -> Api:
    assert gw.http_port is not None
    status, answer = await Api(http, gw.http_port).call(
        "POST", "/api/login", {"user": user, "password": PASSWORDS[user]})
    assert status == 200, answer
    return Api(http, gw.http_port, answer["token"])


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


def write_config(path: Path, body: dict[str, Any]) -> str:
    plain = json.loads(json.dumps(body))  # no list shared between devices: no YAML aliases
    text = HEAD + yaml.safe_dump(plain, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return text


def no_gap(gw: Gateway, stamps: list[int], device: str) -> None:
    """Every poll of ``device`` reached the broker, in order, none late past its overruns."""
    runner = gw.runners[device]
    assert len(stamps) == runner.stats.polls, "a poll of the device was not published"
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) > 0
    assert max(gaps) < POLL_MS * (2 + runner.stats.overruns), (max(gaps), runner.stats)


async def test_a_tag_added_and_a_device_removed_through_the_api_while_others_publish(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any, http: aiohttp.ClientSession
) -> None:
    port = waveform_meter.port
    body = gateway_body(tmp_path, mosquitto.port, [
        meter_device("steady", port), meter_device("grows", port), meter_device("gone", port)])
    path = tmp_path / "gateway.yaml"
    write_config(path, body)
    add_users(tmp_path)
    with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec:
        async with running(load_config(path), config_path=path) as run:
            gw = run.gateway
            api = await login(http, gw)
            steady = gw.runners["steady"]
            assert await rec.until(
                lambda s: len([x for x in s.samples if x.tag == "steady.voltage"]) >= 5,
                timeout=15)
            frequency = meter_tag_configs("frequency")
            # a dry run answers the diff and changes nothing
            status, preview = await api.call(
                "POST", "/api/config/devices/grows/tags?dry_run=1",
                {"version": 1, "tags": frequency})
            assert status == 200 and preview["outcome"] == "valid", preview
            assert preview["summary"] == "changed: grows"
            assert "+      - name: frequency\n" in preview["diff"] or \
                "+  - name: frequency\n" in preview["diff"], preview["diff"]
            assert await api.version() == 1 and gw.live.store.numbers() == [1]

            status, result = await api.call("POST", "/api/config/devices/grows/tags",
                                            {"version": 1, "tags": frequency})
            assert status == 200 and result["outcome"] == "applied", result
            assert (result["version"], result["devices"]) == (2, {"grows": "up"})
            status, result = await api.call("DELETE", "/api/config/devices/gone?version=2")
            assert status == 200 and result["outcome"] == "applied", result
            assert result["summary"] == "removed: gone"
            assert await rec.until(
                lambda s: len([x for x in s.samples if x.tag == "grows.frequency"]) >= 3,
                timeout=15)
            polls = steady.stats.polls
            await until(lambda: steady.stats.polls >= polls + 3)
            # the file is the version running, with the engineer's comment kept
            text = path.read_text(encoding="utf-8")
            assert text.startswith(HEAD) and text == gw.live.text
            status, tags = await api.call("GET", "/api/config/devices/grows/tags")
            assert [t["name"] for t in tags["tags"]][-1] == "frequency"
            status, history = await api.call("GET", "/api/config/history?last=5")
            assert [(v["version"], v["author"], v["source"]) for v in history["versions"]] == \
                [(3, "ann", "api"), (2, "ann", "api"), (1, "file", "file")]
            status, diff = await api.call("GET", "/api/config/versions/3/diff")
            assert status == 200 and "-- name: gone\n" in diff["diff"], diff
            await run.stop()
    assert gw.runners["steady"] is steady and steady.stats.connects == 1
    snap = rec.snapshot()
    no_gap(gw, [s.ts_ms for s in snap.samples if s.tag == "steady.voltage"], "steady")


async def test_refusals_change_nothing(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any, http: aiohttp.ClientSession
) -> None:
    port = waveform_meter.port
    body = gateway_body(tmp_path, mosquitto.port, [meter_device("meter", port)])
    body["management"] = {"watch": "1.5s", "connect_timeout": "1s"}
    path = tmp_path / "gateway.yaml"
    before = write_config(path, body)
    add_users(tmp_path)
    async with running(load_config(path), config_path=path) as run:
        gw = run.gateway
        api = await login(http, gw)
        await until(lambda: gw.runners["meter"].delivering, timeout=15)
        ghost = meter_device("ghost", free_port(), timeout="300ms")
        # a device that cannot connect: refused by the connect test
        status, result = await api.call("POST", "/api/config/devices",
                                        {"version": 1, "device": ghost})
        assert status == 409 and result["outcome"] == "connect_failed", result
        assert "ghost" in result["devices"]
        # a stale version: conflict
        status, result = await api.call("PUT", "/api/config/devices/meter/tags/voltage",
                                        {"version": 7, "tag": METER_TAGS[0]})
        assert status == 409 and result["outcome"] == "conflict", result
        assert "based on version 7, but version 1 runs now" in result["reason"]
        # a bad tag: the file's line and key, as validate says them
        bad = {**METER_TAGS[0], "type": "float99"}
        status, result = await api.call("PUT", "/api/config/devices/meter/tags/voltage",
                                        {"version": 1, "tag": bad},
                                        headers={"If-Match": '"1"'})
        assert status == 422 and result["outcome"] == "invalid", result
        (problem,) = result["problems"]
        assert problem["key"] == "devices[0].tags[0].type" and problem["line"] > 1
        assert problem["file"] == str(path)
        # a part that is not there, a name taken
        status, result = await api.call("DELETE", "/api/config/devices/nope?version=1")
        assert status == 404 and result["code"] == "not_found"
        status, result = await api.call("POST", "/api/config/devices",
                                        {"version": 1, "device": meter_device("meter", port)})
        assert status == 409 and "exists already" in result["error"]
        assert gw.live.version == 1 and path.read_text(encoding="utf-8") == before

        # without the connect test it is applied, then rolled back by itself
        text = before.replace("management:\n", "management:\n  connect_test: false\n")
        status, result = await api.call("POST", "/api/config/apply",
                                        {"version": 1, "text": text})
        assert status == 200 and result["outcome"] == "applied", result
        status, result = await api.call("POST", "/api/config/devices",
                                        {"version": 2, "device": ghost})
        assert status == 200 and result["outcome"] == "rolled_back", result
        assert result["rolled_back"] == 3 and result["version"] == 4
        assert set(gw.runners) == {"meter"}
        assert path.read_text(encoding="utf-8") == text
        # rollback through the API: back to version 1's text
        status, result = await api.call("POST", "/api/config/rollback", {"version": 4, "to": 1})
        assert status == 200 and result["outcome"] == "applied", result
        assert path.read_text(encoding="utf-8") == before


async def test_tag_lists_round_trip_as_csv_and_xlsx_and_bad_rows_are_refused(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any, http: aiohttp.ClientSession
) -> None:
    import openpyxl

    port = waveform_meter.port
    body = gateway_body(tmp_path, mosquitto.port, [meter_device("meter", port)])
    path = tmp_path / "gateway.yaml"
    write_config(path, body)
    add_users(tmp_path)
    async with running(load_config(path), config_path=path) as run:
        gw = run.gateway
        api = await login(http, gw)
        status, csv_data = await api.call("GET", "/api/config/devices/meter/tags.csv")
        assert status == 200 and csv_data.startswith(b"\xef\xbb\xbfname,")
        # the same list back: unchanged
        status, result = await api.call("POST", "/api/config/devices/meter/tags.csv"
                                        "?version=1&mode=replace", data=csv_data)
        assert status == 200 and result["outcome"] == "unchanged", result
        status, xlsx = await api.call("GET", "/api/config/devices/meter/tags.xlsx")
        assert status == 200 and xlsx[:2] == b"PK"
        status, result = await api.call("POST", "/api/config/devices/meter/tags.xlsx"
                                        "?version=1&mode=replace", data=xlsx)
        assert status == 200 and result["outcome"] == "unchanged", result

        # a sheet edited in a spreadsheet: a tag added (merge), previewed first
        book = openpyxl.load_workbook(io.BytesIO(xlsx))
        sheet = book.worksheets[0]
        header = [c.value for c in sheet[1]]
        new_row = {"name": "frequency", **{k: v for k, v in meter_tag_configs("frequency")[0]
                                           .items() if k != "name"}}
        for key in new_row:
            if key not in header:
                header.append(key)
                sheet.cell(row=1, column=len(header), value=key)
        sheet.append([new_row.get(k) if not isinstance(new_row.get(k), list | dict)
                      else json.dumps(new_row[k]) for k in header])
        out = io.BytesIO()
        book.save(out)
        status, result = await api.call("POST", "/api/config/devices/meter/tags.xlsx"
                                        "?version=1&dry_run=1", data=out.getvalue())
        assert status == 200 and result["outcome"] == "valid", result
        assert "+  - name: frequency\n" in result["diff"] and gw.live.version == 1
        status, result = await api.call("POST", "/api/config/devices/meter/tags.xlsx"
                                        "?version=1", data=out.getvalue())
        assert status == 200 and result["outcome"] == "applied", result
        assert gw.catalog.get("meter.frequency") is not None
        assert path.read_text(encoding="utf-8").startswith(HEAD)

        # bad rows: every one named with its row and column; nothing changes
        bad = (b"name,address,type\nok,0,float32\nbad_type,2,float99\n"
               b"bad_address,minus,uint16\n,4,uint16\n")
        status, result = await api.call("POST", "/api/config/devices/meter/tags.csv"
                                        "?version=2&mode=replace", data=bad)
        assert status == 422 and result["outcome"] == "invalid", result
        where = [(p["line"], p["key"]) for p in result["problems"]]
        assert (3, "type") in where and (4, "address") in where and (5, "name") in where, where
        assert all(p["file"] == "meter-tags.csv" for p in result["problems"])
        assert gw.live.version == 2
        status, result = await api.call("POST", "/api/config/devices/meter/tags.xlsx"
                                        "?version=2", data=b"PK\x03\x04 not a zip")
        assert status == 422 and "not an XLSX file" in result["problems"][0]["message"]
        status, result = await api.call("POST", "/api/config/devices/meter/tags.csv",
                                        data=csv_data)
        assert status == 400 and result["code"] == "version_required"


async def test_roles_a_viewer_may_not_apply_and_is_audited(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any, http: aiohttp.ClientSession
) -> None:
    add_users(tmp_path)
    body = gateway_body(tmp_path, mosquitto.port, [meter_device("meter", waveform_meter.port)],
                        http={"auth": {"anonymous_loopback": "none"}})
    path = tmp_path / "gateway.yaml"
    write_config(path, body)
    async with running(load_config(path), config_path=path) as run:
        gw = run.gateway
        text = gw.live.text + "# one more line\n"
        for user in ("vic", "otto"):
            api = await login(http, gw, user)
            status, answer = await api.call("POST", "/api/config/apply",
                                            {"version": 1, "text": text})
            assert status == 403 and "needs the admin role" in answer["error"], answer
            assert (await api.call("GET", "/api/config"))[0] == 403
            assert (await api.call("GET", "/api/config/schema"))[0] == 200
            assert (await api.call("GET", "/api/config/protocols"))[0] == 200
            assert (await api.call("GET", "/api/openapi.json"))[0] == 200
        admin = await login(http, gw)
        status, answer = await admin.call("POST", "/api/config/apply",
                                          {"version": 1, "text": text})
        assert status == 200 and answer["outcome"] == "applied", answer
        status, page = await admin.call("GET", "/api/audit?kind=denied,config")
        assert status == 200 and {e["event"] for e in page["entries"]} == {"denied", "config"}
    lines = [json.loads(line) for line in
             (tmp_path / "state" / "audit.log").read_text().splitlines()]
    denied = [(e["user"], e["path"]) for e in lines if e["event"] == "denied"]
    assert ("vic", "/api/config/apply") in denied and ("otto", "/api/config/apply") in denied
    changes = [e for e in lines if e["event"] == "config"]
    assert [(e["user"], e["via"], e["outcome"]) for e in changes] == [("ann", "api", "applied")]
    assert "+# one more line" in changes[0]["diff"]


async def test_openapi_names_every_route_and_is_valid_and_hostile_requests_get_4xx(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any, http: aiohttp.ClientSession
) -> None:
    from openapi_spec_validator import validate

    body = gateway_body(tmp_path, mosquitto.port, [meter_device("meter", waveform_meter.port)])
    path = tmp_path / "gateway.yaml"
    before = write_config(path, body)
    add_users(tmp_path)
    async with running(load_config(path), config_path=path) as run:
        gw = run.gateway
        api = await login(http, gw)
        status, document = await api.call("GET", "/api/openapi.json")
        assert status == 200
        validate(document)
        assert gw.http_api is not None
        registered = {(r.method, r.resource.canonical): r.name
                      for r in gw.http_api.app.router.routes()
                      if r.resource is not None and r.resource.canonical.startswith("/api")
                      and r.method != "HEAD"}
        described = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
        assert described == set(registered), (described ^ set(registered))
        assert route_names() == registered
        assert all(name in ROUTE_ROLES for name in registered.values())
        for p, ops in document["paths"].items():
            for op in ops.values():
                role = ROUTE_ROLES[op["operationId"]]
                assert op["x-role"] == (role.label if role else "public"), p

        # hostile requests: a clear 4xx, never a traceback, nothing changes
        huge = b'{"version": 1, "text": "' + b"x" * (33 * 1024 * 1024) + b'"}'
        hostile: list[tuple[str, str, dict[str, Any]]] = [
            ("POST", "/api/config/apply", {"data": huge,
                                           "headers": {"Content-Type": "application/json"}}),
            ("POST", "/api/config/apply", {"data": b"{not json",
                                           "headers": {"Content-Type": "application/json"}}),
            ("POST", "/api/config/apply", {"body": {"version": 1, "text": "a: 1",
                                                    "sneaky": True}}),
            ("POST", "/api/config/apply", {"body": {"version": "one", "text": "a: 1"}}),
            ("POST", "/api/config/apply", {"body": {"text": "a: 1"}}),
            ("POST", "/api/config/apply", {"body": ["a list"]}),
            ("POST", "/api/config/devices", {"body": {"version": 1, "device": "meter"}}),
            ("POST", "/api/config/devices/meter/tags", {"body": {"version": 1, "tags": []}}),
            ("PUT", "/api/config/devices/meter/tags/voltage",
             {"data": b'{"version": 1, "tag": {"name": "voltage", "deep": '
              + b"[" * 900 + b"]" * 900 + b"}}",
              "headers": {"Content-Type": "application/json"}}),
            ("POST", "/api/config/devices/meter/tags.csv?version=1",
             {"data": b'name,range\nx,"' + b"[" * 5000 + b'"\n'}),
            ("GET", "/api/config/versions/abc", {}),
            ("GET", "/api/config/versions/999", {}),
            ("GET", "/api/config/history?last=0", {}),
            ("GET", "/api/config/history?limit=3", {}),
            ("POST", "/api/config/rollback", {"body": {"version": 1, "to": True}}),
            ("POST", "/api/scan", {"body": {"device": {"protocol": "nope"}}}),
            ("POST", "/api/browse", {"body": {"device": meter_device("m", 1)}}),
            ("POST", "/api/config/test-connection", {"body": {"device": {"protocol":
                                                                          "modbus_tcp"}}}),
            ("POST", "/api/config/devices/meter/tags.csv?version=1",
             {"data": b"\xff\xfe\x00garbage"}),
        ]
        for method, route, kw in hostile:
            status, answer = await api.call(method, route, **kw)
            assert 400 <= status < 500, (route, status, answer)
            assert isinstance(answer, dict) and "Traceback" not in json.dumps(answer), answer
        assert gw.live.version == 1 and path.read_text(encoding="utf-8") == before


async def test_browse_scan_and_test_connection_use_the_cli_code(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any, http: aiohttp.ClientSession
) -> None:
    model = InjectionMouldingModel(seed=7, time_scale=5.0)
    async with OpcUaPlcSimulator(model, update_interval=0.05) as sim:
        body = gateway_body(tmp_path, mosquitto.port,
                            [meter_device("meter", waveform_meter.port)])
        path = tmp_path / "gateway.yaml"
        write_config(path, body)
        add_users(tmp_path)
        async with running(load_config(path), config_path=path) as run:
            api = await login(http, run.gateway)
            plc = {"name": "press", "protocol": "opcua", "endpoint": sim.endpoint}
            status, found = await api.call("POST", "/api/browse", {"device": plc, "depth": 3})
            assert status == 200, found
            by_id = {n["node_id"]: n for n in found["nodes"]}
            melt = by_id[sim.node_id("Machine.MeltTemp")]
            assert melt["tag"] == {"name": "MeltTemp", "node": melt["node_id"],
                                   "type": "float64"}
            assert melt["path"].endswith("MeltTemp") and melt["data_type"] == "Double"
            assert found["hidden"] > 0 and not any(n["node_id"].startswith("i=2253")
                                                   for n in found["nodes"])
            status, everything = await api.call("POST", "/api/browse",
                                                {"device": plc, "depth": 1, "builtin": True})
            assert status == 200 and any(n["name"] == "Server" for n in everything["nodes"])

            meter = {"name": "m", "protocol": "modbus_tcp", "host": "127.0.0.1",
                     "port": waveform_meter.port}
            status, scan = await api.call("POST", "/api/scan", {"device": meter,
                                                                "table": "input",
                                                                "start": 0, "count": 4})
            assert status == 200, scan
            assert [r["address"] for r in scan["rows"]] == [0, 1, 2, 3]
            assert 200 < scan["rows"][0]["as"]["float32 ABCD"] < 260  # the voltage

            async with S7PlcSimulator(port=0) as s7:
                status, bytes_ = await api.call("POST", "/api/scan", {
                    "device": {"name": "press", "protocol": "s7", "host": "127.0.0.1",
                               "port": s7.port}, "area": "DB3", "start": 0, "count": 32})
                assert status == 200, bytes_
                views = {r["address"]: r["as"] for r in bytes_["rows"]}
                assert views[2]["WORD"] == "54321" and views[4]["INT"] == "-1234"
                assert views[14]["REAL"] == "1.5" and views[18]["LREAL"] == "3.25"
                status, refused = await api.call("POST", "/api/scan", {
                    "device": {"name": "press", "protocol": "s7", "host": "127.0.0.1",
                               "port": s7.port}, "area": "DB9", "count": 4})
                assert status == 502 and "DB9 does not exist" in refused["error"], refused

            status, check = await api.call("POST", "/api/config/test-connection",
                                           {"device": meter_device("m", waveform_meter.port)})
            assert status == 200 and check["ok"] and check["reason"] == "connected and read"
            status, check = await api.call("POST", "/api/config/test-connection", {
                "device": meter_device("m", free_port(), timeout="300ms"), "timeout": 2})
            assert status == 200 and not check["ok"] and "connect" in check["reason"], check


async def test_fins_and_mc_ranges_are_scanned_through_the_api(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any, http: aiohttp.ClientSession
) -> None:
    import struct

    fins = FinsPlcSimulator(model_name="CJ2H-CPU68")
    mc = McPlcSimulator(series="iq-r", process=False)
    await fins.start()
    await mc.start()
    try:
        high, low = struct.unpack(">HH", struct.pack(">f", 230.5))
        fins.set_words("D100", [low, high, 0x4F4B, 0xFFFF])
        mc.load({"D": {100: 0xE979, 101: 0x42F6, 102: 0x4241}, "M": {1: 1}})
        body = gateway_body(tmp_path, mosquitto.port,
                            [meter_device("meter", waveform_meter.port)])
        path = tmp_path / "gateway.yaml"
        write_config(path, body)
        add_users(tmp_path)
        async with running(load_config(path), config_path=path) as run:
            api = await login(http, run.gateway)
            plc = {"name": "plc", "protocol": "fins", "host": "127.0.0.1", "port": fins.port}
            status, found = await api.call("POST", "/api/scan",
                                           {"device": plc, "start": "D100", "count": 4})
            assert status == 200, found
            assert "CJ2H-CPU68" in found["identity"]
            rows = {r["address"]: r for r in found["rows"]}
            assert rows["D100"]["as"]["float32"] == "230.5" and rows["D103"]["as"]["int16"] == "-1"
            status, refused = await api.call("POST", "/api/scan",
                                             {"device": plc, "start": "CIO0.01", "count": 2})
            assert status == 400 and "not a bit" in refused["error"], refused

            cpu = {"name": "cpu", "protocol": "mc", "host": "127.0.0.1", "port": mc.port,
                   "plc_series": "iq-r"}
            status, found = await api.call("POST", "/api/scan",
                                           {"device": cpu, "start": "D100", "count": 3})
            assert status == 200, found
            assert found["identity"] == "R04CPU" and found["start"] == "D100"
            first = found["rows"][0]
            assert first["word"] == 0xE979
            assert abs(first["as"]["float32 low_first"] - 123.456) < 1e-3
            status, bits = await api.call("POST", "/api/scan",
                                          {"device": cpu, "start": "M0", "count": 3})
            assert status == 200 and [r["bit"] for r in bits["rows"]] == [0, 1, 0], bits
    finally:
        await mc.stop()
        await fins.stop()


async def test_a_connection_test_on_a_serial_line_in_use_is_refused(
    tmp_path: Path, mosquitto: MqttBroker, http: aiohttp.ClientSession
) -> None:
    import time

    from hil.devices.modbus_meter import ModbusMeterSimulator
    from hil.process.energy_meter import WaveformMeter, WaveformParams

    async with ModbusMeterSimulator(WaveformMeter(WaveformParams(t0=time.time())),
                                    rtu=True) as sim:
        rtu = {"name": "bus-meter", "protocol": "modbus_rtu", "port": sim.serial_path,
               "baudrate": 19200, "unit_id": 1, "timeout": "150ms", "poll_interval": "100ms",
               "tags": [{"name": "voltage", "table": "input", "address": 0,
                         "type": "float32"}]}
        body = gateway_body(tmp_path, mosquitto.port, [rtu])
        path = tmp_path / "gateway.yaml"
        write_config(path, body)
        add_users(tmp_path)
        async with running(load_config(path), config_path=path) as run:
            gw = run.gateway
            api = await login(http, gw)
            await until(lambda: gw.runners["bus-meter"].delivering, timeout=15)
            status, answer = await api.call("POST", "/api/config/test-connection",
                                            {"device": {**rtu, "name": "other", "unit_id": 2}})
            assert status == 409 and answer["code"] == "port_in_use", answer
            assert "in use by bus-meter" in answer["error"]
            polls = gw.runners["bus-meter"].stats.polls
            await until(lambda: gw.runners["bus-meter"].stats.polls >= polls + 3)
            assert gw.runners["bus-meter"].delivering
