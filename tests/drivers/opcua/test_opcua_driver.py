"""The OPC UA driver against the real simulated PLC (asyncua server on a free loopback port)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import time

import numpy as np
import pytest
from asyncua import ua
from opcua_helpers import Collector, device, driver

from drivers.base import PollGroup
from gateway.backoff import Backoff
from gateway.errors import DeviceUnreachable, DeviceWriteRefused
from gateway.runtime.device_runner import DeviceRunner
from gateway.types import Quality
from hil.devices.opcua_plc import TYPE_VALUES, OpcUaPlcSimulator
from hil.process.injection_moulding import InjectionMouldingModel
from tests.waiting import until

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

#: Types.<name> -> tag type
TYPE_TAGS = {
    "Boolean": "bool", "SByte": "int16", "Byte": "uint16", "Int16": "int16",
    "UInt16": "uint16", "Int32": "int32", "UInt32": "uint32", "Int64": "int64",
    "UInt64": "uint64", "Float": "float32", "Double": "float64", "String": "string",
    "DateTime": "float64",
}  # fmt: skip


def expected(name: str) -> object:
    value = TYPE_VALUES[name][1]
    if isinstance(value, dt.datetime):
        return (value - EPOCH).total_seconds()
    if isinstance(value, bool):
        return float(value)
    return value


async def test_poll_reads_every_data_type_and_array_mappings() -> None:
    async with OpcUaPlcSimulator(update_interval=0.05) as sim:
        tags = [{"name": n, "node": sim.node_id(f"Types.{n}"), "type": t}
                for n, t in TYPE_TAGS.items()]
        tags += [
            {"name": "arr1", "node": sim.node_id("Types.DoubleArray"), "index": 1,
             "type": "float64"},
            {"name": "arr_json", "node": sim.node_id("Types.DoubleArray"), "type": "string"},
            {"name": "arr_past_end", "node": sim.node_id("Types.DoubleArray"), "index": 9,
             "type": "float64"},
            {"name": "arr_no_index", "node": sim.node_id("Types.DoubleArray"),
             "type": "float64"},
            {"name": "by_path", "browse_path": "2:Machine/2:PartCount", "type": "uint32"},
        ]
        cfg = device(sim.endpoint, tags, mode="poll")
        drv = driver(cfg)
        groups = drv.poll_groups()
        assert [g.name for g in groups] == ["every-0.1s", "every-0.1s-strings"]
        await drv.connect()
        try:
            before = time.time_ns()
            numbers, strings = [await drv.read(g) for g in groups]
        finally:
            await drv.close()
        assert numbers.values.dtype == np.float64 and strings.values.dtype == object
        names = [t["name"] for t in tags]
        got = {names[i]: (v, q, ts) for b in (numbers, strings)
               for i, v, q, ts in zip(b.tag_ids, b.values, b.quality, b.ts_ns, strict=True)}
        for name in TYPE_TAGS:
            value, quality, ts = got[name]
            assert quality == Quality.GOOD, name
            assert value == pytest.approx(expected(name)), name
            assert ts <= before  # the source timestamp the simulator set at start-up
        assert got["arr1"][:2] == (2.5, Quality.GOOD)
        assert json.loads(got["arr_json"][0]) == [1.0, 2.5, -3.0]
        assert got["by_path"][1] == Quality.GOOD
        for name in ("arr_past_end", "arr_no_index"):
            assert got[name][1] == Quality.BAD and math.isnan(got[name][0])
        assert drv.errors["index_out_of_range"] == 1
        assert drv.errors["array_without_index"] == 1


async def test_subscription_batches_bursts_with_source_timestamps_and_status_qualities() -> None:
    model = InjectionMouldingModel(seed=3, time_scale=4.0)
    async with OpcUaPlcSimulator(model, update_interval=0.05) as sim:
        names = ["MeltTemp", "MouldTemp", "InjectionPressure", "Phase", "PartCount", "State"]
        tags = [{"name": n, "node": sim.node_id(f"Machine.{n}"),
                 "type": "string" if n == "State" else "float64"} for n in names]
        tags.append({"name": "zone3", "node": sim.node_id("Machine.ZoneTemps"), "index": 3,
                     "type": "float64"})
        tags.append({"name": "mould_db", "node": sim.node_id("Machine.MouldTemp"),
                     "type": "float64", "opcua_deadband": {"type": "absolute", "value": 50}})
        drv = driver(device(sim.endpoint, tags, publishing_interval="200ms",
                            keepalive_count=5))
        got = Collector()
        await drv.connect()
        task = asyncio.create_task(drv.subscribe(got))
        try:
            await until(lambda: len(got.samples(0)) >= 5)
            # a publish response carries several ticks of several nodes: one numeric batch
            assert max(len(b) for b in got.batches if b.values.dtype == np.float64) >= 6
            assert sum(1 for b in got.batches if b.values.dtype == object) >= 1
            # source timestamps, not receive times: equal for values written in one tick
            melt = got.samples(0)
            assert len({ts for _, ts, _ in melt}) == len(melt)
            mould_ts = {ts for _, ts, _ in got.samples(1)}
            assert {ts for _, ts, _ in melt} & mould_ts
            assert all(q == Quality.GOOD for _, _, q in melt)
            state = got.latest(5)
            assert state is not None and state[0] in {"CLOSING", "INJECTING", "HOLDING",
                                                      "COOLING", "OPENING", "EJECTING"}
            assert got.value(6) == pytest.approx(got.value(0), abs=5)  # nozzle zone = melt
            # the server's deadband: one initial value, the small moves are not sent
            assert len(got.samples(1)) >= 3 and len(got.samples(7)) == 1

            # status codes -> qualities
            sim.set_status("Machine.MeltTemp", ua.StatusCodes.UncertainLastUsableValue)
            await until(lambda: got.quality(0) == Quality.UNCERTAIN)
            assert not math.isnan(got.value(0))
            sim.set_status("Machine.MeltTemp", ua.StatusCodes.BadSensorFailure)
            await until(lambda: got.quality(0) == Quality.BAD)
            assert math.isnan(got.value(0))
            assert drv.errors["bad_sensor_failure"] >= 1
            sim.set_status("Machine.MeltTemp", None)
            await until(lambda: got.quality(0) == Quality.GOOD)
            assert not task.done()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await drv.close()
        assert sim.session_count == 0  # close() closed the session


async def check_unknown_node(sim: OpcUaPlcSimulator, mode: str) -> None:
    late = f"Machine.Late-{mode}"
    tags = [
        {"name": "melt", "node": sim.node_id("Machine.MeltTemp"), "type": "float64"},
        {"name": "late", "node": sim.node_id(late), "type": "float64"},
    ]
    drv = driver(device(sim.endpoint, tags, mode=mode, unknown_node_retry="1s"))
    got = Collector()
    await drv.connect()

    polls = 0

    async def poll(group: PollGroup) -> None:
        nonlocal polls
        while True:
            got(await drv.read(group))
            polls += 1
            await asyncio.sleep(0.1)  # the poll interval of this stand-in for a device runner

    loop = asyncio.get_running_loop()
    started = loop.time()
    if mode == "subscription":
        task = asyncio.create_task(drv.subscribe(got))
    else:
        task = asyncio.create_task(poll(drv.poll_groups()[0]))
    try:
        await until(lambda: got.latest(1) is not None)
        assert got.quality(1) == Quality.BAD and math.isnan(got.value(1))
        await until(lambda: drv.errors["bad_node_id_unknown"] >= 1, "the missing node counted")
        assert got.quality(0) == Quality.GOOD
        await sim.add_variable(late, 7.5)
        await until(lambda: got.quality(1) == Quality.GOOD, "the late node read")
        assert got.value(1) == 7.5
        if mode == "poll":  # not read on every poll while missing: once per retry (1 s)
            tries = drv.errors["bad_node_id_unknown"]
            assert tries <= (loop.time() - started) / 1.0 + 1, (tries, polls)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await drv.close()


async def test_unknown_node_is_bad_and_retried_slowly_until_it_appears() -> None:
    async with OpcUaPlcSimulator(update_interval=0.05) as sim:
        for mode in ("subscription", "poll"):
            await check_unknown_node(sim, mode)


async def test_writes_convert_to_the_node_type_and_check_the_status() -> None:
    async with OpcUaPlcSimulator(update_interval=0.05) as sim:
        tags = [
            {"name": "hold", "node": sim.node_id("Machine.HoldTime"), "type": "float64",
             "writable": True, "range": [0.1, 30]},
            {"name": "i16", "node": sim.node_id("Types.Int16"), "type": "int16",
             "writable": True, "range": [-1000, 1000]},
            {"name": "flag", "node": sim.node_id("Types.Boolean"), "type": "bool",
             "writable": True},
            {"name": "text", "node": sim.node_id("Types.String"), "type": "string",
             "writable": True},
            {"name": "melt", "node": sim.node_id("Machine.MeltTemp"), "type": "float64"},
        ]
        drv = driver(device(sim.endpoint, tags, mode="poll"))
        await drv.connect()
        try:
            await drv.write(0, 4.5)
            assert sim.model.hold_time == 4.5
            await drv.write(1, 321.0)
            assert sim.get_value("Types.Int16") == 321
            await drv.write(2, False)
            assert sim.get_value("Types.Boolean") is False
            await drv.write(3, "mould-B2")
            assert sim.get_value("Types.String") == "mould-B2"
            applied = sim.writes_applied
            for value in (1.5, 70000.0):  # not whole, out of Int16: refused before sending
                with pytest.raises(DeviceWriteRefused, match="Int16"):
                    await drv.write(1, value)
            assert sim.writes_applied == applied and drv.errors["write_value"] == 2
            with pytest.raises(DeviceWriteRefused, match="BadUserAccessDenied"):
                await drv.write(4, 250.0)  # read-only on the PLC
            assert drv.errors["bad_user_access_denied"] == 1
            with pytest.raises(DeviceWriteRefused, match="not a tag"):
                await drv.write(99, 1.0)
        finally:
            await drv.close()


async def test_server_restart_marks_the_gap_stale_resumes_and_keeps_one_session() -> None:
    async with OpcUaPlcSimulator(update_interval=0.05) as sim:
        tags = [{"name": "melt", "node": sim.node_id("Machine.MeltTemp"), "type": "float64"},
                {"name": "state", "node": sim.node_id("Machine.State"), "type": "string"}]
        cfg = device(sim.endpoint, tags, timeout="1s")
        got = Collector()
        runner = DeviceRunner("plc", lambda: driver(cfg), got,
                              reconnect=Backoff(initial=0.2, maximum=0.5))
        task = asyncio.create_task(runner.run())
        try:
            await until(lambda: len(got.samples(0)) >= 3)
            assert sim.session_count == 1
            await sim.stop()
            await until(lambda: got.quality(0) == Quality.STALE)
            assert got.quality(1) == Quality.STALE
            refused = runner.stats.connect_failures
            await until(lambda: runner.stats.connect_failures >= refused + 2,
                        "two refused reconnects")  # still stale, never bad (below)
            await sim.start()
            await until(lambda: got.quality(0) == Quality.GOOD)
            gap = [q for _, _, q in got.samples(0)]
            first_stale = gap.index(Quality.STALE)
            assert Quality.BAD not in gap[first_stale:]
            assert runner.stats.connects == 2 and runner.stats.crashes == 0
            assert runner.stats.connection_losses == 1
            # the old session died with the server, one new
            await until(lambda: sim.session_count == 1, seen=lambda: sim.session_count)
            count = len(got.samples(0))
            await until(lambda: len(got.samples(0)) > count + 3)

            # the TCP connection breaks while the server stays up: same story
            assert sim.drop_connections() == 1
            await until(lambda: got.quality(0) == Quality.STALE)
            await until(lambda: got.quality(0) == Quality.GOOD)
            assert runner.stats.connection_losses == 2 and runner.stats.connects == 3
            await until(lambda: sim.session_count == 1)  # resumed
            assert sim.subscription_count == 1  # the lost one was deleted
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert sim.session_count == 0


async def test_unreachable_endpoint_names_the_reason() -> None:
    from hil.netutil import free_port

    drv = driver(device(f"opc.tcp://127.0.0.1:{free_port()}", [
        {"name": "x", "node": "ns=2;s=X", "type": "float64"}]))
    with pytest.raises(DeviceUnreachable, match="refused"):
        await drv.connect()
    await drv.close()
