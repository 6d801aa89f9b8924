"""Percent deadband (DataChangeFilter, DeadbandType Percent) against the simulated PLC.

The server applies it against the node's EURange (Part 8): with EURange 0..200 and a
5 % deadband, only changes above 10 units are notified. A node without EURange refuses
the filter (BadFilterNotAllowed): its tag is BAD and counted, the others run on.
"""

from __future__ import annotations

import asyncio

from opcua_helpers import Collector, device, driver

from gateway.types import Quality
from hil.devices.opcua_plc import EU_RANGES, OpcUaPlcSimulator
from tests.waiting import until


async def test_percent_deadband_suppresses_small_changes_and_passes_large_ones() -> None:
    async with OpcUaPlcSimulator(update_interval=1.0) as sim:
        await sim.add_variable("Machine.Level", 50.0, eu_range=(0.0, 200.0))
        await sim.add_variable("Machine.NoRange", 1.0)
        node = sim.node_id("Machine.Level")
        tags = [
            {"name": "level_5pct", "node": node, "type": "float64",
             "opcua_deadband": {"type": "percent", "value": 5}},
            {"name": "level_all", "node": node, "type": "float64"},
            {"name": "no_range", "node": sim.node_id("Machine.NoRange"), "type": "float64",
             "opcua_deadband": {"type": "percent", "value": 5}},
        ]
        drv = driver(device(sim.endpoint, tags, publishing_interval="50ms"))
        got = Collector()
        await drv.connect()
        task = asyncio.create_task(drv.subscribe(got))
        try:
            await until(lambda: got.value(0) == 50.0 and got.value(1) == 50.0)
            for value in (52.0, 55.0, 70.0, 71.0, 62.0, 49.0, 120.0):
                await sim.set_value("Machine.Level", value)
                await until(lambda: got.value(1) == value, f"level_all at {value}")  # noqa: B023
            # 120 passes both: a late notification of the filtered item would come before it
            await until(lambda: got.value(0) == 120.0, "level_5pct at 120")
            # each change is compared with the previous one: > 10 units (5 % of 200) passes
            assert [v for v, _, _ in got.samples(0)] == [50.0, 70.0, 49.0, 120.0]
            assert [v for v, _, _ in got.samples(1)] == [50.0, 52.0, 55.0, 70.0, 71.0, 62.0, 49.0,
                                                         120.0]
            assert all(q == Quality.GOOD for _, _, q in got.samples(0))
            # no EURange: the server refuses the percent filter; the tag is BAD and counted
            assert got.quality(2) == Quality.BAD
            assert drv.errors["bad_filter_not_allowed"] == 1
            assert not task.done()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await drv.close()


async def test_the_plc_publishes_eu_ranges() -> None:
    from asyncua import Client, ua

    async with OpcUaPlcSimulator() as sim, Client(sim.endpoint) as client:
        for name, (low, high) in EU_RANGES.items():
            var = client.get_node(sim.node_id(name))
            prop = await var.get_child(ua.QualifiedName("EURange", 0))
            value = await prop.read_value()
            assert (value.Low, value.High) == (low, high)
