"""The brain's model/deploy and config/apply as Sparkplug NCMD metrics (``Node Control/Model
Deploy``, ``Node Control/Config Apply``: DataType Bytes), end to end with a real Mosquitto:
answered in ``Node Control/Last Command Result``; the NBIRTH's inventory (``Node Info/Models``,
``Node Info/Firmware``, ``Node Info/Config Version``) before and after, read by the project's
decoder and by Eclipse Tahu's JavaScript codec."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.config.models import ModelsConfig
from gateway.northbound.sparkplug import sparkplug_b_pb2 as pb
from gateway.northbound.sparkplug.decode import decode_payload
from hil.broker import MqttBroker
from tests.integration.brain_bundles import (
    audit_lines,
    deploy_metric,
    model_bundle,
    models_folder,
    trust,
    unsigned,
)
from tests.integration.gateway_harness import gateway_body, meter_device, running
from tests.integration.sparkplug_host import SparkplugHost
from tests.interop.test_tahu_js_codec import RawRecorder, tahu_decode
from tests.waiting import until

pytestmark = pytest.mark.broker


def _node_metrics(nbirth: bytes) -> dict[str, Any]:
    return {m["name"]: m for m in decode_payload(nbirth)["metrics"]}


def _results(raw: RawRecorder, alias: int | None = None) -> list[dict[str, Any]]:
    """Every ``Node Control/Last Command Result`` NDATA (by the alias of the NBIRTH before
    it: a config change that adds tags moves the node metrics' aliases), decoded."""
    out = []
    with raw._lock:
        messages = list(raw.messages)
    for topic, payload in messages:
        kind = topic.split("/")[2]
        if kind == "NBIRTH":
            alias = _node_metrics(payload)["Node Control/Last Command Result"]["alias"]
        elif kind == "NDATA":
            for m in decode_payload(payload)["metrics"]:
                if m["alias"] == alias and m["value"]:
                    out.append(json.loads(m["value"]))
    return out


def _deploy(bundle: bytes, metric: str = "Node Control/Model Deploy",
            **properties: str | int) -> pb.Payload.Metric:
    return deploy_metric(bundle, metric, **properties)


async def test_a_signed_model_deployed_by_ncmd_and_the_nbirth_inventory(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any
) -> None:
    from gateway.config.loader import load_config_text

    body = gateway_body(tmp_path, mosquitto.port, [meter_device("meter", waveform_meter.port)],
                        commands={"enabled": True, "model_deploy": True}, format="sparkplug",
                        sparkplug={"data_datatypes": True})
    body["bundles"] = trust()
    config = load_config_text(json.dumps(body), "gateway.yaml", tmp_path)
    config = config.model_copy(update={"models": ModelsConfig(
        enabled=True, dir=models_folder(tmp_path), watch_interval=0, tick=0.05)})
    raw = RawRecorder(mosquitto.port)
    try:
        with SparkplugHost(mosquitto.port) as host:
            async with running(config):
                await until(lambda: any(json.loads(_node_metrics(b)["Node Info/Models"]["value"])
                                        for b in raw.of("NBIRTH")), "an NBIRTH with the model",
                            timeout=15)
                first = raw.of("NBIRTH")[-1]
                metrics = _node_metrics(first)
                models = json.loads(metrics["Node Info/Models"]["value"])
                assert [(m["name"], m["version"], m["role"]) for m in models] == \
                    [("kpi", "1", "active")]
                assert json.loads(metrics["Node Info/Firmware"]["value"]) == []
                assert metrics["Node Info/Config Version"]["value"] == 1
                deploy = metrics["Node Control/Model Deploy"]
                assert deploy["datatype"] == "Bytes" and deploy["is_null"]
                assert metrics["Node Control/Config Apply"]["datatype"] == "Bytes"
                alias = metrics["Node Control/Last Command Result"]["alias"]
                # the second opinion: Tahu's codec reads the same inventory
                tahu = {m["name"]: m for m in tahu_decode([first])[0]["metrics"]}
                assert json.loads(tahu["Node Info/Models"]["value"]) == models
                assert tahu["Node Info/Gateway Version"]["value"] == \
                    metrics["Node Info/Gateway Version"]["value"]
                assert tahu["Node Control/Model Deploy"]["type"] == "Bytes"

                host.command("NCMD", [_deploy(model_bundle("2"), id="sp-2")])
                answer = await until(lambda: [r for r in _results(raw, alias)
                                              if r["id"] == "sp-2"], "the answer", timeout=30)
                assert answer[0]["status"] == "accepted", answer
                assert answer[0]["op"] == "model/deploy" and answer[0]["version"] == "2"
                await until(lambda: json.loads(_node_metrics(raw.of("NBIRTH")[-1])
                                               ["Node Info/Models"]["value"])[0]["version"] == "2",
                            "an NBIRTH with version 2", timeout=15)
                tahu_after = tahu_decode([raw.of("NBIRTH")[-1]])[0]["metrics"]
                assert next(json.loads(m["value"]) for m in tahu_after
                        if m["name"] == "Node Info/Models")[0]["version"] == "2"

                host.command("NCMD", [_deploy(unsigned(model_bundle("3")), id="sp-unsigned")])
                host.command("NCMD", [_deploy(model_bundle("3"), "Node Control/Config Apply",
                                              id="sp-off")])
                host.command("NCMD", [_deploy(b"\x00garbage", id="sp-garbage")])
                wanted = {"sp-unsigned", "sp-off", "sp-garbage"}
                answers = await until(lambda: (lambda got: got if wanted <= set(got) else None)(
                    {r["id"]: r for r in _results(raw, alias)}), "the refusals", timeout=30)
                assert answers["sp-unsigned"]["status"] == "rejected"
                assert answers["sp-unsigned"]["reason"].startswith("unsigned")
                assert "commands.config_apply" in answers["sp-off"]["reason"]
                assert answers["sp-garbage"]["reason"].startswith("malformed")
                # oversize (bundles.max_bytes is 1 MiB here) and cut payloads: answered
                host.command("NCMD", [_deploy(b"\0" * (1024 * 1024 + 1), id="sp-huge")])
                cut = pb.Payload(timestamp=1, metrics=[_deploy(model_bundle("3"))])
                host.publish_raw("NCMD", cut.SerializeToString()[:700])
                await until(lambda: any(r["id"] == "sp-huge" and "at most 1048576" in r["reason"]
                                        for r in _results(raw, alias)), "the oversize refusal",
                            timeout=30)
                await until(lambda: any("not a Sparkplug B payload" in (r["reason"] or "")
                                        for r in _results(raw, alias)), "the cut refusal",
                            timeout=30)
                # a metric of another DataType, and a deploy beside a write: malformed
                wrong = pb.Payload.Metric(name="Node Control/Model Deploy", datatype=pb.String,
                                          string_value="x")
                host.command("NCMD", [wrong])
                await until(lambda: any("DataType Bytes or File" in (r["reason"] or "")
                                        for r in _results(raw, alias)), "the refusal", timeout=30)
    finally:
        raw.close()
    audit = audit_lines(tmp_path / "state")
    outcomes = [(a["outcome"], a.get("version")) for a in audit if a["event"] == "deploy"]
    assert ("deployed", "2") in outcomes
    assert any(a["event"] == "bundle" and a["outcome"] == "refused" and a["reason"] == "unsigned"
               for a in audit)


async def test_a_config_bundle_applied_by_ncmd_adds_a_device(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any
) -> None:
    import yaml

    from gateway.config.loader import load_config
    from tests.integration.brain_bundles import config_bundle

    body = gateway_body(tmp_path, mosquitto.port, [meter_device("meter", waveform_meter.port)],
                        commands={"enabled": True, "config_apply": True}, format="sparkplug")
    body["bundles"] = trust()
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    added = json.loads(json.dumps(body))
    added["devices"].append(meter_device("second", waveform_meter.port))
    signed = config_bundle(yaml.safe_dump(added, sort_keys=False), "2")
    raw = RawRecorder(mosquitto.port)
    try:
        with SparkplugHost(mosquitto.port) as host:
            async with running(load_config(path), config_path=path) as run:
                await until(lambda: host.of("DDATA", "meter"), "data of the meter", timeout=15)
                alias = _node_metrics(raw.of("NBIRTH")[-1])[
                    "Node Control/Last Command Result"]["alias"]
                host.command("NCMD", [_deploy(signed, "Node Control/Config Apply", id="c-2",
                                              expected_version=1)])
                answer = (await until(lambda: [r for r in _results(raw, alias)
                                               if r["id"] == "c-2"], "the answer", timeout=30))[0]
                assert answer["status"] == "accepted", answer
                assert answer["version"] == 2 and answer["apply"]["outcome"] == "applied"
                await until(lambda: host.of("DDATA", "second"), "data of the new device",
                            timeout=15)
                meter = len(host.of("DDATA", "meter"))
                await until(lambda: len(host.of("DDATA", "meter")) > meter + 2,
                            "the meter publishing on", timeout=15)
                await until(lambda: _node_metrics(raw.of("NBIRTH")[-1])
                            ["Node Info/Config Version"]["value"] == 2, "an NBIRTH of version 2",
                            timeout=15)
                assert run.gateway.live.version == 2
                # the same bundle again: a replay
                host.command("NCMD", [_deploy(signed, "Node Control/Config Apply",
                                              id="c-2-again")])
                replay = (await until(lambda: [r for r in _results(raw, alias)
                                               if r["id"] == "c-2-again"], "the answer",
                                      timeout=30))[0]
                assert replay["refused"] == "stale_version", replay
    finally:
        raw.close()
    audit = audit_lines(tmp_path / "state")
    assert any(a["event"] == "config" and a["outcome"] == "applied" and a["user"] == "brain"
               for a in audit)
    assert any(a["event"] == "deploy" and a["kind"] == "config" and a["outcome"] == "deployed"
               for a in audit)
