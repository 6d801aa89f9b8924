"""The committed reference models, run by the engine on the simulated processes in hil/."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge_models.engine import model_device
from edge_models.lifecycle import ModelService, scan_manifests
from gateway.config.device import DeviceConfig, TagConfig
from gateway.tags import TagCatalog
from gateway.types import SampleBatch
from hil.process.energy_meter import EnergyMeterModel, MeterParams
from hil.process.injection_moulding import InjectionMouldingModel

from .helpers import NS, REFERENCE, Sink

PLC_TAGS = ("MeltTemp", "MouldTemp", "InjectionPressure", "HoldTime", "CycleTime", "PartCount")


def reference_service(tmp_path: Path) -> tuple[ModelService, TagCatalog, Sink]:
    folder = tmp_path / "models"
    shutil.copytree(REFERENCE, folder)
    devices = [
        DeviceConfig(name="imm1", protocol="opcua",
                     tags=[TagConfig(name=t, type="float64") for t in PLC_TAGS]),
        DeviceConfig(name="imm-meter", protocol="modbus_tcp", tags=[
            TagConfig(name="machine_state", type="uint16"),
            TagConfig(name="active_power", type="float32", unit="kW")]),
    ]
    catalog = TagCatalog([*devices, model_device("models", scan_manifests(folder))])
    sink = Sink(catalog)
    return ModelService(folder, catalog, "models", sink, watch_interval=0), catalog, sink


async def test_quality_model_flags_cycles_with_a_cold_melt(tmp_path: Path) -> None:
    svc, catalog, sink = reference_service(tmp_path)
    await svc.reload()
    assert {d["name"] for d in svc.describe()} == {"quality", "energy", "energy_per_part"}
    ids = [catalog.id_of(f"imm1.{t}") for t in PLC_TAGS]
    model = InjectionMouldingModel(seed=5, t0=0.0)
    t = 0.0
    for phase in ("normal", "cold"):
        if phase == "cold":
            model.set_melt_setpoint(205.0)
        start = model.state_at(t).part_count
        while model.state_at(t).part_count < start + 8:
            t += 0.1
            r = model.state_at(t)
            svc.engine.ingest(SampleBatch.of(ids, [
                r.melt_temp_c, r.mould_temp_c, r.injection_pressure_bar, r.hold_time_s,
                r.cycle_time_s, float(r.part_count)], round(t * NS)))
        await svc.engine.tick(now=round(t * NS) + 10 * NS)
    p = np.array([v for _, v, _ in sink.samples("models.quality/defect_probability")])
    assert len(p) == 15  # 16 cycles, the first only starts the count
    assert p[:7].max() < 0.2  # normal production
    assert p[-3:].min() > 0.5  # the melt has cooled towards 205 degC
    alarms = sink.samples("models.quality/defect_alarm")
    assert alarms and alarms[0][1] == 1.0
    svc.close()


async def test_energy_model_scores_a_worn_drive_as_anomalous(tmp_path: Path) -> None:
    svc, catalog, sink = reference_service(tmp_path)
    await svc.reload()
    state, power = catalog.id_of("imm-meter.machine_state"), catalog.id_of("imm-meter.active_power")
    scores = {}
    for fault in (False, True):
        params = MeterParams(initial_state=2, mean_dwell_running_s=1e6)  # keeps running
        if fault:
            params = replace(params, running_power_kw=params.running_power_kw * 1.3)
        meter = EnergyMeterModel(seed=3, params=params, t0=0.0)
        sink.batches.clear()
        for i in range(1, 121):
            r = meter.state_at(float(i))
            ts = (i + 1000 * fault) * NS  # time moves on between the two runs
            svc.engine.ingest(SampleBatch.of([state, power], [float(r.machine_state),
                                                              r.active_power_kw], ts))
            await svc.engine.tick(now=ts)
        scores[fault] = np.array([v for _, v, _ in sink.samples("models.energy/anomaly_score")])
        expected = [v for _, v, _ in sink.samples("models.energy/expected_power")]
        assert abs(np.median(expected) - 25.0) < 2.0  # what running costs, fault or not
    assert len(scores[False]) >= 20
    assert np.median(scores[False]) < 2.0 < 4.0 < np.median(scores[True])
    svc.close()
