"""Firmware update end to end: the CLI (through the running gateway, and on the port directly)
and the brain's ``firmware_update`` command over real Mosquitto, against the simulated node."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from firmware_bridge.image import build_image
from gateway.config.loader import load_config
from gateway.errors import FirmwareApiError
from gateway.http_firmware import update_through_gateway
from gateway.types import Quality
from hil.broker import MqttBroker
from hil.devices.mcu_node import McuNodeSimulator
from hil.netutil import free_port
from hil.recorder import TelemetryRecorder
from tests.integration.command_client import CommandClient
from tests.integration.gateway_harness import running
from tests.integration.test_contract_schemas import validator
from tests.waiting import until

REPO = Path(__file__).resolve().parents[2]


def node_device(sim: McuNodeSimulator, **kw: Any) -> dict[str, Any]:
    return {
        "name": "spindle-node", "protocol": "mcu_node", "port": sim.serial_path,
        "node_id": sim.node_id, "sample_interval": "50ms", "samples_per_frame": 2,
        "stale_after": "3s", "hello_timeout": "1s",
        "tags": [{"name": "temperature", "sensor": "temperature", "unit": "degC"}],
        **kw,
    }


def write_config(tmp: Path, broker_port: int, device: dict[str, Any],
                 http_port: int, contract: str = "json") -> Path:
    body = {
        "gateway": {"id": "gw-test", "site": "plant", "line": "line-1",
                    "state_dir": str(tmp / "state")},
        "devices": [device],
        "northbound": {"format": contract, "publish_interval": "50ms",
                       "mqtt": {"host": "127.0.0.1", "port": broker_port,
                                "reconnect_min": 0.2, "reconnect_max": 1.0}},
        "http": {"port": http_port},
        "commands": {"enabled": True},
    }
    path = tmp / "gateway.yaml"
    path.write_text(json.dumps(body, indent=1))
    return path


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli.main", "firmware", "upload", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO,
        env={**os.environ, "COLUMNS": "160"})
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def audit(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
async def sim() -> AsyncIterator[McuNodeSimulator]:
    async with McuNodeSimulator(node_id=6, seed=2, boot_time=0.1) as node:
        yield node


async def test_cli_uploads_directly_when_no_gateway_runs(
    tmp_path: Path, sim: McuNodeSimulator
) -> None:
    image = tmp_path / "node-1.5.0.bin"
    image.write_bytes(build_image((1, 5, 0), 48 * 1024))
    config = write_config(tmp_path, free_port(), node_device(sim), free_port())
    code, out, err = await cli("--device", "spindle-node", "-c", str(config), str(image))
    assert code == 0, err
    assert "no gateway running" in err and "49.2/49.2 kB" in err  # the progress bar, at its end
    assert "spindle-node: updated: running 1.5.0 (was 1.0.0)" in out
    assert sim.firmware == (1, 5, 0)
    # refused before touching the node: wrong hash, unknown device
    code, _, err = await cli("--device", "spindle-node", "-c", str(config), "--sha256",
                             "ab" * 32, str(image))
    assert code == 1 and "expected abab" in err
    code, _, err = await cli("--device", "nope", "-c", str(config), str(image))
    assert code == 1 and "no mcu_node device 'nope'" in err
    assert sim.smp.upload_requests > 0 and sim.firmware == (1, 5, 0)


@pytest.mark.broker
async def test_cli_through_the_gateway_and_the_brain_command(
    tmp_path: Path, mosquitto: MqttBroker, sim: McuNodeSimulator
) -> None:
    folder = tmp_path / "firmware"
    folder.mkdir()
    good = build_image((2, 1, 0), 32 * 1024)
    (folder / "node-2.1.0.bin").write_bytes(good)
    other = build_image((2, 2, 0), 16 * 1024)
    (folder / "node-2.2.0.bin").write_bytes(other)  # present, but not allow-listed
    tampered = build_image((2, 3, 0), 16 * 1024)
    (folder / "node-2.3.0.bin").write_bytes(tampered[:-1] + b"\x00")  # differs from the list
    sha = {n: hashlib.sha256(d).hexdigest() for n, d in
           (("good", good), ("other", other), ("tampered", tampered))}
    device = node_device(sim, firmware={"folder": str(folder), "allow": [
        {"file": "node-2.1.0.bin", "sha256": sha["good"]},
        {"file": "node-2.3.0.bin", "sha256": sha["tampered"]},
    ]})
    config_path = write_config(tmp_path, mosquitto.port, device, free_port())
    cli_image = tmp_path / "node-1.9.0.bin"
    cli_image.write_bytes(build_image((1, 9, 0), 40 * 1024))
    with CommandClient(mosquitto.host, mosquitto.port) as brain:
        async with running(load_config(config_path)) as gw:
            runner = gw.gateway.runners["spindle-node"]
            await until(lambda: runner.driver is not None and getattr(runner.driver, "node", None),
                        "the node's HELLO")
            # the CLI hands the image to the gateway that owns the port
            code, out, err = await cli("--device", "spindle-node", "-c", str(config_path),
                                       str(cli_image))
            assert code == 0, err
            assert "through the running gateway" in err and "41.0/41.0 kB" in err
            assert "updated: running 1.9.0 (was 1.0.0)" in out
            assert sim.firmware == (1, 9, 0)
            # the API refuses before touching the node: unknown device, wrong hash, no image
            url = f"http://127.0.0.1:{gw.gateway.http_port}"
            image = cli_image.read_bytes()
            for device_name, body, want, status in (("nope", image, None, 404),
                                                   ("spindle-node", image, "ab" * 32, 400),
                                                   ("spindle-node", b"junk" * 20, None, 400)):
                with pytest.raises(FirmwareApiError) as refused:
                    await update_through_gateway(url, device_name, body, sha256=want)
                assert refused.value.status == status, refused.value
            assert sim.firmware == (1, 9, 0)

            sent: dict[str, dict[str, Any]] = {}

            def cmd(cid: str, image: str, digest: str, **kw: Any) -> None:
                sent[cid] = {"v": 1, "type": "firmware_update", "id": cid,
                             "device": "spindle-node", "image": image, "sha256": digest, **kw}
                brain.send_raw(json.dumps(sent[cid]))

            cmd("fw-other", "node-2.2.0.bin", sha["other"])
            cmd("fw-path", "../node-2.1.0.bin", sha["good"])
            cmd("fw-sha", "node-2.1.0.bin", sha["other"])
            cmd("fw-file", "node-2.3.0.bin", sha["tampered"])
            cmd("fw-dev", "node-2.1.0.bin", sha["good"], device="nope")
            reasons = {
                "fw-other": "not allow-listed", "fw-path": "not allow-listed",
                "fw-sha": "does not match the allow-list",
                "fw-file": "the file's sha256 is", "fw-dev": "no such MCU node",
            }
            for cid, reason in reasons.items():
                answer = await brain.answer(cid)
                assert answer["status"] == "rejected" and reason in answer["reason"], answer
            assert sim.firmware == (1, 9, 0)

            cmd("fw-ok", "node-2.1.0.bin", sha["good"])
            answer = await brain.answer("fw-ok", timeout=30)
            assert answer["status"] == "accepted", answer
            assert "runs 2.1.0 (was 1.9.0)" in answer["reason"]
            assert sim.firmware == (2, 1, 0)
            # the command and its answers follow the shipped schemas (docs/schemas/)
            validator("firmware_update").validate(sent["fw-ok"])
            assert not validator("firmware_update").is_valid(sent["fw-path"])  # not a file name
            for cid in (*reasons, "fw-ok"):
                validator("cmd-result").validate(await brain.answer(cid))
            # a redelivery is answered again, not executed again
            requests = sim.smp.upload_requests
            cmd("fw-ok", "node-2.1.0.bin", sha["good"])
            again = await brain.answer("fw-ok", count=2)
            assert again["status"] == "accepted" and again.get("duplicate") is True, again
            assert sim.smp.upload_requests == requests
            # telemetry flows after the update: fresh good samples of the node's tag
            pipeline = gw.gateway.pipeline
            tag = gw.gateway.catalog.get("spindle-node.temperature")
            assert tag is not None
            seen = int(pipeline.latest_ns[tag.id])
            await until(lambda: int(pipeline.latest_ns[tag.id]) > seen, "a fresh sample")
            assert int(pipeline.latest_quality[tag.id]) == Quality.GOOD
    lines = [e for e in audit(tmp_path / "state" / "audit.log") if e["event"] == "firmware"]
    by_id = {(e["id"], e["outcome"]) for e in lines}
    assert {(cid, "rejected") for cid in reasons} <= by_id
    assert {("fw-ok", "started"), ("fw-ok", "updated")} <= by_id
    done = next(e for e in lines if e["id"] == "fw-ok" and e["outcome"] == "updated")
    assert done["running_version"] == "2.1.0" and done["image_sha256"] == sha["good"]
    cmds = [e for e in audit(tmp_path / "state" / "audit.log") if e["event"] == "cmd"]
    assert {e["id"] for e in cmds} >= {*reasons, "fw-ok"}


@pytest.mark.broker
async def test_sparkplug_edge_node_takes_the_json_firmware_command_on_ncmd(
    tmp_path: Path, mosquitto: MqttBroker, sim: McuNodeSimulator
) -> None:
    """Sparkplug has no firmware metric: the JSON ``firmware_update`` object, published as
    the payload of an NCMD, gets the same checks and is answered by the node metric
    ``Node Control/Last Command Result`` (docs/contract-sparkplug.md)."""
    folder = tmp_path / "firmware"
    folder.mkdir()
    good = build_image((2, 1, 0), 16 * 1024)
    (folder / "node-2.1.0.bin").write_bytes(good)
    digest = hashlib.sha256(good).hexdigest()
    device = node_device(sim, firmware={"folder": str(folder),
                                        "allow": [{"file": "node-2.1.0.bin", "sha256": digest}]})
    config_path = write_config(tmp_path, mosquitto.port, device, free_port(), "sparkplug")
    brain = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="brain-fw")
    brain.connect(mosquitto.host, mosquitto.port)
    brain.loop_start()
    result_tag = "Node Control/Last Command Result"

    def answers() -> dict[str, dict[str, Any]]:
        return {a["id"]: a for a in (json.loads(s.value) for s in rec.samples_of(result_tag)
                                     if isinstance(s.value, str))}

    def ncmd(cid: str, image: str) -> None:
        body = {"v": 1, "type": "firmware_update", "id": cid, "device": "spindle-node",
                "image": image, "sha256": digest}
        brain.publish("spBv1.0/plant/NCMD/gw-test", json.dumps(body), qos=1).wait_for_publish(5)

    try:
        with TelemetryRecorder(mosquitto.host, mosquitto.port, topic_root="spBv1.0") as rec:
            async with running(load_config(config_path)) as gw:
                assert await rec.until(lambda s: "spindle-node.temperature" in s.latest)
                runner = gw.gateway.runners["spindle-node"]
                assert runner.driver is not None
                ncmd("fw-sp-other", "node-9.9.9.bin")
                assert await rec.until(lambda _s: "fw-sp-other" in answers())
                refused = answers()["fw-sp-other"]
                assert refused["status"] == "rejected" and "not allow-listed" in refused["reason"]
                assert sim.firmware == (1, 0, 0)
                # the same allow-listed command on DCMD is not a firmware command (DCMD
                # carries protobuf metric writes only): refused as malformed, nothing runs
                seen = len(rec.samples_of(result_tag))
                body = {"v": 1, "type": "firmware_update", "id": "fw-sp-dcmd",
                        "device": "spindle-node", "image": "node-2.1.0.bin", "sha256": digest}
                brain.publish("spBv1.0/plant/DCMD/gw-test/spindle-node",
                              json.dumps(body), qos=1).wait_for_publish(5)
                assert await rec.until(lambda _s: len(rec.samples_of(result_tag)) > seen)
                last = json.loads(rec.samples_of(result_tag)[-1].value)
                assert last["status"] == "rejected", last
                assert sim.firmware == (1, 0, 0)
                ncmd("fw-sp-ok", "node-2.1.0.bin")
                assert await rec.until(lambda _s: "fw-sp-ok" in answers(), timeout=30)
                done = answers()["fw-sp-ok"]
                assert done["status"] == "accepted" and "runs 2.1.0" in done["reason"], done
                assert sim.firmware == (2, 1, 0)
    finally:
        brain.loop_stop()
        brain.disconnect()
    lines = [e for e in audit(tmp_path / "state" / "audit.log") if e["event"] == "firmware"]
    assert {(e["id"], e["outcome"]) for e in lines} >= {
        ("fw-sp-other", "rejected"), ("fw-sp-ok", "started"), ("fw-sp-ok", "updated")}
    assert all(e["topic"] == "spBv1.0/plant/NCMD/gw-test" for e in lines)
