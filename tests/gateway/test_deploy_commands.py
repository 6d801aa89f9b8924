"""Reading config/apply and model/deploy: the JSON ``cmd`` and the Sparkplug NCMD metric into one
request, or the reason it is malformed (never another exception, whatever the bytes)."""

from __future__ import annotations

import base64
import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.commands.deploy import (
    DeployRequest,
    looks_like_json_deploy,
    max_request_bytes,
    parse_json_deploy,
)
from gateway.config.loader import load_config_text
from gateway.errors import MalformedCommand
from gateway.northbound.sparkplug import sparkplug_b_pb2 as pb
from gateway.northbound.sparkplug.commands import is_deploy_command, parse_deploy_command
from gateway.northbound.sparkplug.payloads import SparkplugPayloads
from gateway.tags import TagCatalog
from tests.integration.brain_bundles import deploy_metric

LIMIT = 1024
NCMD = "spBv1.0/plant/NCMD/gw"


def body(**over: object) -> bytes:
    return json.dumps({"v": 1, "type": "model/deploy", "id": "m-1",
                       "bundle": base64.b64encode(b"bundle").decode(), **over}).encode()


def refusal(payload: bytes) -> MalformedCommand:
    with pytest.raises(MalformedCommand) as exc:
        parse_json_deploy(payload, "gw", LIMIT)
    return exc.value


def test_a_json_request_is_read_with_its_bundle() -> None:
    assert parse_json_deploy(body(), "gw", LIMIT) == DeployRequest("m-1", "model/deploy",
                                                                   b"bundle")
    request = parse_json_deploy(body(type="config/apply", expected_version=4), "gw", LIMIT)
    assert request.op == "config/apply" and request.expected_version == 4
    assert looks_like_json_deploy(body()) and looks_like_json_deploy(body(type="config/apply"))
    # a write whose tag is named like an operation stays a write
    write = json.dumps({"v": 1, "type": "cmd", "id": "w", "writes": [
        {"tag": "model/deploy", "value": 1}]}).encode()
    assert not looks_like_json_deploy(write)


def test_each_malformed_request_says_why_with_its_id() -> None:
    cases = {
        body(bundle="%%%"): "'bundle' is not base64",
        body(bundle=""): "'bundle' must be",
        body(v=2): "unsupported contract version 2",
        body(extra=1): "unknown field(s): extra",
        body(gateway="other"): "addressed to gateway 'other'",
        body(expected_version=3): "belongs to config/apply only",
        body(type="config/apply", expected_version=True): "'expected_version' must be",
        body(type="config/apply", expected_version=0): "'expected_version' must be",
        body(bundle=base64.b64encode(b"x" * (LIMIT + 1)).decode()): "at most 1024",
    }
    for payload, reason in cases.items():
        exc = refusal(payload)
        assert reason in exc.reason, (exc.reason, reason)
        assert exc.command_id == "m-1"
    assert "'id' must be" in refusal(body(id="")).reason
    assert "not valid JSON" in refusal(b"\xff model/deploy").reason
    big = body(bundle="A" * max_request_bytes(LIMIT))
    exc = refusal(big)
    assert "exceeds" in exc.reason and exc.command_id == "m-1"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048) | st.builds(
    lambda b, cut: body(bundle=base64.b64encode(b).decode())[:cut], st.binary(max_size=64),
    st.integers(0, 200)))
def test_garbage_is_malformed_or_a_request(payload: bytes) -> None:
    with contextlib.suppress(MalformedCommand):
        parse_json_deploy(payload, "gw", LIMIT)
    looks_like_json_deploy(payload)


def payloads(tmp_path: Path) -> SparkplugPayloads:
    config = load_config_text(json.dumps({
        "gateway": {"id": "gw", "site": "plant", "line": "l", "state_dir": str(tmp_path)},
        "devices": [{"name": "press", "protocol": "modbus_tcp", "host": "127.0.0.1",
                     "tags": [{"name": "x", "address": 0, "type": "uint16"}]}],
        "northbound": {"format": "sparkplug"}}), "gw.yaml", tmp_path)
    return SparkplugPayloads(config, TagCatalog([]), "0")


def ncmd(*metrics: pb.Payload.Metric) -> bytes:
    payload = pb.Payload(timestamp=1)
    payload.metrics.extend(metrics)
    return payload.SerializeToString()


