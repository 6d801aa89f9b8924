"""``chenxing-gateway browse`` as a real process against the simulated PLC."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from hil.devices.opcua_plc import OpcUaPlcSimulator
from hil.netutil import free_port
from tests.drivers.pasted_tags import paste


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


async def test_browse_hides_the_servers_own_nodes_unless_asked() -> None:
    async with OpcUaPlcSimulator() as sim:
        code, out, err = await browse(sim.endpoint, "--depth", "2")
        _, everything, _ = await browse(sim.endpoint, "--depth", "2", "--all")
    assert code == 0
    assert "0:Server" not in out and "ns=2;s=Machine  2:Machine  Object" in out
    assert "left out; --all shows them" in err
    assert "i=2253  0:Server  Object" in everything
    assert len(everything.splitlines()) > 2 * len(out.splitlines())


async def test_browse_yaml_prints_tags_to_paste_into_the_device() -> None:
    async with OpcUaPlcSimulator() as sim:
        code, out, _ = await browse(sim.endpoint, "--depth", "3", "--yaml")
    assert code == 0
    assert "- {name: MeltTemp, node: ns=2;s=Machine.MeltTemp, type: float64}  # Double, r-" in (
        out.splitlines())
    assert "EURange" not in out  # a property of a variable, not a value of the machine
    config = paste({"protocol": "opcua", "endpoint": sim.endpoint}, out)
    tags = {t.name: t for t in config.devices[0].tags}
    assert tags["PartCount"].type.value == "uint32" and tags["Running"].type.value == "bool"
    assert tags["ZoneTemps"].type.value == "string"  # an array: JSON text unless indexed
    assert tags["Int64"].node == "ns=2;s=Types.Int64"
