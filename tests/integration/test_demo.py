"""The main job: `chenxing-gateway demo` from simulated meters to a subscriber."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.parametrize("broker", ["mosquitto", "embedded"])
def test_demo_runs_and_every_device_reports(broker: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "demo", "--duration", "4", "--plain",
         "--broker", broker],
        capture_output=True, text=True, timeout=90,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True
    assert summary["broker"] == ("amqtt" if broker == "embedded" else "mosquitto")
    assert sorted(summary["devices_reported"]) == ["compressor-meter", "imm-meter"]
    assert summary["tags"] == 20 and summary["errors"] == 0
    assert summary["messages"] >= 5 and summary["samples"] >= 60


def test_demo_live_table_shows_values() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "demo", "--duration", "3"],
        capture_output=True, text=True, timeout=90, env={"COLUMNS": "120", "PATH": "/usr/bin:/bin",
                                                        "TERM": "dumb"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "imm-meter.energy_import" in run.stdout and "kWh" in run.stdout
    assert run.stdout.strip().splitlines()[-1].startswith("demo OK:")
