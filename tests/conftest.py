"""Fixtures with real parts: a Mosquitto broker on a free loopback port, simulated devices."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator

import pytest

from hil.broker import MqttBroker, find_mosquitto
from hil.netutil import PORT_RANGE_ENV
from hil.victoria_metrics import VictoriaMetrics, find_victoria_metrics
from tests.integration.installed_wheels import OfflineWheelhouse, offline_wheelhouse_in


def pytest_configure(config: pytest.Config) -> None:
    """With pytest-xdist, each worker (gw0, gw1, …) takes the ports of simulators and
    brokers from a range of its own below the kernel's ephemeral ports (32768 up), and so do
    the processes it starts: a port one worker picked is never handed to another."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        lo = 20000 + 1000 * (int(worker[2:]) % 12)
        os.environ[PORT_RANGE_ENV] = f"{lo}-{lo + 999}"


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


@pytest.fixture(scope="session")
def offline_wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OfflineWheelhouse]:
    """The wheelhouse of this machine's wheels (tests/integration/installed_wheels.py), built
    once for the offline-install and Debian-package tests: each only reads it and its source
    copy (a test that edits the source copies it first)."""
    work = tmp_path_factory.mktemp("wheelhouse")
    yield offline_wheelhouse_in(work)
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def victoria_metrics() -> Iterator[VictoriaMetrics]:
    """Debian's victoria-metrics as an InfluxDB v2 write API on a free loopback port, with a
    temporary data folder; a test may stop and start it (the data stays)."""
    if find_victoria_metrics() is None:
        pytest.fail("victoria-metrics is not installed: run scripts/bootstrap.sh as root "
                    "(apt-get install victoria-metrics)")  # fmt: skip
    with VictoriaMetrics() as vm:
        yield vm


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
