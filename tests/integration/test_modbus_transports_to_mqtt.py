"""The Modbus transports end to end: meters behind a 4G DTU (dialling in, heartbeats inside
answers), a serial device server (RTU over TCP), on UDP and on ASCII -> the gateway -> a
real Mosquitto -> both contracts; values exact, a write from the brain reaching the meter
behind the DTU, the DTU's redial survived."""

from __future__ import annotations

import struct
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from gateway.northbound.sparkplug import sparkplug_b_pb2 as pb
from hil.broker import MqttBroker
from hil.devices.modbus_dtu import DtuSimulator
from hil.devices.modbus_meter import ModbusMeterSimulator, Transport, meter_tag_configs
from hil.netutil import free_port
from hil.process.energy_meter import WaveformMeter, WaveformParams, waveform_reading
from hil.recorder import TelemetryRecorder
from tests.integration.command_client import CommandClient
from tests.integration.gateway_harness import gateway_config, running
from tests.integration.sparkplug_host import SparkplugHost

pytestmark = pytest.mark.broker

T0 = 1_700_000_000.0
AT = T0 + 21.0  # every meter's clock stands still: values are exact
TAGS = meter_tag_configs("voltage", "energy_import", "machine_state")
CT = {**meter_tag_configs("ct_ratio")[0], "writable": True, "range": [1, 5000]}


def _volts() -> float:
    value = waveform_reading(AT, WaveformParams(t0=T0)).voltage_v
    return float(struct.unpack(">f", struct.pack(">f", value))[0])


EXPECTED = {"voltage": _volts(),
            "energy_import": int(waveform_reading(AT, WaveformParams(t0=T0)).energy_import_kwh
                                 * 100) * 0.01}


async def _meters(stack: AsyncExitStack) -> tuple[list[dict[str, Any]], DtuSimulator]:
    """The four meters and their device blocks; the DTU's meter has a writable ct_ratio."""
    devices: list[dict[str, Any]] = []
    sims: dict[Transport, ModbusMeterSimulator] = {}
    for transport in ("rtu_over_tcp", "udp", "ascii"):
        sims[transport] = await stack.enter_async_context(ModbusMeterSimulator(
            WaveformMeter(WaveformParams(t0=T0)), clock=lambda: AT, transport=transport))
    common = {"poll_interval": "100ms", "timeout": "300ms", "tags": TAGS}
    devices.append({"name": "server", "protocol": "modbus_rtu_over_tcp", "host": "127.0.0.1",
                    "port": sims["rtu_over_tcp"].port, **common})
    devices.append({"name": "udp", "protocol": "modbus_udp", "host": "127.0.0.1",
                    "port": sims["udp"].port, **common})
    devices.append({"name": "ascii", "protocol": "modbus_ascii",
                    "port": sims["ascii"].serial_path, "baudrate": 19200, "bytesize": 8,
                    "parity": "N", **common})
    listen = free_port()
    behind = await stack.enter_async_context(ModbusMeterSimulator(
        WaveformMeter(WaveformParams(t0=T0)), clock=lambda: AT, transport="rtu_over_tcp"))
    dtu = await stack.enter_async_context(DtuSimulator(
        "127.0.0.1", listen, meter=behind, registration=b"\x86\x01\x23\x45\x67\x89",
        heartbeat=b"HEART", heartbeat_interval=0.05))
    devices.append({"name": "dtu", "protocol": "modbus_dtu", "listen_host": "127.0.0.1",
                    "listen_port": listen, "registration_packet": {"hex": "86 01 23 45 67 89"},
                    "heartbeat_packet": {"ascii": "HEART"}, **common, "tags": [*TAGS, CT]})
    return devices, dtu


async def test_json_contract_reads_every_transport_exactly_and_writes_through_the_dtu(
        tmp_path: Path, mosquitto: MqttBroker) -> None:
    async with AsyncExitStack() as stack:
        devices, dtu = await _meters(stack)
        config = gateway_config(tmp_path, mosquitto.port, devices, commands={"enabled": True})
        names = [d["name"] for d in devices]
        wanted = {f"{n}.{t}" for n in names for t in EXPECTED}
        with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec, \
                CommandClient(mosquitto.host, mosquitto.port) as brain:  # fmt: skip
            async with running(config) as gw:
                assert await rec.until(lambda s: wanted <= s.latest.keys(), timeout=20)
                dtu.heartbeat_inside_answers = 20
                brain.send("ct", [{"tag": "dtu.ct_ratio", "value": 400}])
                answer = await brain.answer("ct")
                assert answer["status"] == "accepted", answer
                assert await rec.until(lambda s: "dtu.ct_ratio" in s.latest
                                       and s.latest["dtu.ct_ratio"].value == 400, timeout=10)
                dtu.redial()  # the old connection stays open and dead; the new one wins
                seen = len(rec.snapshot().samples)
                assert await rec.until(lambda s: len([x for x in s.samples[seen:]
                                                      if x.tag == "dtu.voltage"
                                                      and x.quality == "good"]) >= 5,
                                       timeout=15)
                driver: Any = gw.gateway.runners["dtu"].driver
                assert driver.slot.registrations >= 2
        snap = rec.snapshot()
        for name in names:
            for tag, value in EXPECTED.items():
                good = [s.value for s in snap.samples if s.tag == f"{name}.{tag}"
                        and s.quality == "good"]
                assert good and all(v == pytest.approx(value, abs=1e-9) for v in good), \
                    (name, tag)
        assert dtu.meter.get_value("ct_ratio") == 400
        assert dtu.heartbeats > 0 and dtu.heartbeat_inside_answers < 20


async def test_sparkplug_carries_the_dtu_and_device_server_meters(
        tmp_path: Path, mosquitto: MqttBroker) -> None:
    async with AsyncExitStack() as stack:
        devices, dtu = await _meters(stack)
        config = gateway_config(tmp_path, mosquitto.port, devices, commands={"enabled": True},
                                format="sparkplug")
        with SparkplugHost(mosquitto.port) as host:
            async with running(config):
                assert await host.until(lambda ms: all(len(host.of("DDATA", d["name"])) >= 3
                                                       for d in devices))
                dbirth = host.of("DBIRTH", "dtu")[0]
                alias = dbirth.metric("ct_ratio")["alias"]
                host.command("DCMD", [pb.Payload.Metric(alias=alias, datatype=pb.UInt16,
                                                        int_value=77)], device="dtu")
                assert await host.until(lambda ms: any(
                    s["tag"] == "dtu.ct_ratio" and s["value"] == 77 for s in host.samples()))
            samples = host.samples()
        for device in devices:
            volts = [s["value"] for s in samples if s["tag"] == f"{device['name']}.voltage"]
            assert volts and all(v == pytest.approx(EXPECTED["voltage"], abs=1e-9)
                                 for v in volts if v is not None)
        assert dtu.meter.get_value("ct_ratio") == 77
