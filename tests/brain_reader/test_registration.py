"""A device's registration identifier (``registration_id`` in the gateway config) travels in
the JSON birth (``devices[]``) and the Sparkplug DBIRTH (``Properties/Registration ID``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gateway.config.loader import load_config_text
from gateway.config.models import GatewayConfig
from gateway.errors import ConfigError
from gateway.northbound.contract_json import JsonContract
from gateway.northbound.sparkplug.decode import decode_payload
from gateway.northbound.sparkplug.payloads import CurrentValue, SparkplugPayloads
from gateway.tags import TagCatalog

SCHEMA = json.loads((Path(__file__).parents[2] / "docs/schemas/birth.schema.json").read_text())
REG = "88.100.1/press-07"


def config(registration: Any = REG, fmt: str = "json") -> GatewayConfig:
    tags = [{"name": "force", "table": "input", "address": 0, "type": "float32", "unit": "kN"}]
    press = {"name": "press", "protocol": "modbus_tcp", "host": "127.0.0.1", "tags": tags,
             "registration_id": registration}
    meter = {"name": "meter", "protocol": "modbus_tcp", "host": "127.0.0.1", "tags": tags}
    body = {"gateway": {"id": "gw-1", "site": "plant", "line": "l1"},
            "devices": [press, meter], "northbound": {"format": fmt}}  # fmt: skip
    return load_config_text(json.dumps(body), "test.yaml")


def test_the_json_birth_lists_the_registration_id_of_the_devices_that_have_one() -> None:
    cfg = config()
    contract = JsonContract(cfg, TagCatalog(cfg.devices), "9.9.9")
    body = json.loads(contract.birth(1, 0, 10**18, {"press": "up", "meter": "up"}).payload)
    jsonschema.validate(body, SCHEMA)
    assert body["devices"] == [{"name": "press", "state": "up", "registration_id": REG},
                               {"name": "meter", "state": "up"}]  # fmt: skip


def test_the_dbirth_carries_it_as_a_property_metric_with_an_alias_of_its_own() -> None:
    cfg = config(fmt="sparkplug")
    payloads = SparkplugPayloads(cfg, TagCatalog(cfg.devices), "9.9.9")
    none = lambda tag_id: CurrentValue(None, None, 0)  # noqa: E731
    press = decode_payload(payloads.dbirth("press", 10**18, none).payload)["metrics"]
    meter = decode_payload(payloads.dbirth("meter", 10**18, none).payload)["metrics"]
    (reg,) = [m for m in press if m["name"] == "Properties/Registration ID"]
    assert (reg["value"], reg["datatype"]) == (REG, "String")
    assert not any(m["name"] == "Properties/Registration ID" for m in meter)
    aliases = [m["alias"] for m in press] + [m["alias"] for m in meter]
    aliases += list(payloads.node_aliases.values())
    assert len(aliases) == len(set(aliases)), "aliases must be unique in the edge node"


@pytest.mark.parametrize("bad", ["", "has space", "x" * 256, "中文"])
def test_a_malformed_registration_id_is_a_config_error_at_its_key(bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        config(bad)
    assert "devices[0].registration_id" in str(err.value) or "registration_id" in str(err.value)
