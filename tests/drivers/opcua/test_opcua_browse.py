"""``chenxing-gateway browse`` as a real process against the simulated PLC."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from hil.devices.opcua_plc import OpcUaPlcSimulator
from hil.netutil import free_port


async def browse(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli.main", "browse", *args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_browse_lists_node_ids_names_types_and_access() -> None:
    async with OpcUaPlcSimulator() as sim:
        code, out, _ = await browse(sim.endpoint, "--depth", "2", "--start", "ns=2;s=Machine")
    assert code == 0
    lines = {line.split()[0]: line.split() for line in out.splitlines()}
    assert lines["ns=2;s=Machine.MeltTemp"][1:] == ["2:MeltTemp", "Variable", "Double", "r-"]
    assert lines["ns=2;s=Machine.HoldTime"][-2:] == ["Double", "rw"]
    assert lines["ns=2;s=Machine.State"][-2] == "String"


async def test_browse_of_a_dead_endpoint_fails_with_exit_code_3() -> None:
    code, _, err = await browse(f"opc.tcp://127.0.0.1:{free_port()}", "--timeout", "1")
    assert code == 3 and "browse failed" in err
