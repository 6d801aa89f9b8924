"""HIL: the simulated OPC UA moulding PLC -> gateway -> the reference quality model -> MQTT.

One defect probability per part, at the part counter's increment, on real OPC UA
subscriptions (values reported by exception: hold time and cycle time change rarely).
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest

from gateway.config.models import ModelsConfig
from hil.broker import MqttBroker
from hil.devices.opcua_plc import OpcUaPlcSimulator
from hil.process.injection_moulding import InjectionMouldingModel
from hil.recorder import TelemetryRecorder
from tests.integration.gateway_harness import gateway_config, running

from .helpers import REFERENCE

pytestmark = pytest.mark.broker

NODES = ("MeltTemp", "MouldTemp", "InjectionPressure", "HoldTime", "CycleTime", "PartCount")


async def test_quality_model_scores_every_part_from_the_plc(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    for suffix in (".yaml", ".onnx"):
        shutil.copy(REFERENCE / f"quality{suffix}", folder / f"quality{suffix}")
    model = InjectionMouldingModel(seed=11, time_scale=5.0)  # a part every ~3.2 s
    async with OpcUaPlcSimulator(model, update_interval=0.05) as sim:
        device = {
            "name": "imm1", "protocol": "opcua", "endpoint": sim.endpoint,
            "publishing_interval": "50ms", "timeout": "1s",
            "tags": [{"name": n, "node": sim.node_id(f"Machine.{n}"),
                      "type": "uint32" if n == "PartCount" else "float64",
                      "sampling_interval": "25ms"} for n in NODES],
        }
        config = gateway_config(tmp_path, mosquitto.port, [device])
        config = config.model_copy(update={"models": ModelsConfig(
            enabled=True, dir=folder, watch_interval=0, tick=0.05)})
        with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec:
            async with running(config) as gw:
                scored = await rec.until(lambda s: sum(
                    x.tag == "models.quality/defect_probability" for x in s.samples) >= 3,
                    timeout=30)
                engine = gw.gateway.models.engine  # type: ignore[union-attr]
                assert scored, (engine.counters, [(x.value, x.ts_ms) for x in
                                                  rec.snapshot().samples
                                                  if x.tag == "imm1.PartCount"])
                await gw.stop()
    snap = rec.snapshot()
    outputs = [s for s in snap.samples if s.tag == "models.quality/defect_probability"]
    parts = [s for s in snap.samples if s.tag == "imm1.PartCount"]
    increments = {b.ts_ms for a, b in itertools.pairwise(parts) if b.value > a.value}
    assert all(s.quality == "good" and 0.0 <= s.value <= 1.0 for s in outputs)
    assert {s.ts_ms for s in outputs} <= increments  # at the cycle ends
    assert len({s.ts_ms for s in outputs}) == len(outputs)  # one per part
    assert max(s.value for s in outputs) < 0.5, [s.value for s in outputs]  # no defects
    counters = gw.gateway.models.engine.counters[("quality", "active")]  # type: ignore[union-attr]
    assert counters.errors == 0 and counters.skipped == 0
