"""``chenxing-hil sim mcu-node`` as a real process: a gateway-side driver reads it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from firmware_bridge.config import McuNodeDeviceConfig
from firmware_bridge.driver import McuNodeDriver
from gateway.serial_ports import SerialPorts
from gateway.types import SampleBatch
from tests.waiting import until

ROOT = Path(__file__).resolve().parents[2]


async def test_cli_node_streams_to_a_driver() -> None:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hil.cli", "sim", "mcu-node", "--node-id", "9",
        "--sample-interval", "10", "--samples-per-frame", "2",
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line.startswith("mcu-node 9 on /dev/pts/"), line
        port = line.split()[3]
        config = McuNodeDeviceConfig.model_validate({
            "name": "n", "protocol": "mcu_node", "port": port, "node_id": 9,
            "tags": [{"name": "t", "sensor": "temperature", "unit": "degC"}],
        })
        driver = McuNodeDriver(config, [0])
        got: list[SampleBatch] = []
        await driver.connect()
        task = asyncio.create_task(driver.subscribe(got.append))
        try:
            await until(lambda: sum(len(b) for b in got) >= 5, "5 samples through the CLI's line")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await driver.close()
        assert driver.node is not None and driver.node.hardware == "cx-sim-node"
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_cli_bus_serves_several_nodes_on_one_pty() -> None:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hil.cli", "sim", "mcu-bus", "--nodes", "4,8",
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": path},
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line.startswith("mcu-bus nodes 4,8 on /dev/pts/"), line
        port = line.split()[-1]
        ports = SerialPorts()
        drivers = [McuNodeDriver(McuNodeDeviceConfig.model_validate({
            "name": f"n{n}", "protocol": "mcu_node", "port": port, "node_id": n,
            "tags": [{"name": "t", "sensor": "temperature"}]}), [n], ports) for n in (4, 8)]
        for driver in drivers:
            await driver.connect()
        assert all(d.node is not None for d in drivers)
        assert drivers[0].line_node_ids == [4, 8]
        for driver in drivers:
            await driver.close()
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