def bundle_metric(name: str | None = "Node Control/Model Deploy", datatype: int = pb.Bytes,
                  value: bytes = b"bundle", **props: str | int) -> pb.Payload.Metric:
    return deploy_metric(value, name, datatype, **props)


def test_an_ncmd_metric_is_read_by_name_or_alias_with_its_properties(tmp_path: Path) -> None:
    contract = payloads(tmp_path)
    payload = ncmd(bundle_metric(id="sp-1"))
    assert is_deploy_command(NCMD, payload, contract)
    assert parse_deploy_command(NCMD, payload, contract, LIMIT) == \
        DeployRequest("sp-1", "model/deploy", b"bundle")
    by_alias = bundle_metric(None, pb.File, expected_version=7)
    by_alias.alias = contract.node_aliases["Node Control/Config Apply"]
    request = parse_deploy_command(NCMD, ncmd(by_alias), contract, LIMIT)
    assert request.op == "config/apply" and request.expected_version == 7
    assert request.id.startswith("NCMD/gw@1#")
    rebirth = pb.Payload.Metric(name="Node Control/Rebirth", datatype=pb.Boolean,
                                boolean_value=True)
    assert parse_deploy_command(NCMD, ncmd(rebirth, bundle_metric()), contract, LIMIT).bundle
    # not one: a write, a DCMD, garbage
    assert not is_deploy_command(NCMD, ncmd(pb.Payload.Metric(name="x", int_value=1)), contract)
    assert not is_deploy_command(NCMD + "/press", payload, contract)
    assert not is_deploy_command(NCMD, b"\xff\x00garbage", contract)


def test_a_malformed_ncmd_says_why(tmp_path: Path) -> None:
    contract = payloads(tmp_path)
    cases = {
        ncmd(bundle_metric(), bundle_metric()): "travels alone",
        ncmd(bundle_metric(), pb.Payload.Metric(name="x", int_value=1)): "travels alone",
        ncmd(bundle_metric(datatype=pb.String)): "DataType Bytes or File, not String",
        ncmd(pb.Payload.Metric(name="Node Control/Model Deploy", datatype=pb.Bytes)):
            "holds no bytes",
        ncmd(bundle_metric(value=b"")): "the bundle is empty",
        ncmd(bundle_metric(expected_version=3)): "on Config Apply only",
        ncmd(bundle_metric(owner="x")): "unknown property: owner",
        ncmd(bundle_metric(value=b"x" * (LIMIT + 1))): "at most 1024",
    }
    for payload, reason in cases.items():
        with pytest.raises(MalformedCommand) as exc:
            parse_deploy_command(NCMD, payload, contract, LIMIT)
        assert reason in exc.value.reason, (exc.value.reason, reason)
        assert exc.value.command_id


async def test_commands_run_in_arrival_order_and_past_four_waiting_are_busy() -> None:
    """BrainDeployments' queueing alone (a stand-in gateway: nothing is deployed): each
    request holds its bundle in memory until it ran, so at most four wait."""
    import asyncio
    import threading
    from types import SimpleNamespace

    from gateway.commands.result import CommandResult
    from gateway.runtime.brain_deploy import MAX_PENDING, BrainDeployments

    release = threading.Event()
    read: list[str] = []

    def parse(topic: str, payload: bytes, limit: int) -> DeployRequest:
        release.wait(10)
        read.append(payload.decode())
        raise MalformedCommand("not a bundle", payload.decode())

    audit = SimpleNamespace(record=lambda event, **fields: None)
    gateway = SimpleNamespace(config=SimpleNamespace(bundles=SimpleNamespace(max_bytes=LIMIT)),
                              audit=audit)
    handler = BrainDeployments(gateway, lambda t, p: True, parse,  # type: ignore[arg-type]  # a stand-in
                               lambda t, p: p.decode())
    answers: list[CommandResult] = []
    for i in range(MAX_PENDING + 1):
        handler.submit("cmd", f"c{i}".encode(), False, answers.append)
    assert [(a.id, a.status) for a in answers] == [(f"c{MAX_PENDING}", "rejected")]
    assert answers[0].reason is not None and answers[0].reason.startswith("busy")
    release.set()
    await asyncio.wait_for(handler.close(), 10)
    assert read == [f"c{i}" for i in range(MAX_PENDING)]
    assert [a.id for a in answers[1:]] == read
    assert all(a.reason == "not a bundle" for a in answers[1:])
