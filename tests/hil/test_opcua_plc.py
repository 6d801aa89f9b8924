"""The injection-moulding process model and its OPC UA PLC simulator (real asyncua server)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from asyncua import Client, ua

from hil.devices.opcua_plc import OpcUaPlcSimulator
from hil.process.injection_moulding import CyclePhase, InjectionMouldingModel
from tests.waiting import until

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0


def run(model: InjectionMouldingModel, seconds: float, step: float = 0.05) -> list:
    return [model.state_at(T0 + i * step) for i in range(1, int(seconds / step) + 1)]


def test_cycle_runs_through_the_phases_in_order_and_counts_parts() -> None:
    readings = run(InjectionMouldingModel(seed=1, t0=T0), 40.0)
    phases = [r.phase for r in readings]
    order = [p for i, p in enumerate(phases) if i == 0 or p != phases[i - 1]]
    assert order[:7] == [*CyclePhase, CyclePhase.CLOSE]
    last = readings[-1]
    assert last.part_count == 2
    assert 14.0 < last.cycle_time_s < 18.0  # 1.5 + 1.2 + 3 + 8 + 1.5 + 0.8 = 16 s, jittered
    peak = max(r.injection_pressure_bar for r in readings)
    assert 1100 < peak < 1300
    assert all(r.injection_pressure_bar == 0.0 for r in readings if r.phase is CyclePhase.OPEN)
    assert {r.state for r in readings} == {p.state_text for p in CyclePhase}
    assert 220 < last.melt_temp_c < 235 and 40 < last.mould_temp_c < 80
    assert last.zone_temps_c[-1] == last.melt_temp_c


def test_seeded_time_compressed_and_independent_of_read_rate() -> None:
    fast = InjectionMouldingModel(seed=5, t0=T0, time_scale=10.0)
    slow = InjectionMouldingModel(seed=5, t0=T0, time_scale=10.0)
    run(fast, 10.0, step=0.01)
    a, b = fast.state_at(T0 + 10.0), slow.state_at(T0 + 10.0)
    assert a == b and a.model_time == pytest.approx(100.0, abs=0.1)
    other = InjectionMouldingModel(seed=6, t0=T0, time_scale=10.0).state_at(T0 + 10.0)
    assert other.melt_temp_c != a.melt_temp_c
    assert fast.state_at(T0 + 5.0) == a  # time only moves forward


def test_setpoints_steer_the_model_and_are_range_checked() -> None:
    model = InjectionMouldingModel(seed=2, t0=T0, time_scale=1.0)
    model.set_melt_setpoint(260.0)
    model.set_hold_time(6.0)
    later = model.state_at(T0 + 300.0)
    assert later.melt_temp_c == pytest.approx(260.0, abs=3.0)
    assert 18.0 < later.cycle_time_s < 22.0  # 3 s longer hold
    with pytest.raises(ValueError):
        model.set_melt_setpoint(900.0)
    with pytest.raises(ValueError):
        model.set_hold_time(0.0)


async def test_simulator_serves_writes_restarts_on_its_port_and_scales() -> None:
    model = InjectionMouldingModel(seed=4, time_scale=5.0)
    async with OpcUaPlcSimulator(model, update_interval=0.05, scale=50, scale_rate=20) as sim:
        port = sim.port
        async with Client(sim.endpoint) as client:
            melt = client.get_node(sim.node_id("Machine.MeltTemp"))
            first = await melt.read_data_value()

            async def newer() -> bool:  # the simulator keeps updating its values
                second = await melt.read_data_value()
                return bool(second.SourceTimestamp > first.SourceTimestamp)

            await until(newer, "a MeltTemp newer than the first read")
            await client.get_node(sim.node_id("Machine.MeltTempSetpoint")).write_value(245.0)
            assert model.melt_setpoint == 245.0
            scale = client.get_node(sim.node_id("Scale.V00049"))
            assert isinstance(await scale.read_value(), float)
            parts = client.get_node(sim.node_id("Machine.PartCount"))
            dtype = await parts.read_data_type_as_variant_type()
            assert dtype is ua.VariantType.UInt32
        await sim.restart(downtime_s=0.1)
        assert sim.port == port
        async with Client(sim.endpoint) as client:
            setpoint = client.get_node(sim.node_id("Machine.MeltTempSetpoint"))
            assert await setpoint.read_value() == 245.0  # kept across the PLC restart


def test_cli_sim_opcua_plc_prints_its_endpoint_and_serves() -> None:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hil.cli", "sim", "opcua-plc", "--port", "0", "--seed", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()))  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout=60)
    try:
        assert lines, "no endpoint line"
        match = re.match(r"opcua-plc listening on (opc\.tcp://127\.0\.0\.1:\d+) \(seed 3, None\)",
                         lines[0])
        assert match, lines[0]

        async def read_state() -> str:
            async with Client(match.group(1)) as client:
                return await client.get_node("ns=2;s=Machine.State").read_value()

        assert asyncio.run(read_state()).isupper()
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0
