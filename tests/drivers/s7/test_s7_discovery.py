"""Discovery on S7: ``check`` shows the CPU's identity from the SZL (also with PUT/GET off,
when the tags cannot be read), and ``scan s7`` shows a byte range under every type, as a
real process against the simulator."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from gateway.cli.check_cmd import run_checks
from hil.devices.s7_plc import S7PlcSimulator
from tests.drivers.pasted_tags import paste
from tests.integration.gateway_harness import gateway_config

ROOT = Path(__file__).resolve().parents[3]
TAGS = [{"name": "melt", "address": "DB1.DBD0:REAL"}, {"name": "mode", "address": "MW10:INT"}]


async def test_check_names_the_cpu_and_says_why_its_tags_are_bad(tmp_path: Path) -> None:
    async with S7PlcSimulator(port=0, cpu="s7-1500") as plc:
        device = {"name": "press", "protocol": "s7", "host": "127.0.0.1", "port": plc.port,
                  "tags": TAGS}
        config = gateway_config(tmp_path, 1, [device])  # no broker: only the device matters
        (ok,), _ = await run_checks(config, tmp_path, timeout=3.0)
        assert ok.ok, ok.reason
        assert ok.reason == "connected and read"
        assert ok.identity == "CPU 1516-3 PN/DP, 6ES7 516-3AN02-0AB0, firmware V2.9.4"
        plc.put_get = False
        (refused,), _ = await run_checks(config, tmp_path, timeout=3.0)
        assert not refused.ok
        assert "2 tags not good: melt, mode" in refused.reason
        assert "1 request refused: PUT/GET access is off in the PLC" in refused.reason
        assert refused.identity == "CPU 1516-3 PN/DP, 6ES7 516-3AN02-0AB0, firmware V2.9.4"


async def test_scan_shows_a_db_under_every_type() -> None:
    async with S7PlcSimulator(port=0) as plc:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli.main", "scan", "s7", "--host", "127.0.0.1",
            "--port", str(plc.port), "--area", "DB3", "--start", "0", "--count", "60",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, err.decode()
        text = out.decode()
        assert "CPU 1214C DC/DC/DC, 6ES7 214-1AG40-0XB0" in text
        rows = {line.split("│")[1].strip(): line for line in text.splitlines()
                if line.count("│") > 5 and line.split("│")[1].strip().isdigit()}
        assert "54321" in rows["2"] and "-1234" in rows["4"]       # WORD at 2, INT at 4
        assert "1.5" in rows["14"] and "3.25" in rows["18"]        # REAL at 14, LREAL at 18
        assert "'mould-A17'" in rows["42"]                         # a STRING header at 42
        bad = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli.main", "scan", "s7", "--host", "127.0.0.1",
            "--port", str(plc.port), "--area", "DB9", "--start", "0", "--count", "4",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
        _, err = await asyncio.wait_for(bad.communicate(), timeout=60)
        assert bad.returncode == 3
        assert "DB9 does not exist in the PLC" in err.decode()


async def test_scan_yaml_prints_tags_to_paste_into_the_device() -> None:
    async with S7PlcSimulator(port=0) as plc:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli.main", "scan", "s7", "--host", "127.0.0.1",
            "--port", str(plc.port), "--area", "DB3", "--start", "14", "--count", "8",
            "--yaml", "--type", "REAL",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    printed = out.decode()
    assert "- {name: db3_14, address: 'DB3.DBD14:REAL'}  # read 1.5" in printed.splitlines()
    config = paste({"protocol": "s7", "host": "127.0.0.1", "port": plc.port}, printed)
    tags = config.devices[0].tags
    assert [(t.name, t.address, t.type.value) for t in tags] == [
        ("db3_14", "DB3.DBD14:REAL", "float32"), ("db3_18", "DB3.DBD18:REAL", "float32")]
