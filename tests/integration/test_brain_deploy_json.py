"""The brain's model/deploy and config/apply over the JSON contract, end to end: a real Mosquitto,
the simulated meter, a running gateway and a paho client as the brain. Signed packages go into
service (active, then a shadow candidate) and the birth's inventory follows; unsigned, badly
signed, replayed, hostile and oversize ones are answered with the reason and audited; a config
bundle adds a device while the others publish; a bad one comes back with its problems."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway import __version__
from gateway.config.loader import load_config
from hil.broker import MqttBroker
from hil.recorder import TelemetryRecorder
from tests.integration.brain_bundles import (
    IDENTITY_ONNX,
    STRANGER_KEY,
    audit_lines,
    config_bundle,
    json_command,
    model_bundle,
    models_folder,
    trust,
    unsigned,
)
from tests.integration.command_client import CommandClient
from tests.integration.gateway_harness import gateway_body, meter_device, running
from tests.integration.test_contract_schemas import validator
from tests.integration.test_live_config import _no_gap as no_gap

pytestmark = pytest.mark.broker


def _body(tmp: Path, broker: int, meter: int, **commands: Any) -> dict[str, Any]:
    body = gateway_body(tmp, broker, [meter_device("meter", meter)],
                        commands={"enabled": True, **commands})
    body["bundles"] = trust()
    body["models"] = {"enabled": True, "dir": str(models_folder(tmp)), "watch_interval": 0,
                      "tick": "50ms"}
    return body


def _write(path: Path, body: dict[str, Any]) -> str:
    text = yaml.safe_dump(body, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return text


def _models(birth: dict[str, Any]) -> list[tuple[str, str, str]]:
    return sorted((m["name"], m["version"], m["role"]) for m in birth["models"])


async def test_a_signed_model_goes_into_service_and_an_unsigned_one_is_refused(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any
) -> None:
    path = tmp_path / "gateway.yaml"
    _write(path, _body(tmp_path, mosquitto.port, waveform_meter.port, model_deploy=True))
    state = tmp_path / "state"
    with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec, \
            CommandClient(mosquitto.host, mosquitto.port) as brain:
        async with running(load_config(path), config_path=path) as run:
            gw = run.gateway
            assert await rec.until(lambda s: s.births and s.births[-1].get("models"), timeout=15)
            before = rec.snapshot().births[-1]
            # the inventory: gateway, config, models, firmware (no MCU node here)
            assert before["gateway_version"] == __version__
            assert before["config_version"] == 1
            assert _models(before) == [("kpi", "1", "active")]
            assert before["firmware"] == []
            validator("birth").validate(before)

            signed = model_bundle("2")
            brain.send_raw(json_command("model/deploy", "m-2", signed))
            answer = await brain.answer("m-2", timeout=30)
            validator("cmd-result").validate(answer)
            assert answer["status"] == "accepted", answer
            assert answer["op"] == "model/deploy" and answer["version"] == "2"
            assert answer["model"]["role"] == "active" and answer["model"]["file"] == "kpi.yaml"
            assert await rec.until(lambda s: _models(s.births[-1]) == [("kpi", "2", "active")],
                            timeout=15)
            births = len(rec.snapshot().births)
            assert await rec.until(lambda s: rec.samples_of("models.kpi/power_mean"), timeout=15)

            # unsigned, signed by a key it does not trust, replayed: refused, nothing changes
            brain.send_raw(json_command("model/deploy", "m-unsigned", unsigned(model_bundle("3"))))
            brain.send_raw(json_command("model/deploy", "m-stranger",
                                        model_bundle("3", key=STRANGER_KEY,
                                                     key_id="stranger")))
            brain.send_raw(json_command("model/deploy", "m-forged",
                                        model_bundle("3", key=STRANGER_KEY, key_id="brain")))
            brain.send_raw(json_command("model/deploy", "m-replay", signed))
            for cid, reason in (("m-unsigned", "unsigned"), ("m-stranger", "unknown_key"),
                                ("m-forged", "bad_signature"), ("m-replay", "stale_version")):
                refused = await brain.answer(cid, timeout=30)
                validator("cmd-result").validate(refused)
                assert refused["status"] == "rejected", refused
                assert refused["refused"] == reason and refused["reason"].startswith(reason)
            assert "is not newer than 2" in (await brain.answer("m-replay"))["reason"]
            assert [m["version"] for m in gw.models.describe()] == ["2"]  # type: ignore[union-attr]  # models are enabled

            # verified, but it does not go into service (it reads a tag this gateway does not
            # have): answered failed, the folder put back, version 2 runs on and may be replayed
            kpi_yaml = (tmp_path / "models" / "kpi.yaml").read_text()
            brain.send_raw(json_command("model/deploy", "m-unfit", model_bundle("4", inputs=[
                {"tag": "press.power", "aggregation": "mean", "window": "1s"}])))
            unfit = await brain.answer("m-unfit", timeout=30)
            assert unfit["status"] == "failed", unfit
            assert "did not go into service" in unfit["reason"] and "press.power" in \
                unfit["reason"] and "model kpi 2 keeps running" in unfit["reason"]
            assert (tmp_path / "models" / "kpi.yaml").read_text() == kpi_yaml
            assert [m["version"] for m in gw.models.describe()] == ["2"]  # type: ignore[union-attr]  # models are enabled
            applied = json.loads((state / "bundles" / "applied.json").read_text())["applied"]
            assert applied["model/kpi"]["version"] == "2"

            # a shadow candidate: its output tags join the catalog, both run, the birth says so
            brain.send_raw(json_command("model/deploy", "m-3s", model_bundle("3", shadow=True)))
            shadow = await brain.answer("m-3s", timeout=30)
            assert shadow["status"] == "accepted", shadow
            assert shadow["model"]["role"] == "shadow"
            assert shadow["model"]["file"] == "kpi.shadow.yaml"
            assert await rec.until(lambda s: _models(s.births[-1]) == [("kpi", "2", "active"),
                                                                ("kpi", "3", "shadow")],
                            timeout=15)
            assert len(rec.snapshot().births) > births
            assert any(t["tag"] == "models.kpi/shadow/power_mean"
                       for t in rec.snapshot().births[-1]["tags"])
            assert await rec.until(lambda s: rec.samples_of("models.kpi/shadow/power_mean"),
                                   timeout=15)
            # the same id again: the earlier answer, not deployed twice
            brain.send_raw(json_command("model/deploy", "m-3s", model_bundle("3", shadow=True)))
            again = await brain.answer("m-3s", count=2, timeout=30)
            assert again["duplicate"] is True and again["status"] == "accepted"

            # the promotion: version 3 as the active model retires its candidate
            brain.send_raw(json_command("model/deploy", "m-3", model_bundle("3")))
            promoted = await brain.answer("m-3", timeout=30)
            assert promoted["status"] == "accepted" and promoted["model"]["role"] == "active"
            assert await rec.until(lambda s: _models(s.births[-1]) == [("kpi", "3", "active")],
                                   timeout=15)
            assert sorted(p.name for p in (tmp_path / "models").iterdir()) == \
                ["kpi.onnx", "kpi.yaml"]

    audit = audit_lines(state)
    deploys = [(a["outcome"], a.get("version"), a.get("reason", "") or "") for a in audit
               if a["event"] == "deploy" and a.get("kind") == "model"]
    assert ("deployed", "2", "") in deploys and ("shadow", "3", "") in deploys
    assert any(o == "rolled_back" and v == "4" for o, v, _ in deploys)
    for reason in ("unsigned", "unknown_key", "bad_signature", "stale_version"):
        assert any(o == "refused" and r.startswith(reason) for o, _, r in deploys), reason
    bundles = [(a["outcome"], a.get("reason")) for a in audit if a["event"] == "bundle"]
    assert ("applied", None) in bundles and ("refused", "bad_signature") in bundles
    cmds = {a["id"]: a for a in audit if a["event"] == "cmd"}
    assert cmds["m-2"]["outcome"] == "accepted" and cmds["m-2"]["op"] == "model/deploy"
    assert "payload" not in cmds["m-unsigned"] or cmds["m-unsigned"]["payload"] is None


async def test_hostile_payloads_are_answered_as_malformed(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any
) -> None:
    path = tmp_path / "gateway.yaml"
    _write(path, _body(tmp_path, mosquitto.port, waveform_meter.port, model_deploy=True))
    signed = model_bundle("2")
    # cut inside the model file (a cut in the tar's zero padding loses nothing: accepted)
    half = base64.b64encode(signed[: signed.find(IDENTITY_ONNX) + 50]).decode()
    huge = json_command("model/deploy", "m-huge", b"\0" * (2 * 1024 * 1024))  # > 1 MiB
    cases = {
        "m-garbage": json.dumps({"v": 1, "type": "model/deploy", "id": "m-garbage",
                                 "bundle": base64.b64encode(b"garbage" * 100).decode()}),
        "m-cut": json.dumps({"v": 1, "type": "model/deploy", "id": "m-cut", "bundle": half}),
        "m-notb64": json.dumps({"v": 1, "type": "model/deploy", "id": "m-notb64",
                                "bundle": "%%% not base64 %%%"}),
        "m-nobundle": json.dumps({"v": 1, "type": "model/deploy", "id": "m-nobundle"}),
        "m-extra": json.dumps({"v": 1, "type": "config/apply", "id": "m-extra", "bundle": "AA==",
                               "expected_version": "one"}),
        "m-huge": huge,
    }
    with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec, \
            CommandClient(mosquitto.host, mosquitto.port) as brain:
        async with running(load_config(path), config_path=path) as run:
            # the gateway subscribes to cmd before it publishes its birth
            assert await rec.until(lambda s: len(s.births) >= 1, timeout=15)
            brain.send_raw(b'{"v":1,"type":"model/deploy","id":"m-json", "bundle": "AAAA"')
            brain.send_raw(b"\xff\xfe model/deploy \x00")
            answers = {}
            for cid, payload in cases.items():  # at most 4 wait at once: one after the other
                brain.send_raw(payload)
                answers[cid] = await brain.answer(cid, timeout=30)
            for cid, answer in answers.items():
                validator("cmd-result").validate(answer)
                assert answer["status"] == "rejected", (cid, answer)
            # a retained one (left on the broker for every later subscriber) never runs
            brain.send_raw(json_command("model/deploy", "m-retained", signed), retain=True)
            retained = await brain.answer("m-retained", timeout=30)
            assert retained["status"] == "rejected" and "retained" in retained["reason"]
            brain.send_raw(b"", retain=True)  # cleared: an empty payload is no command
            assert answers["m-garbage"]["reason"].startswith("malformed")
            assert answers["m-cut"]["reason"].startswith("malformed")
            assert "not base64" in answers["m-notb64"]["reason"]
            assert "'bundle' must be" in answers["m-nobundle"]["reason"]
            assert "expected_version" in answers["m-extra"]["reason"]
            assert "exceeds" in answers["m-huge"]["reason"]
            await run.gateway.commands.idle()  # type: ignore[union-attr]  # commands are on
            assert [m["version"] for m in run.gateway.models.describe()] == ["1"]  # type: ignore[union-attr]  # models are on
            assert run.gateway.commands.counters.received == len(cases) + 3  # type: ignore[union-attr]  # commands are on
    assert not (tmp_path / "state" / "bundles" / "applied.json").exists()


async def test_a_config_bundle_adds_a_device_while_the_others_publish(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any
) -> None:
    path = tmp_path / "gateway.yaml"
    body = _body(tmp_path, mosquitto.port, waveform_meter.port, config_apply=True)
    _write(path, body)
    state = tmp_path / "state"
    added = json.loads(json.dumps(body))
    added["devices"].append(meter_device("second", waveform_meter.port))
    added_text = yaml.safe_dump(added, sort_keys=False)
    bad = json.loads(json.dumps(added))
    bad["devices"][1]["tags"][0]["address"] = -1
    with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec, \
            CommandClient(mosquitto.host, mosquitto.port) as brain:
        async with running(load_config(path), config_path=path) as run:
            gw = run.gateway
            assert await rec.until(lambda s: len(rec.samples_of("meter.voltage")) >= 3, timeout=15)
            signed = config_bundle(added_text, "5")
            brain.send_raw(json_command("config/apply", "c-5", signed, expected_version=1))
            answer = await brain.answer("c-5", timeout=30)
            validator("cmd-result").validate(answer)
            assert answer["status"] == "accepted", answer
            assert answer["op"] == "config/apply" and answer["version"] == 2
            assert answer["bundle_version"] == "5"
            assert answer["apply"]["outcome"] == "applied"
            assert answer["apply"]["summary"] == "devices added: second"
            polls = gw.runners["meter"].stats.polls
            assert await rec.until(lambda s: len(rec.samples_of("second.voltage")) >= 3, timeout=15)
            assert gw.runners["meter"].stats.polls > polls  # the others kept polling
            assert await rec.until(lambda s: s.births[-1]["config_version"] == 2, timeout=15)
            assert path.read_text() == added_text

            # invalid: refused with its problems; replayed: stale; built on another version
            brain.send_raw(json_command("config/apply", "c-bad",
                                        config_bundle(yaml.safe_dump(bad, sort_keys=False), "6")))
            brain.send_raw(json_command("config/apply", "c-replay", signed))
            brain.send_raw(json_command("config/apply", "c-old",
                                        config_bundle(added_text + "# x\n", "7"),
                                        expected_version=1))
            invalid = await brain.answer("c-bad", timeout=30)
            validator("cmd-result").validate(invalid)
            assert invalid["status"] == "rejected" and invalid["reason"].startswith("invalid")
            problem = invalid["apply"]["problems"][0]
            assert problem["key"] == "devices[1].tags[0].address" and problem["line"] > 0
            replay = await brain.answer("c-replay", timeout=30)
            assert replay["refused"] == "stale_version", replay
            old = await brain.answer("c-old", timeout=30)
            assert old["apply"]["outcome"] == "conflict" and old["version"] == 2, old
            assert gw.live.version == 2
            # model/deploy is not enabled on this gateway
            brain.send_raw(json_command("model/deploy", "m-off", model_bundle("2")))
            off = await brain.answer("m-off", timeout=30)
            assert off["status"] == "rejected" and "commands.model_deploy" in off["reason"]
            report = await run.stop()
        assert await rec.until(lambda s: len(s.deaths) >= 1, timeout=5)
    assert report.drained
    # the device that did not change ran on its first connection, every poll published
    assert gw.runners["meter"].stats.connects == 1
    snap = rec.snapshot()
    no_gap(gw, [s for s in snap.samples if s.tag == "meter.voltage"], "meter")
    seqs = [m["seq"] for m in snap.data_messages]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a data message was lost"

    audit = audit_lines(state)
    configs = [(a["outcome"], a.get("user"), a.get("via")) for a in audit if a["event"] == "config"]
    assert ("applied", "brain", "brain") in configs and ("invalid", "brain", "brain") in configs
    deploys = [(a["outcome"], a.get("version")) for a in audit
               if a["event"] == "deploy" and a.get("kind") == "config"]
    assert ("deployed", "5") in deploys and ("refused", "6") in deploys
    assert any(a["event"] == "deploy" and a["outcome"] == "refused" and
               "model_deploy" in (a.get("reason") or "") for a in audit)


async def test_a_new_model_into_an_empty_models_folder(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any
) -> None:
    """No model at start-up, so no models device: the package's output tags are declared
    live and the model runs."""
    path = tmp_path / "gateway.yaml"
    body = _body(tmp_path, mosquitto.port, waveform_meter.port, model_deploy=True)
    empty = tmp_path / "empty-models"
    empty.mkdir()
    body["models"]["dir"] = str(empty)
    _write(path, body)
    with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec, \
            CommandClient(mosquitto.host, mosquitto.port) as brain:
        async with running(load_config(path), config_path=path):
            assert await rec.until(lambda s: len(s.births) >= 1, timeout=15)
            assert rec.snapshot().births[-1]["models"] == []
            brain.send_raw(json_command("model/deploy", "m-new", model_bundle("1")))
            answer = await brain.answer("m-new", timeout=30)
            assert answer["status"] == "accepted", answer
            assert answer["model"]["file"] == "kpi.yaml"
            assert await rec.until(lambda s: _models(s.births[-1]) == [("kpi", "1", "active")],
                                   timeout=15)
            assert await rec.until(lambda s: rec.samples_of("models.kpi/power_mean"),
                                   timeout=15)
    assert sorted(p.name for p in empty.iterdir()) == ["kpi.onnx", "kpi.yaml"]
