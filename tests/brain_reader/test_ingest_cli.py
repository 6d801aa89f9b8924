"""``chenxing-ingest`` as a process: options, a YAML file, clear errors, counters."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path

import pytest

from hil.broker import MqttBroker
from hil.victoria_metrics import VictoriaMetrics
from tests.brain_reader.helpers import Publisher, json_data
from tests.waiting import until

pytestmark = pytest.mark.broker

CLI = [sys.executable, "-m", "brain_reader.cli"]


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*CLI, *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_bad_options_and_files_say_what_is_wrong(tmp_path: Path) -> None:
    code, _, err = await run_cli("--broker", "ftp://x", "--influx-url", "localhost:8086")
    assert code == 1
    assert "brokers[0]" in err and "mqtt:// or mqtts://" in err
    assert "invalid InfluxDB URL" in err and "influxdb.bucket: required key is missing" in err
    code, _, err = await run_cli("--token-env", "A", "--token-file", "b")
    assert code == 2 and "not both" in err
    config = tmp_path / "ingest.yaml"
    config.write_text("brokers: [mqtt://127.0.0.1:1]\ngroup: ok\nsequense_check: false\n")
    code, _, err = await run_cli("-c", str(config))
    assert code == 1 and (f"{config}:3: sequense_check: unknown key 'sequense_check'; "
                          "did you mean 'sequence_check'?") in err


async def test_reads_from_a_yaml_file_writes_and_prints_its_counters_on_sigterm(
    tmp_path: Path, mosquitto: MqttBroker, victoria_metrics: VictoriaMetrics
) -> None:
    config = tmp_path / "ingest.yaml"
    config.write_text(
        f"brokers: [{mosquitto.url}]\ngroup: brain\nreport_interval: 100ms\n"
        f"influxdb: {{url: '{victoria_metrics.url}', bucket: brain, flush_interval: 200ms,"
        " token: {env: CX_TEST_TOKEN}}\n"
    )
    proc = await asyncio.create_subprocess_exec(
        *CLI, "-c", str(config), "--json", env={"CX_TEST_TOKEN": "t", "PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None and proc.stdout is not None
    log: list[str] = []

    async def read_log() -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            log.append(line.decode(errors="replace"))

    def logged(pattern: str) -> bool:
        return any(re.search(pattern, line) for line in log)

    reading = asyncio.create_task(read_log())
    pub = Publisher(mosquitto)
    try:
        await until(lambda: logged("MQTT connected"), "the reader connected",
                    seen=lambda: "".join(log))

        def probed() -> bool:  # a birth in its subscriptions is read: they are all in place
            if logged("birth of gateway plant/l1/gw-probe"):
                return True
            pub.publish("chenxing/v1/plant/l1/gw-probe/birth", json.dumps(
                {"v": 1, "type": "birth", "site": "plant", "line": "l1", "gateway": "gw-probe",
                 "tags": []}).encode())  # fmt: skip
            return False

        await until(probed, "the reader's subscriptions in place", interval=0.2)
        for seq in range(3):
            pub.publish(*json_data(seq, samples=4))
        # its periodic report: the three messages read and their points written
        await until(lambda: logged(r"data_messages=3 .*points=12 written=12 "),
                    "3 messages read, 12 points written", seen=lambda: log[-3:])
        proc.send_signal(signal.SIGTERM)
        out = await asyncio.wait_for(proc.stdout.read(), 20)
        await asyncio.wait_for(proc.wait(), 20)
        await reading
    finally:
        pub.close()
        if proc.returncode is None:
            proc.kill()
        reading.cancel()
    assert proc.returncode == 0
    counters = json.loads(out)
    assert counters["data_messages"] == 3 and counters["points"] == 12
    assert counters["written"] == 12 and counters["gaps"] == 0
