"""Discovery: ``check`` reports the meter's address (read with the broadcast address for a
lone meter), ``scan dlt645`` finds a meter and lists the identifiers it answers."""

from __future__ import annotations

import asyncio

from click.testing import CliRunner

from drivers.dlt645.scan_cmd import scan
from gateway.device_check import check_device
from gateway.serial_ports import SerialPorts
from gateway.tags import TagCatalog
from hil.devices.dlt645_meter import Dlt645Line
from tests.drivers.dlt645.dlt645_sim import device, fixed_meter
from tests.drivers.pasted_tags import paste


async def test_check_reports_the_address_of_a_lone_meter() -> None:
    async with Dlt645Line([fixed_meter("000012345678")], transport="tcp") as line:
        config = device(line, "auto", [{"name": "volts", "di": "voltage.a"}], name="meter")
        result = await check_device(config, TagCatalog([config]), 2.0, SerialPorts())
    assert result.ok, result.reason
    assert result.reason == "connected and read"
    assert result.identity == "meter address 000012345678 (DL/T 645-2007)"
    assert [(r.path, r.value, r.unit) for r in result.readings] == [("meter.volts", 230.4, "V")]


async def test_scan_finds_the_meter_and_what_it_answers() -> None:
    async with Dlt645Line([fixed_meter("000012345678")], transport="tcp") as line:
        args = ["--host", "127.0.0.1", "--tcp-port", str(line.port), "--only", "voltage",
                "--timeout", "0.5"]
        result = await asyncio.to_thread(CliRunner().invoke, scan, args)
        odd = await asyncio.to_thread(CliRunner().invoke, scan,
                                      [*args[:4], "--only", "energy"])
    assert result.exit_code == 0, result.output
    assert "meter address 000012345678 (DL/T 645-2007)" in result.output
    rows = [[c.strip() for c in line.split("│")[1:-1]]
            for line in result.output.splitlines() if "voltage." in line]
    assert rows == [["voltage.a", "02010100", "230.4", "V"],
                                      ["voltage.b", "02010200", "230.9", "V"],
                                      ["voltage.c", "02010300", "229.9", "V"]]
    assert "3 of 3 identifiers answered" in result.output
    assert odd.exit_code == 0 and "export" in odd.output  # read as 0: this meter imports


async def test_scan_without_a_meter_says_why() -> None:
    async with Dlt645Line([fixed_meter("000012345678")], transport="tcp") as line:
        port = line.port
    result = await asyncio.to_thread(
        CliRunner().invoke, scan, ["--host", "127.0.0.1", "--tcp-port", str(port)])
    assert result.exit_code == 5
    assert "scan failed:" in result.output and "connection refused" in result.output


async def test_scan_yaml_prints_the_identifiers_that_answered_as_tags() -> None:
    async with Dlt645Line([fixed_meter("000012345678")], transport="tcp") as line:
        args = ["--host", "127.0.0.1", "--tcp-port", str(line.port), "--only", "voltage",
                "--timeout", "0.5", "--yaml"]
        result = await asyncio.to_thread(CliRunner().invoke, scan, args)
        port = line.port
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "meter_address '000012345678'" in lines[0]
    assert "- {name: voltage_a, di: voltage.a}  # read 230.4 V" in lines
    config = paste({"protocol": "dlt645_tcp", "host": "127.0.0.1", "port": port,
                    "meter_address": "000012345678"}, result.output)
    assert [t.name for t in config.devices[0].tags] == ["voltage_a", "voltage_b", "voltage_c"]
