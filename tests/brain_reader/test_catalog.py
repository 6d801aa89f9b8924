"""The catalog kept from births (SQLite), its commands, its HTTP endpoint and its public
export (JSON, CSV, AAS); the allow-list. A real Mosquitto; births from a publisher."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from brain_reader.catalog_http import CatalogServer
from gateway.northbound.sparkplug import sparkplug_b_pb2 as pb
from hil.broker import MqttBroker
from tests.brain_reader.helpers import Publisher, ingest_config, json_data, running_reader, until

pytestmark = pytest.mark.broker

CLI = [sys.executable, "-m", "brain_reader.cli"]
REG = "88.100.1/press-07"


def json_birth(tags: list[dict[str, Any]], gateway: str = "gw-x") -> tuple[str, bytes]:
    body = {"v": 1, "type": "birth", "gateway": gateway, "site": "plant", "line": "l1",
            "session": 1, "seq": 0, "ts": 1, "description": "press line",
            "devices": [{"name": "press", "state": "up", "registration_id": REG}],
            "tags": tags}  # fmt: skip
    return f"chenxing/v1/plant/l1/{gateway}/birth", json.dumps(body).encode()


def tag(name: str, unit: str = "kN", classification: str = "internal") -> dict[str, Any]:
    return {"tag": f"press.{name}", "device": "press", "name": name, "unit": unit,
            "type": "float64", "description": f"the {name}", "classification": classification,
            "writable": False}  # fmt: skip


def dbirth() -> bytes:
    p = pb.Payload(timestamp=1, seq=1)
    m = p.metrics.add(name="speed", alias=1, datatype=pb.Double, double_value=1.0)
    for key, value in (("engUnit", "rpm"), ("classification", "public"),
                       ("sourceType", "float32"), ("description", "spindle")):
        m.properties.keys.append(key)
        m.properties.values.add(type=pb.String, string_value=value)
    secret = p.metrics.add(name="recipe", alias=2, datatype=pb.Double, double_value=2.0)
    secret.properties.keys.append("classification")
    secret.properties.values.add(type=pb.String, string_value="restricted")
    p.metrics.add(name="Properties/Registration ID", alias=3, datatype=pb.String,
                  string_value="88.100.1/mill-1")
    return p.SerializeToString()


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*CLI, *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def get(url: str, token: str | None = None, host: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if host:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def test_births_make_a_catalog_with_history_and_a_public_export(
    tmp_path: Path, mosquitto: MqttBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CATALOG_TOKEN", "s3cret")
    state = tmp_path / "state"
    config = ingest_config(mosquitto, None, catalog=True, state_dir=str(state),
                           http={"enabled": True, "port": 0, "token": {"env": "CATALOG_TOKEN"}})
    pub = Publisher(mosquitto)
    try:
        async with running_reader(config) as reader:
            pub.publish(*json_birth([tag("force"), tag("recipe", classification="restricted"),
                                     tag("old")]))  # fmt: skip
            pub.publish("spBv1.0/mill/NBIRTH/edge-1", pb.Payload(timestamp=1, seq=0)
                        .SerializeToString())  # fmt: skip
            pub.publish("spBv1.0/mill/DBIRTH/edge-1/spindle", dbirth())
            # a new birth: force's unit changed, old removed, temp added
            pub.publish(*json_birth([tag("force", unit="N"), tag("temp", unit="degC"),
                                     tag("recipe", classification="restricted")]))
            assert await until(lambda: reader.counters.births == 4, timeout=10)
            server = reader.reader.catalog_server
            assert isinstance(server, CatalogServer) and server.port
            base = f"http://127.0.0.1:{server.port}"
            assert (await asyncio.to_thread(get, f"{base}/catalog"))[0] == 401
            assert (await asyncio.to_thread(get, f"{base}/catalog", "wrong"))[0] == 401
            status, body = await asyncio.to_thread(get, f"{base}/catalog", "s3cret")
            assert status == 200
            http_tags = {t["tag"] for t in json.loads(body)["tags"]}
            status, aas_http = await asyncio.to_thread(get, f"{base}/catalog.aas.json", "s3cret")
            assert status == 200 and REG in aas_http
    finally:
        pub.close()
    assert http_tags == {"force", "temp", "speed", "old"}  # no restricted tag; old: not present

    c = ["catalog", "--state-dir", str(state)]
    code, out, err = await cli(*c, "list", "--json")
    assert code == 0, err
    gateways = {g["gateway"]: g for g in json.loads(out)}
    assert set(gateways) == {"plant/l1/gw-x", "mill/edge-1"}
    assert gateways["plant/l1/gw-x"]["births"] == 2 and gateways["plant/l1/gw-x"]["tags"] == 3

    code, out, err = await cli(*c, "show", "plant/l1/gw-x")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["devices"][0]["registration_id"] == REG
    tags = {t["tag"]: t for t in shown["tags"]}
    assert tags["recipe"]["grade"] == "important" and tags["force"]["grade"] == "general"
    assert not tags["old"]["present"] and tags["force"]["unit"] == "N"
    first, second = (h["changes"] for h in shown["history"])
    assert first["device"] == "added" and first["added"] == ["force", "old", "recipe"]
    assert second == {"added": ["temp"], "removed": ["old"],
                      "changed": {"force": {"unit": ["kN", "N"]}}}  # fmt: skip

    code, out, _ = await cli(*c, "export", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and {r["tag"] for r in rows} == http_tags
    assert {r["registration_id"] for r in rows if r["device"] == "spindle"} == {"88.100.1/mill-1"}
    code, out, _ = await cli(*c, "export", "--format", "aas")
    assert code == 0 and "recipe" not in out

    from basyx.aas import model
    from basyx.aas.adapter.json import read_aas_json_file

    store = read_aas_json_file(io.StringIO(out))
    shells = {o.id: o for o in store if isinstance(o, model.AssetAdministrationShell)}
    assert set(shells) == {REG, "88.100.1/mill-1"}  # one shell per device, by registration
    submodels = [o for o in store if isinstance(o, model.Submodel)]
    names = {e.id_short for s in submodels for e in s.submodel_element}
    assert names == {"force", "temp", "speed", "old"}

    code, _, err = await cli(*c, "show", "nope/nope")
    assert code == 1 and "no gateway 'nope/nope'" in err


async def test_gateways_outside_the_allow_list_are_refused_counted_and_logged_once(
    mosquitto: MqttBroker, caplog: pytest.LogCaptureFixture
) -> None:
    config = ingest_config(mosquitto, None, allow={"gateways": ["plant/+/gw-ok"],
                                                   "edge_nodes": ["mill/edge-1"]})
    pub = Publisher(mosquitto)
    try:
        async with running_reader(config) as reader:
            for seq in range(3):
                pub.publish(*json_data(seq, "gw-ok"))
                pub.publish(*json_data(seq, "gw-other"))
                pub.publish("spBv1.0/mill/NDATA/edge-2", pb.Payload(seq=seq).SerializeToString())
            # a body claiming an allowed gateway on another gateway's topic is refused too
            topic, payload = json_data(9, "gw-ok")
            pub.publish(topic.replace("gw-ok", "gw-other"), payload)
            assert await until(lambda: reader.counters.refused == 7, timeout=10)
            assert await until(lambda: reader.counters.data_messages == 3, timeout=10)
            counters = await reader.stop()
    finally:
        pub.close()
    assert counters.points == 3 and counters.undecodable == 0
    refused = [r.getMessage() for r in caplog.records if "allow-list" in r.getMessage()]
    assert len(refused) == 2 + 2, refused  # the first per gateway, then their summaries
