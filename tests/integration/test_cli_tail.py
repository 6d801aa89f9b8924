"""``chenxing-gateway tail --once`` against a running gateway with a bearer token."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from gateway.types import Quality
from hil.broker import MqttBroker
from tests.integration.gateway_harness import gateway_config, meter_device, running
from tests.waiting import until

pytestmark = pytest.mark.broker


async def _tail(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli.main", "tail", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_tail_once_prints_matching_tags_with_quality_and_age(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    http = {"token": {"file": str(token_file)}}
    config = gateway_config(tmp_path, mosquitto.port, [meter_device("meter", waveform_meter.port)],
                            http=http)
    config_file = tmp_path / "gateway.yaml"
    config_file.write_text(json.dumps({
        "gateway": {"id": "gw-test", "site": "plant", "line": "line-1"},
        "devices": [meter_device("meter", waveform_meter.port)],
        "http": {"port": 8321, **http},
    }))
    async with running(config) as gw:
        pipeline, catalog = gw.gateway.pipeline, gw.gateway.catalog
        voltage = catalog.id_of("meter.voltage")
        await until(lambda: pipeline.latest_quality[voltage] == Quality.GOOD, "a good voltage")
        url = f"http://127.0.0.1:{gw.gateway.http_port}"
        rc, out, err = await _tail("-c", str(config_file), "--url", url, "--once",
                                   "--tag", "meter.v*", "--tag", "*.current")
        assert rc == 0, err
        assert "meter.voltage" in out and "meter.current" in out
        assert "meter.temperature" not in out
        assert "good" in out and "V" in out and "2 tags" in out

        # a wrong token is refused with a readable reason
        token_file.write_text("wrong\n")
        rc, out, err = await _tail("-c", str(config_file), "--url", url, "--once")
        assert rc == 3 and "HTTP 401" in err
