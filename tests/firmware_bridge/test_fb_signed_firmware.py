"""Signed firmware bundles where an image enters, with ``bundles.require_signed``: the local API
(the gateway's real HTTP server on loopback), the brain's ``firmware_update`` command over real
Mosquitto, and ``firmware upload`` on the port after the gateway stopped; against the simulated
MCU node. Every refusal is answered with its reason, nothing reaches the node, and the audit
log has a line for each."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge.image import build_image
from gateway.bundles import build_bundle, keys
from gateway.config.loader import load_config
from gateway.errors import FirmwareApiError
from gateway.http_firmware import update_through_gateway
from hil.broker import MqttBroker
from hil.devices.mcu_node import McuNodeSimulator
from hil.recorder import TelemetryRecorder
from tests.firmware_bridge.test_fb_smp_gateway import audit, cli, node_device, sim, write_config
from tests.integration.command_client import CommandClient
from tests.integration.gateway_harness import running
from tests.waiting import until

__all__ = ["sim"]  # the simulated node's fixture, shared with the unsigned tests

BRAIN = keys.generate_private_key()
ALGO = keys.generate_private_key()
STRANGER = keys.generate_private_key()
SIZE = 8 * 1024


def signed(version: tuple[int, int, int], *, claimed: str | None = None,
           key: keys.PrivateKey = BRAIN, key_id: str = "brain") -> bytes:
    """A firmware bundle of an image of ``version`` (the manifest may claim another)."""
    text = ".".join(map(str, version))
    return build_bundle("firmware", "spindle-fw", claimed or text,
                        [(f"node-{text}.bin", build_image(version, SIZE))], key, key_id)


def bundles_block() -> dict[str, Any]:
    return {"require_signed": True,
            "keys": {"brain": {"public_key": keys.public_key_text(BRAIN.public_key())},
                     "algo": {"public_key": keys.public_key_text(ALGO.public_key())}},
            "signers": {"firmware": ["brain"], "model": ["algo"]}}


@pytest.mark.broker
async def test_only_signed_firmware_reaches_the_node(
    tmp_path: Path, mosquitto: MqttBroker, sim: McuNodeSimulator
) -> None:
    folder = tmp_path / "firmware"
    folder.mkdir()
    files = {"node-1.6.0.bundle": signed((1, 6, 0)), "node-1.5.0.bundle": signed((1, 5, 0)),
             "node-1.7.0.bin": build_image((1, 7, 0), SIZE)}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    allow = [{"file": n, "sha256": hashlib.sha256(d).hexdigest()} for n, d in files.items()]
    config_path = write_config(tmp_path, mosquitto.port, node_device(
        sim, firmware={"folder": str(folder), "allow": allow}), 0)
    body = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**body, "bundles": bundles_block()}, indent=1))
    state = tmp_path / "state"

    async with running(load_config(config_path)) as gw:
        runner = gw.gateway.runners["spindle-node"]
        await until(lambda: runner.driver is not None and getattr(runner.driver, "node", None),
                    "the node's HELLO")
        url = f"http://127.0.0.1:{gw.gateway.http_port}"
        # the births went out before the node said its version: once it did, they go again
        # (the retained birth is the last one)
        first = TelemetryRecorder(mosquitto.host, mosquitto.port).start()
        try:
            assert await first.until(lambda s: s.births and s.births[-1]["firmware"] == [
                {"device": "spindle-node", "name": None, "applied": None, "reported": "1.0.0"}],
                timeout=15), first.snapshot().births
        finally:
            first.stop()

        async def refused(body: bytes) -> FirmwareApiError:
            with pytest.raises(FirmwareApiError) as exc:
                await update_through_gateway(url, "spindle-node", body)
            return exc.value

        # the local API: every refusal before a byte goes to the node
        for body, status, reason in (
            (build_image((1, 5, 0), SIZE), 403, "refused (unsigned): the image is not a "
             "signed bundle and this gateway requires signed firmware bundles"),
            (signed((1, 5, 0), key=STRANGER, key_id="stranger"), 403,
             "refused (unknown_key): signed by key 'stranger'"),
            (signed((1, 5, 0), key=STRANGER, key_id="brain"), 403, "refused (bad_signature)"),
            (signed((1, 5, 0), key=ALGO, key_id="algo"), 403,
             "refused (key_not_allowed): key 'algo' may not sign firmware bundles"),
            (signed((1, 5, 0), claimed="1.5.1"), 400, "refused (payload_mismatch): the "
             "image's header says version 1.5.0, the manifest 1.5.1"),
            (files["node-1.5.0.bundle"][:2000], 400, "refused (malformed)"),  # cut in the image
        ):
            exc = await refused(body)
            assert exc.status == status and reason in str(exc), (status, str(exc))
        assert sim.smp.upload_requests == 0 and sim.firmware == (1, 0, 0)

        # a good bundle goes through; its replay does not
        result = await update_through_gateway(url, "spindle-node", files["node-1.5.0.bundle"])
        assert result["outcome"] == "updated" and sim.firmware == (1, 5, 0)
        uploads = sim.smp.upload_requests
        replay = await refused(files["node-1.5.0.bundle"])
        assert replay.status == 409 and "refused (stale_version): firmware spindle-fw version " \
            "1.5.0 is not newer than 1.5.0, applied before on spindle-node" in str(replay)

        # the brain's command: a signed bundle from the firmware folder; raw and old ones not
        with CommandClient(mosquitto.host, mosquitto.port) as brain:
            def cmd(cid: str, name: str) -> None:
                brain.send_raw(json.dumps({
                    "v": 1, "type": "firmware_update", "id": cid, "device": "spindle-node",
                    "image": name, "sha256": hashlib.sha256(files[name]).hexdigest()}))

            for cid, name, reason in (
                ("fw-raw", "node-1.7.0.bin", "unsigned: the image is not a signed bundle"),
                ("fw-old", "node-1.5.0.bundle", "stale_version: firmware spindle-fw version 1.5.0"),
            ):
                cmd(cid, name)  # one at a time: a device takes one update at a time
                answer = await brain.answer(cid)
                assert answer["status"] == "rejected" and reason in answer["reason"], answer
            assert sim.smp.upload_requests == uploads
            births = TelemetryRecorder(mosquitto.host, mosquitto.port).start()
            try:
                cmd("fw-new", "node-1.6.0.bundle")
                answer = await brain.answer("fw-new", timeout=30)
                assert answer["status"] == "accepted", answer
                assert "runs 1.6.0 (was 1.5.0)" in answer["reason"] and sim.firmware == (1, 6, 0)
                # the inventory: the births go again with the version applied and, once the
                # node is back up, the version it reports
                assert await births.until(lambda s: s.births[-1]["firmware"] == [
                    {"device": "spindle-node", "name": "spindle-fw", "applied": "1.6.0",
                     "reported": "1.6.0"}], timeout=15), births.snapshot().births[-1]
            finally:
                births.stop()

    applied = json.loads((state / "bundles" / "applied.json").read_text())["applied"]
    assert applied["firmware/spindle-fw@spindle-node"]["version"] == "1.6.0"
    lines = audit(state / "audit.log")
    bundle_lines = [(e["outcome"], e.get("reason"), e["source"])
                    for e in lines if e["event"] == "bundle"]
    http = "http POST /api/firmware/spindle-node"
    assert bundle_lines == [
        ("refused", "unsigned", http), ("refused", "unknown_key", http),
        ("refused", "bad_signature", http), ("refused", "key_not_allowed", http),
        ("refused", "payload_mismatch", http), ("refused", "malformed", http),
        ("verified", None, http), ("applied", None, http), ("refused", "stale_version", http),
        ("refused", "unsigned", "cmd fw-raw"), ("refused", "stale_version", "cmd fw-old"),
        ("verified", None, "cmd fw-new"), ("applied", None, "cmd fw-new"),
    ]
    firmware = {(e["id"], e["outcome"]) for e in lines if e["event"] == "firmware"}
    assert {("fw-raw", "rejected"), ("fw-old", "rejected"), ("fw-new", "updated")} <= firmware

    # the gateway stopped: `firmware upload` opens the port, with the same rules and versions
    raw = tmp_path / "node-1.7.0.bin"
    raw.write_bytes(files["node-1.7.0.bin"])
    code, _, err = await cli("--device", "spindle-node", "-c", str(config_path), str(raw))
    assert code == 1 and "refused (unsigned)" in err, err
    old = tmp_path / "node-1.6.0.bundle"
    old.write_bytes(files["node-1.6.0.bundle"])
    code, _, err = await cli("--device", "spindle-node", "-c", str(config_path), str(old))
    assert code == 1 and "refused (stale_version)" in err, err
    new = tmp_path / "node-1.7.0.bundle"
    new.write_bytes(signed((1, 7, 0)))
    code, out, err = await cli("--device", "spindle-node", "-c", str(config_path), str(new))
    assert code == 0, err
    assert "(signed bundle, key brain)" in err and "updated: running 1.7.0 (was 1.6.0)" in out
    applied = json.loads((state / "bundles" / "applied.json").read_text())["applied"]
    assert applied["firmware/spindle-fw@spindle-node"]["version"] == "1.7.0"
    sources = [e["source"] for e in audit(state / "audit.log")[len(lines):]]
    assert sources == ["cli firmware upload spindle-node"] * 4  # unsigned, stale, verified, applied
