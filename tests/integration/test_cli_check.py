"""``chenxing-gateway check`` against a running meter simulator, a dead port and a real broker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway import exit_codes
from hil.broker import MqttBroker
from hil.netutil import free_port
from tests.integration.gateway_harness import meter_device

pytestmark = pytest.mark.broker


def _write(tmp: Path, devices: list[dict[str, Any]], broker_port: int) -> Path:
    body = {
        "gateway": {"id": "gw-check", "site": "plant", "line": "l1", "state_dir": "state"},
        "devices": devices,
        "northbound": {"mqtt": {"port": broker_port}},
        "http": {"port": 0},
    }
    path = tmp / "gateway.yaml"
    path.write_text(json.dumps(body))
    return path


def _check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "check", "-c", str(config), "--timeout", "3"],
        capture_output=True, text=True, timeout=60,
    )


async def _run_check(config: Path) -> subprocess.CompletedProcess[str]:
    import asyncio

    return await asyncio.to_thread(_check, config)


async def test_all_reachable_exits_0_with_values(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter
) -> None:
    config = _write(tmp_path, [meter_device("meter", waveform_meter.port)], mosquitto.port)
    result = await _run_check(config)
    assert result.returncode == exit_codes.OK, result.stdout + result.stderr
    out = result.stdout
    assert "device meter (modbus_tcp): OK" in out
    assert "meter.voltage = " in out and "V (good)" in out
    assert f"broker mqtt://127.0.0.1:{mosquitto.port}: OK: CONNACK: Success" in out
    assert "all checks passed" in out


async def test_refused_device_illegal_address_and_dead_broker_fail(
    tmp_path: Path, waveform_meter
) -> None:
    dead = free_port()
    bad_tag = {"name": "nowhere", "table": "input", "address": 9000, "type": "uint16"}
    devices = [
        meter_device("meter", waveform_meter.port),
        meter_device("ghost", dead),
        {**meter_device("odd", waveform_meter.port), "tags": [bad_tag]},
    ]
    config = _write(tmp_path, devices, free_port())
    result = await _run_check(config)
    assert result.returncode == exit_codes.CHECK_FAILED, result.stdout + result.stderr
    out = result.stdout
    assert "device meter (modbus_tcp): OK" in out
    assert "device ghost (modbus_tcp): FAILED: connection refused" in out
    assert ("device odd (modbus_tcp): FAILED: connected, but 1 tag not good: nowhere; "
            "1 request answered Modbus exception 2 (illegal data address)\n") in out
    assert "exception_2" not in out  # the counter's name is for metrics, not for people
    assert "broker mqtt://127.0.0.1:" in out and "FAILED: connection refused" in out
    assert "3 checks failed" in out


async def test_opcua_unknown_node_fails_and_good_nodes_report_values(tmp_path: Path) -> None:

    from gateway.cli.check_cmd import run_checks
    from gateway.config.loader import load_config
    from hil.devices.opcua_plc import OpcUaPlcSimulator
    from hil.process.injection_moulding import InjectionMouldingModel

    async with OpcUaPlcSimulator(InjectionMouldingModel(seed=7), update_interval=0.05) as sim:
        device = {
            "name": "press", "protocol": "opcua", "endpoint": sim.endpoint,
            "publishing_interval": "100ms", "timeout": "2s",
            "tags": [
                {"name": "melt_temp", "node": sim.node_id("Machine.MeltTemp"), "type": "float64"},
                {"name": "nope", "node": sim.node_id("Machine.NoSuchNode"), "type": "float64"},
            ],
        }
        ok_device = {**device, "name": "press-ok", "tags": device["tags"][:1]}
        config = load_config(_write(tmp_path, [device, ok_device], free_port()))
        devices, broker = await run_checks(config, tmp_path, timeout=3.0)
    by_name = {d.name: d for d in devices}
    bad, good = by_name["press"], by_name["press-ok"]
    assert not bad.ok, bad.reason
    # the answer's status, not "no values within 3 s": the missing node did not hold it up
    assert bad.reason.endswith(
        "not good: nope; 1 answer came with OPC UA status BadNodeIdUnknown (the node id refers "
        "to a node that does not exist in the server address space)"), bad.reason
    assert good.ok, good.reason
    assert good.readings[0].quality == "good" and isinstance(good.readings[0].value, float)
    assert not broker.ok


def _dtu_device(port: int) -> dict[str, Any]:
    from hil.devices.modbus_meter import meter_tag_configs

    return {"name": "dtu", "protocol": "modbus_dtu", "listen_host": "127.0.0.1",
            "listen_port": port, "registration_packet": {"ascii": "DTU-7"},
            "heartbeat_packet": {"hex": "FE"}, "tags": meter_tag_configs("voltage")}


async def test_check_waits_for_a_dtu_to_dial_in_and_says_so(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    from hil.devices.modbus_dtu import DtuSimulator

    port = free_port()
    config = _write(tmp_path, [_dtu_device(port)], mosquitto.port)
    async with DtuSimulator("127.0.0.1", port, registration=b"DTU-7", heartbeat=b"\xfe",
                            heartbeat_interval=0.1, redial_delay=0.05):
        result = await _run_check(config)
    assert result.returncode == exit_codes.OK, result.stdout + result.stderr
    assert (f"device dtu: waiting up to 3 s for the ascii 'DTU-7' DTU to dial in to port "
            f"{port} and register") in result.stderr
    assert "device dtu (modbus_dtu): OK" in result.stdout
    assert f"identity: DTU ascii 'DTU-7' on 127.0.0.1:{port}, connected from 127.0.0.1:" \
        in result.stdout
    assert "dtu.voltage = " in result.stdout and "V (good)" in result.stdout


async def test_check_of_a_dtu_that_does_not_dial_in_says_what_it_waited_for(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    port = free_port()
    config = _write(tmp_path, [_dtu_device(port)], mosquitto.port)
    result = await _run_check(config)
    assert result.returncode == exit_codes.CHECK_FAILED, result.stdout + result.stderr
    assert (f"device dtu (modbus_dtu): FAILED: waited 3 s for the ascii 'DTU-7' DTU to dial "
            f"in to port {port} and register; it did not (--timeout to wait longer)"
            ) in result.stdout
