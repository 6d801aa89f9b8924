"""systemd Type=notify: READY once the gateway runs, WATCHDOG pings from its event loop (so a
stuck loop lets systemd's watchdog fire), STOPPING on SIGTERM, and log lines with journald
priorities; over a real unix datagram socket, as systemd provides it (issue 19, item 3)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from gateway.runtime.systemd_notify import SystemdNotifier
from hil.broker import MqttBroker
from hil.netutil import free_port
from tests.integration.gateway_harness import gateway_config, meter_device, running
from tests.integration.systemd_peer import NotifyPeer
from tests.waiting import until

pytestmark = pytest.mark.broker


def test_the_notify_socket_and_watchdog_come_from_the_environment() -> None:
    assert SystemdNotifier.from_environment({}) is None
    assert SystemdNotifier.from_environment({"NOTIFY_SOCKET": "vsock:2:1"}) is None
    abstract = SystemdNotifier.from_environment({"NOTIFY_SOCKET": "@sd/notify"})
    assert abstract is not None and abstract.address == "\0sd/notify"
    assert abstract.watchdog_s is None
    mine = {"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}
    notifier = SystemdNotifier.from_environment(mine, pid=42)
    assert notifier is not None and notifier.watchdog_s == 30.0
    other = SystemdNotifier.from_environment(mine, pid=43)  # the watchdog is another process's
    assert other is not None and other.watchdog_s is None


async def test_the_watchdog_fires_when_the_event_loop_is_stuck(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: object
) -> None:
    port = waveform_meter.port  # type: ignore[attr-defined]  # the fixture's simulator
    config = gateway_config(tmp_path, mosquitto.port, [meter_device("meter", port)])
    # 3 s: pings every 1.5 s; a loaded test machine never stalls the loop that long by itself
    with NotifyPeer(watchdog_s=3.0) as systemd:
        notifier = SystemdNotifier.from_environment(systemd.environment())
        assert notifier is not None
        async with running(config) as gw:
            supervisor = asyncio.create_task(
                notifier.supervise(gw.gateway.started, gw.stop_event, lambda: "running"))
            await until(lambda: systemd.with_field("READY", "1"), "READY=1", timeout=20)
            await until(lambda: len(systemd.with_field("WATCHDOG", "1")) >= 2, "two pings")
            assert not systemd.fired.is_set()
            # the loop is stuck: this call blocks it until systemd's watchdog has fired
            stuck_since = asyncio.get_running_loop().time()
            fired = systemd.fired.wait(timeout=60)
            stuck_for = asyncio.get_running_loop().time() - stuck_since
            assert fired, f"the watchdog never fired though the loop was stuck {stuck_for:.0f} s"
            assert systemd.fired_at is not None
            last_ping = systemd.with_field("WATCHDOG", "1")[-1].at
            assert systemd.fired_at - last_ping > 3.0
            # the loop runs again: so do the pings (a restarted gateway would start afresh)
            await until(lambda: systemd.with_field("WATCHDOG", "1", after=systemd.fired_at or 0),
                        "a ping after the stall")
            supervisor.cancel()
    notifier.close()


async def test_under_systemd_the_gateway_says_ready_pings_stops_and_logs_priorities(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: object
) -> None:
    port = waveform_meter.port  # type: ignore[attr-defined]  # the fixture's simulator
    body = {
        "gateway": {"id": "gw-sd", "site": "plant", "line": "l1", "state_dir": "state"},
        # a second meter nobody answers for: its WARNING must reach the journal as priority 4
        "devices": [meter_device("meter", port), meter_device("gone", free_port())],
        "northbound": {"format": "json", "mqtt": {"port": mosquitto.port}},
        "http": {"port": 0},
    }
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps(body))
    stderr_path = tmp_path / "journal-stream"
    with NotifyPeer(watchdog_s=2.0) as systemd, stderr_path.open("wb") as stderr:
        st = os.fstat(stderr.fileno())
        env = {**os.environ, **systemd.environment(), "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli.main", "run", "-c", str(config),
            stdout=asyncio.subprocess.DEVNULL, stderr=stderr, env=env)
        try:
            ready = await until(lambda: systemd.with_field("READY", "1"), "READY=1", timeout=30)
            assert ready[0].fields["STATUS"].startswith("running: 2 devices, 12 tags; local API")
            await until(lambda: len(systemd.with_field("WATCHDOG", "1")) >= 3, "three pings")
            await until(lambda: "<4>" in stderr_path.read_text(), "a warning in the journal")
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
        stopping = systemd.with_field("STOPPING", "1")
        assert stopping and stopping[0].at > ready[0].at
    assert not systemd.fired.is_set()
    lines = stderr_path.read_text().splitlines()
    assert lines and all(line[:3] in ("<3>", "<4>", "<6>", "<7>") for line in lines), lines
    assert any(line.startswith("<6>INFO gateway") for line in lines)
    assert any(line.startswith("<4>WARNING drivers") or line.startswith("<4>WARNING gateway")
               for line in lines), lines
