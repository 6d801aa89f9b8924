"""Fixtures with real parts: a Mosquitto broker on a free loopback port, simulated devices."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from hil.broker import MqttBroker, find_mosquitto


@pytest.fixture
def mosquitto() -> Iterator[MqttBroker]:
    """A real Mosquitto with its own config file; a test may stop and restart it."""
    if find_mosquitto() is None:
        pytest.fail(
            "Mosquitto is not installed: run scripts/bootstrap.sh as root (apt-get mosquitto)"
        )
    broker = MqttBroker(kind="mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
async def waveform_meter() -> AsyncIterator[object]:
    """The simulated energy meter in deterministic waveform mode, in this process."""
    import time

    from hil.devices.modbus_meter import ModbusMeterSimulator
    from hil.process.energy_meter import WaveformMeter, WaveformParams

    params = WaveformParams(t0=time.time(), period_s=20.0)
    sim = ModbusMeterSimulator(WaveformMeter(params))
    await sim.start()
    sim.waveform_params = params  # type: ignore[attr-defined]
    try:
        yield sim
    finally:
        await sim.stop()
