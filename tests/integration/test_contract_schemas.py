"""The shipped JSON Schemas (docs/schemas/) hold for real messages of a real gateway,
and restricted tags never leave it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from hil.broker import MqttBroker
from hil.recorder import TelemetryRecorder
from tests.integration.command_client import CommandClient
from tests.integration.gateway_harness import METER_TAGS, gateway_config, meter_device, running

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "docs" / "schemas"
KINDS = ("birth", "data", "device", "death", "cmd", "cmd-result", "event", "firmware_update",
         "deploy")
#: message types whose schema is shared: config/apply and model/deploy (deploy.schema.json)
SCHEMA_OF = {"config/apply": "deploy", "model/deploy": "deploy"}


def validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{kind}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def test_the_documented_examples_follow_the_schemas() -> None:
    text = (ROOT / "docs" / "contract-json.md").read_text()
    seen = set()
    for block in re.findall(r"```json\n(.*?)```", text, re.S):
        body = json.loads(block)
        kind = SCHEMA_OF.get(body["type"], body["type"])
        validator(kind).validate(body)
        seen.add(kind)
    assert seen == set(KINDS)


@pytest.mark.broker
async def test_real_messages_follow_the_schemas_and_restricted_tags_stay_home(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any
) -> None:
    tags = [
        {**t, "classification": "restricted"} if t["name"] == "temperature"
        else {**t, "writable": True} if t["name"] == "relay_closed" else t
        for t in METER_TAGS
    ]
    config = gateway_config(
        tmp_path, mosquitto.port, [meter_device("meter", waveform_meter.port, tags=tags)],
        commands={"enabled": True},
    )
    sent: list[dict[str, Any]] = []
    with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec, \
            CommandClient(mosquitto.host, mosquitto.port) as brain:
        async with running(config) as gw:
            assert await rec.until(
                lambda s: len(s.births) >= 1
                and sum(x.tag == "meter.voltage" for x in s.samples) >= 10,
                timeout=15,
            )
            for cid, writes in (
                ("ok", [{"tag": "meter.relay_closed", "value": False}]),
                ("bad", [{"tag": "meter.voltage", "value": 1}]),
            ):
                body = {"v": 1, "type": "cmd", "id": cid, "writes": writes}
                sent.append(body)
                brain.send_raw(json.dumps(body))
                await brain.answer(cid)
            brain.send_raw(b'{"v":1,"type":"cmd","id":"junk"}')
            await brain.answer("junk")
            await gw.stop()
        assert await rec.until(lambda s: len(s.deaths) >= 1, timeout=5)
        withheld = gw.gateway.northbound.counters.restricted_withheld  # type: ignore[union-attr]
    snap = rec.snapshot()
    for kind, messages in (
        ("birth", snap.births), ("data", snap.data_messages), ("death", snap.deaths),
        ("cmd", sent), ("cmd-result", brain.results),
    ):
        assert messages, kind
        check = validator(kind)
        for message in messages:
            check.validate(message)
    assert {r["status"] for r in brain.results} == {"accepted", "rejected"}
    for message in snap.devices:  # the meter came up within the session, or before it
        validator("device").validate(message)

    # restricted: not in the catalog, no sample left the gateway, but it was read
    assert all(t["tag"] != "meter.temperature" for t in snap.births[-1]["tags"])
    assert all(s.tag != "meter.temperature" for s in snap.samples)
    assert withheld > 0
