"""The gateway as an installed program: `chenxing-gateway run` in its own process."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hil.broker import MqttBroker
from hil.recorder import TelemetryRecorder
from tests.integration.gateway_harness import meter_device

pytestmark = pytest.mark.broker


def write_config(tmp: Path, broker: MqttBroker, meter_port: int) -> Path:
    body = {
        "gateway": {"id": "gw-proc", "site": "plant", "line": "l1", "state_dir": "state"},
        "devices": [meter_device("meter", meter_port)],
        "northbound": {"format": "json", "publish_interval": "50ms",
                       "mqtt": {"port": broker.port}},
        "http": {"port": 0},
    }
    path = tmp / "gateway.yaml"
    path.write_text(json.dumps(body))  # JSON is YAML
    return path


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_stops_polling_flushes_publishes_death_and_exits_0(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter, sig: signal.Signals
) -> None:
    config = write_config(tmp_path, mosquitto, waveform_meter.port)
    with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli.main", "run", "-c", str(config),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert await rec.until(lambda s: len(s.data_messages) >= 3, timeout=20)
            proc.send_signal(sig)
            _, err_bytes = await asyncio.wait_for(proc.communicate(), 20)
            err = err_bytes.decode()
        finally:
            if proc.returncode is None:
                proc.kill()
        assert proc.returncode == 0, err
        assert await rec.until(lambda s: len(s.deaths) >= 1, timeout=5)
    snap = rec.snapshot()
    death = snap.deaths[-1]
    assert death["reason"] == "shutdown" and death["session"] == snap.births[-1]["session"]
    assert "death published=True" in err and "drained=True" in err
    # the sequence state survived for the next run
    assert (tmp_path / "state" / "sequence.json").exists()


def test_invalid_config_exits_1_with_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("gateway: {id: x, site: s, line: l}\ndevices: []\n")
    run = subprocess.run([sys.executable, "-m", "gateway.cli.main", "run", "-c", str(bad)],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 1
    assert f"{bad}:2: devices:" in run.stderr and "at least 1" in run.stderr


def test_killed_gateway_leaves_its_will_as_death(tmp_path: Path, mosquitto: MqttBroker) -> None:
    """SIGKILL: no goodbye from the gateway, the broker publishes the registered will."""
    from hil.netutil import free_port

    config = write_config(tmp_path, mosquitto, free_port())  # no device needed for this
    with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli.main", "run", "-c", str(config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            assert rec.wait_for(lambda s: len(s.births) >= 1, timeout=20)
            proc.kill()
            proc.wait(10)
            # the kernel closes the dead process's socket; the broker sends the will at once
            assert rec.wait_for(lambda s: len(s.deaths) >= 1, timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
    death = rec.snapshot().deaths[-1]
    assert death["reason"] == "connection lost" and death["gateway"] == "gw-proc"
