"""SIGHUP applies the config file of a running ``chenxing-gateway run`` like any live change:
changed devices restart, unchanged ones keep polling on their first connection, a new tag is
applied live, bad or unsafe edits are refused; ``config history`` lists the versions and
``config rollback`` brings one back through the running gateway."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import re
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.config.device import TagConfig
from gateway.config.loader import load_config
from gateway.config.models import GatewayConfig
from gateway.runtime.device_runner import DeviceRunner
from gateway.runtime.gateway import Gateway
from hil.broker import MqttBroker
from tests.integration.gateway_harness import meter_device
from tests.waiting import until

pytestmark = pytest.mark.broker


def _body(broker_port: int, meter_port: int) -> dict[str, Any]:
    return {
        "gateway": {"id": "gw-reload", "site": "plant", "line": "l1", "state_dir": "state"},
        "devices": [meter_device("steady", meter_port), meter_device("moved", meter_port)],
        "northbound": {"format": "json", "publish_interval": "50ms",
                       "mqtt": {"port": broker_port}},
        "http": {"port": 0},
    }


class _Process:
    """The gateway subprocess, its log lines, and its /metrics."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.changed = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.lines.append(raw.decode(errors="replace"))
            self.changed.set()

    async def wait_line(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines:
                    if m := re.search(pattern, line):
                        return m
                self.changed.clear()
                await self.changed.wait()

    async def metrics(self, session: aiohttp.ClientSession, url: str) -> dict[str, float]:
        async with session.get(url + "/metrics") as response:
            text = await response.text()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out


async def _metrics_when(fetch, check, timeout: float = 20) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """The metrics ``fetch()`` gives once ``check`` holds for them."""

    async def matching() -> dict[str, float] | None:
        m = await fetch()
        return m if check(m) else None

    return await until(matching, timeout=timeout, interval=0.1)


async def _cli(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, (args, out, err)
    return out.decode()


def _c(name: str, **labels: str) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{inner}}}"


async def test_sighup_restarts_only_changed_devices_and_refuses_bad_edits(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter
) -> None:
    body = _body(mosquitto.port, waveform_meter.port)
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps(body))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli.main", "run", "-c", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    gw = _Process(proc)
    steady = _c("chenxing_device_connects_total", device="steady")
    moved = _c("chenxing_device_connects_total", device="moved")
    steady_polls = _c("chenxing_device_polls_total", device="steady")

    def reloads(outcome: str) -> str:
        return _c("chenxing_config_reloads_total", outcome=outcome)

    try:
        port = int((await gw.wait_line(r"local API on http://127\.0\.0\.1:(\d+)"))[1])
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            def fetch():  # type: ignore[no-untyped-def]
                return gw.metrics(session, url)

            await _metrics_when(fetch, lambda m: m.get(steady) == 1 and m.get(moved) == 1
                         and m.get(steady_polls, 0) >= 3)

            # 1. a changed device restarts; the unchanged one keeps its first connection
            body["devices"][1]["poll_interval"] = "200ms"
            config.write_text(json.dumps(body))
            proc.send_signal(signal.SIGHUP)
            m = await _metrics_when(fetch, lambda m: m.get(reloads("applied")) == 1
                             and m.get(moved) == 2)
            polls_then = m[steady_polls]
            await gw.wait_line(r"config change: device moved changed; restarting it")
            m = await _metrics_when(fetch, lambda m: m[steady_polls] >= polls_then + 3)
            assert m[steady] == 1 and m[moved] == 2
            async with session.get(url + "/healthz") as response:
                health = await response.json()
            assert health["devices"]["moved"]["state"] in ("up", "starting")

            # 2. an invalid file is refused with its reason; the gateway keeps running
            config.write_text(json.dumps(body).replace('"float32"', '"float99"', 1))
            proc.send_signal(signal.SIGHUP)
            await _metrics_when(fetch, lambda m: m.get(reloads("invalid")) == 1)
            await gw.wait_line(r"config change from file \(file\): refused \(invalid\), "
                               r"version 2 keeps running: 1 configuration error")
            await gw.wait_line(r"gateway\.yaml:1: devices\[0\]\.tags\[0\]\.type: unknown type")

            # 3. a new tag is applied live: only its device restarts
            changed = json.loads(json.dumps(body))
            changed["devices"][1]["tags"].append(
                {"name": "extra", "table": "input", "address": 0, "type": "uint16"})
            config.write_text(json.dumps(changed))
            proc.send_signal(signal.SIGHUP)
            m = await _metrics_when(fetch, lambda m: m.get(reloads("applied")) == 2
                                    and m.get(moved) == 3)
            assert m[steady] == 1
            await gw.wait_line(r"applied as version 3 \[changed: moved\]")

            # 4. northbound changes need a restart
            broken = json.loads(json.dumps(changed))
            broken["northbound"]["publish_interval"] = "100ms"
            config.write_text(json.dumps(broken))
            proc.send_signal(signal.SIGHUP)
            m = await _metrics_when(fetch, lambda m: m.get(reloads("refused")) == 1)
            await gw.wait_line(r"northbound changed: restart required")
            assert m[steady] == 1 and m[moved] == 3 and proc.returncode is None

            # 5. the versions: 1 at start, 2 and 3 by SIGHUP; rollback to 2 through the gateway
            cli = [sys.executable, "-m", "gateway.cli.main", "config"]
            out = await _cli(*cli, "history", "-c", str(config))
            assert [line.split()[0] for line in out.splitlines()] == ["v1", "v2", "v3"]
            assert "file [file]" in out and "changed: moved" in out
            out = await _cli(*cli, "rollback", "-c", str(config), "2", "--author", "ops")
            assert json.loads(out)["outcome"] == "applied" and json.loads(out)["version"] == 4
            m = await _metrics_when(fetch, lambda m: m.get(moved) == 4)
            assert m[steady] == 1
            out = await _cli(*cli, "history", "-c", str(config), "-n", "1", "--json")
            last = json.loads(out)
            assert (last["version"], last["author"], last["source"]) == (4, "ops", "cli")
            assert await _cli(*cli, "show", "-c", str(config), "4") == \
                await _cli(*cli, "show", "-c", str(config), "2") == config.read_text()
            diff = await _cli(*cli, "diff", "-c", str(config), "3", "4")
            assert diff.startswith("--- v3\n+++ v4\n") and "extra" in diff

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0, "".join(gw.lines)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(gw.reader, 5)


