"""``chenxing-gateway watch`` as a process against a running gateway on a real Mosquitto:
Sparkplug decoded with the aliases of a birth it asked for (it started after the
gateway's), the JSON contract, filters by device and tag, ``--once``, JSON lines."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.northbound.publisher import NorthboundCounters
from gateway.runtime.gateway import Gateway
from hil.broker import MqttBroker
from tests.integration.gateway_harness import gateway_config, meter_device, running
from tests.waiting import until

pytestmark = pytest.mark.broker


async def watch(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli.main", "watch", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def published(gateway: Gateway) -> NorthboundCounters:
    assert gateway.northbound is not None
    return gateway.northbound.counters


def records(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


async def test_watch_decodes_sparkplug_with_the_aliases_of_a_rebirth(
        tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any) -> None:
    config = gateway_config(tmp_path, mosquitto.port,
                            [meter_device("meter", waveform_meter.port),
                             meter_device("other", waveform_meter.port)],
                            format="sparkplug")
    broker = f"mqtt://127.0.0.1:{mosquitto.port}"
    async with running(config) as gw:
        counters = published(gw.gateway)
        await until(lambda: counters.births and counters.messages_published > 3,
                    "births and data on the broker", timeout=20)
        births = counters.births

        # started after the births: the data's aliases are resolved from the rebirth it asks
        rc, out, err = await watch("--broker", broker, "--once", "--json",
                                   "--device", "meter", "--tag", "volt*", "--tag", "*.current")
        assert rc == 0, err
        found = records(out)
        assert {r["tag"] for r in found} == {"voltage", "current"}
        assert all(r["device"] == "meter" and r["source"] == "plant/gw-test" for r in found)
        assert all(isinstance(r["value"], float) and r["quality"] == "good" for r in found)
        assert counters.births > births

        # the console view: one line per value, device.tag, no other device
        rc, out, err = await watch("--broker", broker, "--once", "--device", "other",
                                   "--tag", "temperature")
        assert rc == 0, err
        lines = out.splitlines()
        assert lines and all("other.temperature" in line for line in lines)


async def test_watch_without_rebirth_says_why_nothing_matched(
        tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any) -> None:
    config = gateway_config(tmp_path, mosquitto.port, [meter_device("meter", waveform_meter.port)],
                            format="sparkplug")
    async with running(config) as gw:
        counters = published(gw.gateway)
        await until(lambda: counters.messages_published > 3, "data on the broker", timeout=20)
        rc, out, err = await watch("--broker", f"mqtt://127.0.0.1:{mosquitto.port}", "--once",
                                   "--no-rebirth", "--timeout", "3")
    assert rc == 7 and out == ""
    assert "aliases no birth explained" in err and "--no-rebirth" in err


async def test_watch_json_contract_from_the_gateway_config(
        tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any) -> None:
    config = gateway_config(tmp_path, mosquitto.port, [meter_device("meter", waveform_meter.port)])
    config_file = tmp_path / "gateway.yaml"
    config_file.write_text(json.dumps({
        "gateway": {"id": "gw-test", "site": "plant", "line": "line-1"},
        "devices": [meter_device("meter", waveform_meter.port)],
        "northbound": {"format": "json", "mqtt": {"host": "127.0.0.1", "port": mosquitto.port}},
    }))
    async with running(config):
        rc, out, err = await watch("-c", str(config_file), "--once", "--json",
                                   "--tag", "meter.energy_import")
    assert rc == 0, err
    [record] = records(out)
    assert (record["source"], record["device"], record["tag"]) == (
        "plant/line-1/gw-test", "meter", "energy_import")
    assert record["kind"] == "data" and record["time"].endswith("Z")


async def test_watch_refuses_a_bad_broker_address() -> None:
    rc, _, err = await watch("--broker", "http://x", "--once")
    assert rc == 2 and "--broker" in err and "Traceback" not in err
