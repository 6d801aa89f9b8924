"""Live config changes and edge models: a model waiting for an input tag loads once a change
adds it; a change that would take an input away from a model in service is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config.loader import load_config
from hil.broker import MqttBroker
from hil.devices.modbus_meter import meter_tag_configs
from hil.recorder import TelemetryRecorder
from tests.integration.gateway_harness import METER_TAGS, gateway_body, meter_device, running
from tests.waiting import until

from .helpers import identity_manifest, write_model

pytestmark = pytest.mark.broker


def _manifest() -> dict[str, Any]:
    return identity_manifest(
        inputs=[{"tag": "meter.frequency", "aggregation": "mean", "window": "1s"}],
        cycle=None,
        trigger={"on": "interval", "every": "200ms", "settle": "50ms"},
        outputs=[{"name": "frequency_mean", "onnx": "kwh", "unit": "Hz"}],
    )


async def test_models_inputs_follow_a_live_change(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any
) -> None:
    folder = tmp_path / "models"
    write_model(folder, "kpi", _manifest())
    body = gateway_body(tmp_path, mosquitto.port, [meter_device("meter", waveform_meter.port)])
    body["models"] = {"enabled": True, "dir": str(folder), "watch_interval": 0, "tick": 0.05}
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec:
        async with running(load_config(path), config_path=path) as run:
            gw = run.gateway
            assert gw.models is not None
            models = gw.models
            await until(lambda: [s for s in models.status.values() if s.last_error], timeout=15)
            status = next(iter(models.status.values()))
            assert not status.loaded and "meter.frequency is not in the tag catalog" in \
                (status.last_error or "")

            added = json.loads(json.dumps(body))
            added["devices"][0]["tags"] = [*METER_TAGS, *meter_tag_configs("frequency")]
            result = await gw.live.apply(yaml.safe_dump(added, sort_keys=False), "tester", 1)
            assert result.outcome == "applied", result.describe()
            await until(lambda: status.loaded, "the model loads once its input is there")
            assert await rec.until(lambda s: len([x for x in s.samples
                                           if x.tag == "models.kpi/frequency_mean"]) >= 3,
                            timeout=15)
            value = rec.samples_of("models.kpi/frequency_mean")[-1].value
            assert 49 < value < 51

            # taking the input away from the model in service is refused; nothing changes
            result = await gw.live.apply(yaml.safe_dump(body, sort_keys=False), "tester", 2)
            assert result.outcome == "refused"
            assert "model kpi reads meter.frequency, which the change removes" in \
                (result.reason or "")
            assert gw.live.version == 2 and gw.catalog.get("meter.frequency") is not None