def _alive(kind: type) -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, kind))


async def test_ten_reloads_leave_nothing_behind(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter
) -> None:
    """The SIGHUP path, ten times over, each reload restarting a device: afterwards one
    config, its tags once, one runner per device and no YAML parse objects are alive, as
    before the first."""
    body = _body(mosquitto.port, waveform_meter.port)
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps(body))
    gateway = Gateway(load_config(config), tmp_path, config)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))

    async def reload_once(i: int) -> None:
        body["devices"][1]["poll_interval"] = f"{100 + 10 * (i % 2)}ms"
        config.write_text(json.dumps(body))
        applied = gateway.reloads.outcomes["applied"]
        await gateway.reload()  # what SIGHUP runs
        assert gateway.reloads.outcomes["applied"] == applied + 1, gateway.reloads.last_error
        await until(lambda: gateway.device_states() == {"steady": "up", "moved": "up"},
                    timeout=20, what="both devices up again")

    def census() -> dict[str, int]:
        gc.collect()
        return {"configs": _alive(GatewayConfig), "tags": _alive(TagConfig),
                "runners": _alive(DeviceRunner), "yaml": _alive(yaml.Event) + _alive(yaml.Node)}

    try:
        await until(lambda: gateway.device_states() == {"steady": "up", "moved": "up"},
                    timeout=20, what="both devices up")
        before = census()
        for i in range(1, 11):  # 110 ms, 100 ms, ...: each reload restarts "moved"
            await reload_once(i)
        after = census()
        # the reloaded config holds the running one's tags: the catalog's, not a copy
        # (no more than before: what an earlier test of this process left may go meanwhile)
        assert all(after[kind] <= before[kind] for kind in before), (before, after)
        # a SIGHUP with the file as last read is answered without reading it
        unchanged = gateway.reloads.outcomes["unchanged"]
        await gateway.reload()
        assert gateway.reloads.outcomes["unchanged"] == unchanged + 1
        assert before["yaml"] == 0  # (other tests of this process may hold runners of theirs)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
