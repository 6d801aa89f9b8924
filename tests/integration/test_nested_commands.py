"""A command nested 30,000 levels deep, through real Mosquitto to a running gateway with MCU
node firmware updates enabled: answered ``rejected`` as malformed, audited as such, never a
"failed / internal error" nobody hears about."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from firmware_bridge.image import build_image
from gateway.config.loader import load_config
from hil.broker import MqttBroker
from hil.devices.mcu_node import McuNodeSimulator
from hil.netutil import free_port
from hil.recorder import TelemetryRecorder
from tests.firmware_bridge.test_fb_smp_gateway import audit, node_device, write_config
from tests.integration.command_client import CommandClient
from tests.integration.gateway_harness import running
from tests.integration.test_commands import start_commanding
from tests.integration.test_contract_schemas import validator

DEEP = "[" * 30_000 + "]" * 30_000
MALFORMED = "malformed JSON: nested more than 32 levels deep"


@pytest.fixture
async def sim() -> AsyncIterator[McuNodeSimulator]:
    async with McuNodeSimulator(node_id=6, seed=2, boot_time=0.1) as node:
        yield node


@pytest.mark.broker
async def test_deeply_nested_commands_are_answered_malformed_and_audited(
    tmp_path: Path, mosquitto: MqttBroker, sim: McuNodeSimulator
) -> None:
    folder = tmp_path / "firmware"
    folder.mkdir()
    image = build_image((2, 1, 0), 16 * 1024)
    (folder / "node-2.1.0.bin").write_bytes(image)
    digest = hashlib.sha256(image).hexdigest()
    device = node_device(sim, firmware={"folder": str(folder),
                                        "allow": [{"file": "node-2.1.0.bin", "sha256": digest}]})
    config_path = write_config(tmp_path, mosquitto.port, device, free_port())
    firmware = ('{"v": 1, "type": "firmware_update", "id": "fw-deep", "device": "spindle-node", '
                f'"image": {DEEP}, "sha256": "{digest}"}}')
    write = ('{"v": 1, "type": "cmd", "id": "cmd-deep", '
             f'"writes": [{{"tag": "spindle-node.temperature", "value": {DEEP}}}]}}')
    with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec, \
            CommandClient(mosquitto.host, mosquitto.port) as brain:
        async with running(load_config(config_path)):
            await start_commanding(rec)
            brain.send_raw(firmware)
            brain.send_raw(write)
            for cid in ("fw-deep", "cmd-deep"):
                answer = await brain.answer(cid)
                assert (answer["status"], answer["reason"]) == ("rejected", MALFORMED), answer
                validator("cmd-result").validate(answer)
    assert sim.firmware == (1, 0, 0)
    lines = audit(tmp_path / "state" / "audit.log")
    outcomes = {(e["event"], e["id"], e["outcome"], e["reason"]) for e in lines}
    assert ("firmware", "fw-deep", "rejected", MALFORMED) in outcomes
    assert ("cmd", "fw-deep", "rejected", MALFORMED) in outcomes
    assert ("cmd", "cmd-deep", "rejected", MALFORMED) in outcomes
    assert not [e for e in lines if e["outcome"] == "failed"]
