"""Sparkplug B 3.0 Edge Node on a real Mosquitto with the gateway and a simulated meter."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from gateway.northbound.sparkplug import sparkplug_b_pb2 as pb
from gateway.northbound.sparkplug.edge_node import SparkplugEdgeNode
from hil.broker import MqttBroker
from hil.recorder import TelemetryRecorder
from tests.integration.gateway_harness import METER_TAGS, gateway_config, meter_device, running
from tests.integration.sparkplug_host import SparkplugHost, SpMessage, seqs_contiguous
from tests.waiting import until

pytestmark = pytest.mark.broker


def sparkplug_config(tmp: Path, broker: MqttBroker, devices: list[dict[str, Any]],
                     commands: dict[str, Any] | None = None, **spb: Any) -> Any:  # fmt: skip
    return gateway_config(tmp, broker.port, devices, commands=commands, format="sparkplug",
                          sparkplug=spb)  # fmt: skip


def http_text(port: int | None, path: str) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return resp.read().decode()  # type: ignore[no-any-return]


def births(messages: list[SpMessage]) -> list[SpMessage]:
    return [m for m in messages if m.type == "NBIRTH"]


async def test_births_data_by_alias_rebirth_and_clean_death(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any
) -> None:
    config = sparkplug_config(tmp_path, mosquitto, [meter_device("meter", waveform_meter.port)])
    rec = TelemetryRecorder(mosquitto.host, mosquitto.port, topic_root="spBv1.0")
    with SparkplugHost(mosquitto.port) as host, rec:
        async with running(config) as gw:
            assert await host.until(lambda ms: len([m for m in ms if m.type == "DDATA"]) >= 5)
            # the HIL recorder reads Sparkplug too: tag paths through the DBIRTH aliases
            assert await rec.until(lambda s: "meter.voltage" in s.latest)
            assert rec.snapshot().latest["meter.voltage"].quality == "good"
            assert len(rec.snapshot().births) == 1
            nbirth = host.of("NBIRTH")[0]
            assert (nbirth.seq, nbirth.qos, nbirth.retain) == (0, 0, False)
            assert nbirth.metric("bdSeq")["value"] == 0
            assert nbirth.metric("Node Control/Rebirth")["value"] is False
            assert json.loads(nbirth.metric("Node Info/Devices")["value"]) == {"meter": "up"} or (
                json.loads(nbirth.metric("Node Info/Devices")["value"]) == {"meter": "starting"})
            dbirth = host.of("DBIRTH", "meter")[0]
            assert dbirth.seq == 1
            names = {m["name"] for m in dbirth.body["metrics"]}
            assert names == {t["name"] for t in METER_TAGS}
            voltage = dbirth.metric("voltage")
            assert voltage["datatype"] in ("Float", "Double")
            assert voltage["properties"]["engUnit"] == "V"
            assert voltage["properties"]["sourceDevice"] == "meter"
            assert "classification" in voltage["properties"]
            ddata = host.of("DDATA", "meter")
            assert all(x["name"] is None and x["alias"] is not None
                       for m in ddata for x in m.body["metrics"])  # fmt: skip
            assert {s["tag"] for s in host.samples()} <= {f"meter.{n}" for n in names}
            assert all(m.qos == 0 and not m.retain for m in ddata)

            host.rebirth()
            assert await host.until(lambda ms: len(births(ms)) >= 2)
            assert await host.until(lambda ms: len([m for m in ms if m.type == "DBIRTH"]) >= 2)
            assert host.of("NBIRTH")[1].metric("bdSeq")["value"] == 0  # same connection
            assert gw.gateway.northbound.contract.counters.rebirths_requested == 1  # type: ignore[union-attr]
            # data after the rebirth: its seq carries on from the new births
            assert await host.until(lambda ms: ms[-1].type == "DDATA")
            await gw.stop()
        assert await host.until(lambda ms: len([m for m in ms if m.type == "NDEATH"]) >= 1)
        msgs = host.snapshot()
        assert seqs_contiguous(msgs), " ".join(f"{m.type}:{m.seq}" for m in msgs)
        ndeath = host.of("NDEATH")[0]
        assert ndeath.seq is None
        assert [x["name"] for x in ndeath.body["metrics"]] == ["bdSeq"]
        assert ndeath.metric("bdSeq")["value"] == 0


def historical(messages: list[SpMessage]) -> list[SpMessage]:
    return [
        m for m in messages
        if m.type == "DDATA" and all(x["is_historical"] for x in m.body["metrics"])
    ]


async def test_primary_host_offline_holds_data_then_births_and_replays_historical(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any
) -> None:
    config = sparkplug_config(tmp_path, mosquitto, [meter_device("meter", waveform_meter.port)],
                              primary_host_id="scada")  # fmt: skip
    with SparkplugHost(mosquitto.port) as host:
        async with running(config) as gw:
            nb = gw.gateway.northbound
            assert nb is not None and isinstance(nb.contract, SparkplugEdgeNode)
            spb = nb.contract.counters
            # connected, with data to send: a birth now would already be counted
            await until(lambda: nb.link.connected.is_set() and nb.outbox.stats().queued > 0,
                        "connected to the broker with data held")
            assert nb.counters.births == 0 and nb.counters.messages_published == 0
            assert host.snapshot() == []  # 3.0: no birth before the primary host is online
            host.publish_state("scada", True)
            assert await host.until(lambda ms: len(historical(ms)) >= 1)
            first = host.snapshot()
            assert [m.type for m in first[:2]] == ["NBIRTH", "DBIRTH"]

            states = spb.state_messages
            host.publish_state("scada", False)
            await until(lambda: spb.state_messages > states and not nb.in_session(),
                        "the gateway saw the host leave")
            # what was in flight when the host left reaches it; then the gateway is quiet
            await until(lambda: nb.outbox.stats().inflight == 0
                        and len(host.snapshot()) == nb.counters.messages_published,
                        "the host has every message the gateway published")
            held_from, published = len(host.snapshot()), nb.counters.messages_published
            queued = nb.outbox.stats().queued
            await until(lambda: nb.outbox.stats().queued >= queued + 3, "more data held")
            assert nb.counters.messages_published == published  # nothing published offline
            # a STATE older than the last one is ignored
            host.publish_state("scada", True, ts_ms=1)
            await until(lambda: spb.state_messages > states + 1, "the old STATE at the gateway")
            assert not nb.in_session() and nb.counters.messages_published == published
            assert len(host.snapshot()) == held_from

            host.publish_state("scada", True)
            assert await host.until(lambda ms: len(births(ms)) == 2)
            assert await host.until(lambda ms: len(historical(ms[held_from:])) >= 3)
            assert await host.until(lambda ms: any(
                m.type == "DDATA" and not historical([m]) for m in ms[held_from:]))
            metrics = await asyncio.to_thread(http_text, gw.gateway.http_port, "/metrics")
            assert "chenxing_sparkplug_historical_messages_total" in metrics
            assert "chenxing_sparkplug_state_messages_total 4.0" in metrics
            # held while no session was up: encoded historical, replayed without re-encoding
            # (only what was queued live when the host left is re-encoded)
            spb = nb.contract.counters  # type: ignore[attr-defined]
            assert spb.historical_reencoded < spb.historical_messages
            await gw.stop()
        await host.until(lambda ms: any(m.type == "NDEATH" for m in ms))
        msgs = host.snapshot()
        again = msgs[held_from:]
        assert [m.type for m in again[:2]] == ["NBIRTH", "DBIRTH"]
        assert again[0].metric("bdSeq")["value"] == 0  # the same connection
        assert seqs_contiguous(msgs), " ".join(f"{m.type}:{m.seq}" for m in msgs)
        # every sample the gateway published reached the host, none twice
        samples = host.samples(msgs)
        assert len(samples) == nb.counters.samples_published
        keys = [(s["tag"], s["timestamp"]) for s in samples]
        assert len(keys) == len(set(keys))
        # what was held while the host was offline came back flagged historical
        held = [s for s in host.samples(again) if s["is_historical"]]
        assert len(held) >= 10
        live_after = [s for s in host.samples(again) if not s["is_historical"]]
        assert held and live_after
        assert max(s["timestamp"] for s in held) <= max(s["timestamp"] for s in live_after)


async def test_device_death_and_birth(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any
) -> None:
    sim = waveform_meter
    config = sparkplug_config(tmp_path, mosquitto, [meter_device("meter", sim.port)])
    with SparkplugHost(mosquitto.port) as host:
        async with running(config) as gw:
            assert await host.until(lambda ms: len(host.of("DDATA", "meter")) >= 2)
            await sim.stop()
            assert await host.until(lambda ms: len(host.of("DDEATH", "meter")) == 1)
            died_at = len(host.snapshot())
            devices_alias = host.of("NBIRTH")[0].metric("Node Info/Devices")["alias"]
            assert await host.until(lambda ms: any(
                x["alias"] == devices_alias and json.loads(x["value"]) == {"meter": "down"}
                for m in host.of("NDATA") for x in m.body["metrics"]))
            nb = gw.gateway.northbound
            assert nb is not None and isinstance(nb.contract, SparkplugEdgeNode)
            withheld = nb.contract.counters.dead_device_withheld
            # the dead device's samples keep coming and are withheld; the host has all
            # that was published meanwhile
            await until(lambda: nb.contract.counters.dead_device_withheld > withheld
                        and nb.outbox.stats().queued + nb.outbox.stats().inflight == 0
                        and len(host.snapshot()) == nb.counters.messages_published,
                        "more samples of the dead device withheld, the rest at the host")
            after = host.snapshot()[died_at:]
            # no live data for a dead device (its bad-quality placeholders are the DDEATH)
            assert not [m for m in after if m.type == "DDATA" and not historical([m])]
            assert len(host.of("NBIRTH")) == 1  # a device death is no rebirth
            await sim.start()
            assert await host.until(lambda ms: len(host.of("DBIRTH", "meter")) == 2, timeout=20)
            assert await host.until(lambda ms: host.of("DDATA", "meter")[-1].seq is not None
                                    and host.snapshot()[-1].type == "DDATA")  # fmt: skip
            assert gw.gateway.northbound.contract.counters.dead_device_withheld > 0  # type: ignore[union-attr]
            await gw.stop()
        msgs = host.snapshot()
        assert seqs_contiguous(msgs), " ".join(f"{m.type}:{m.seq}" for m in msgs)
        kinds = [m.type for m in msgs if m.topic.device_id == "meter"]
        death = kinds.index("DDEATH")
        assert kinds.index("DBIRTH", death) > death


WRITABLE = [
    *[{**t, "writable": True} if t["name"] == "relay_closed" else t for t in METER_TAGS],
    {"name": "power_limit", "table": "holding", "address": 101, "type": "float32",
     "unit": "kW", "writable": True, "range": [0, 100], "verify_write": True},
]  # fmt: skip


def last_result(host: SparkplugHost) -> dict[str, Any] | None:
    for m in reversed(host.of("NDATA")):
        for x in m.body["metrics"]:
            if x["alias"] == result_alias(host):
                return json.loads(x["value"])  # type: ignore[no-any-return]
    return None


def result_alias(host: SparkplugHost) -> int:
    return host.of("NBIRTH")[0].metric("Node Control/Last Command Result")["alias"]  # type: ignore[no-any-return]


async def test_dcmd_writes_go_through_the_command_checks_with_data_qos_1(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any
) -> None:
    sim = waveform_meter
    config = sparkplug_config(tmp_path, mosquitto, [meter_device("meter", sim.port, tags=WRITABLE)],
                              commands={"enabled": True}, data_qos=1)  # fmt: skip
    audit = tmp_path / "state" / "audit.log"
    with SparkplugHost(mosquitto.port) as host:
        async with running(config) as gw:
            assert await host.until(lambda ms: len(host.of("DDATA", "meter")) >= 2)
            assert all(m.qos == 1 for m in host.of("DDATA"))  # the documented QoS 1 option
            assert all(m.qos == 0 for m in host.of("NBIRTH") + host.of("DBIRTH"))
            dbirth = host.of("DBIRTH", "meter")[0]
            limit_alias = dbirth.metric("power_limit")["alias"]
            assert dbirth.metric("power_limit")["properties"]["writable"] is True

            # by alias, as a host does after the birth
            host.command("DCMD", [pb.Payload.Metric(alias=limit_alias, datatype=pb.Float,
                                                    float_value=42.0)], device="meter")  # fmt: skip
            assert await host.until(lambda ms: last_result(host) is not None)
            result = last_result(host)
            assert result is not None and result["status"] == "accepted", result
            assert result["results"][0]["verified"] is True
            assert sim.get_value("power_limit") == pytest.approx(42.0)
            # the new value answered in a DDATA
            assert await host.until(lambda ms: any(
                x["alias"] == limit_alias and x["value"] == pytest.approx(42.0)
                for m in host.of("DDATA", "meter") for x in m.body["metrics"]))

            # by name, not writable: rejected with the reason, nothing written
            host.command("DCMD", [pb.Payload.Metric(name="voltage", datatype=pb.Float,
                                                    float_value=1.0)], device="meter")  # fmt: skip
            assert await host.until(lambda ms: (last_result(host) or {}).get("status")
                                    == "rejected")  # fmt: skip
            rejected = last_result(host)
            assert rejected is not None
            assert "not writable" in rejected["results"][0]["reason"]
            assert sim.get_value("power_limit") == pytest.approx(42.0)

            # a node command other than rebirth is a write to an unknown tag: rejected
            reboot = pb.Payload.Metric(name="Node Control/Reboot", datatype=pb.Boolean,
                                       boolean_value=True)
            host.command("NCMD", [reboot])
            assert await host.until(lambda ms: "unknown tag" in str(
                (last_result(host) or {}).get("results")))
            host.rebirth()
            assert await host.until(lambda ms: len(host.of("NBIRTH")) == 2)
            # the last result is in the new NBIRTH
            again = host.of("NBIRTH")[1].metric("Node Control/Last Command Result")["value"]
            assert "unknown tag" in again
            await gw.stop()
        # every command audited
        lines = [json.loads(line) for line in audit.read_text().splitlines()]
        cmds = [x for x in lines if x["event"] == "cmd"]
        assert [c["outcome"] for c in cmds] == ["accepted", "rejected", "rejected"]
        assert all(c["topic"].startswith("spBv1.0/plant/") for c in cmds)
        assert [(x["outcome"], x["topic"]) for x in lines if x["event"] == "rebirth"] == [
            ("accepted", "spBv1.0/plant/NCMD/gw-test")]
        writes = [x for x in lines if x["event"] == "write"]
        assert writes[0]["tag"] == "meter.power_limit" and writes[0]["outcome"] == "accepted"
        assert writes[1]["tag"] == "meter.voltage" and writes[1]["outcome"] == "rejected"
        assert writes[1]["raw"] is None
        msgs = host.snapshot()
        assert seqs_contiguous(msgs), " ".join(f"{m.type}:{m.seq}" for m in msgs)


def kick(broker: MqttBroker, client_id: str) -> None:
    """A broker-side drop: another client takes the gateway's client id over, so the broker
    closes the gateway's connection without a DISCONNECT and publishes its will."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    imposter = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    imposter.connect("127.0.0.1", broker.port, keepalive=30)
    imposter.loop_start()
    imposter.disconnect()
    imposter.loop_stop()


async def test_bdseq_and_ndeath_will_across_drop_sigkill_and_restart(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any
) -> None:
    import signal

    from tests.integration.test_spool_zero_loss import GatewayProcess

    body = {
        "gateway": {"id": "gw-test", "site": "plant", "line": "l1", "state_dir": "state"},
        "devices": [meter_device("meter", waveform_meter.port)],
        "northbound": {
            "format": "sparkplug", "publish_interval": "50ms",
            "mqtt": {"port": mosquitto.port, "reconnect_min": 0.5, "reconnect_max": 1.0},
        },
        "http": {"enabled": False},
    }  # fmt: skip
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps(body))

    def bdseqs(kind: str) -> list[int]:
        return [m.metric("bdSeq")["value"] for m in host.of(kind)]

    with SparkplugHost(mosquitto.port) as host:
        gw = await GatewayProcess(config, 1).start()
        try:
            assert await host.until(lambda ms: len(host.of("DDATA")) >= 2, timeout=30)
            assert bdseqs("NBIRTH") == [0]
            await asyncio.to_thread(kick, mosquitto, "chenxing-gw-test")
            assert await host.until(lambda ms: bdseqs("NDEATH") == [0])  # the will
            assert await host.until(lambda ms: bdseqs("NBIRTH") == [0, 1])
            assert await host.until(lambda ms: host.snapshot()[-1].type == "DDATA")
            assert await gw.stop(signal.SIGKILL) == -signal.SIGKILL
            assert await host.until(lambda ms: bdseqs("NDEATH") == [0, 1])  # the will again
            gw = await GatewayProcess(config, 2).start()
            assert await host.until(lambda ms: bdseqs("NBIRTH") == [0, 1, 2], timeout=30)
            assert await host.until(lambda ms: host.snapshot()[-1].type == "DDATA")
            assert await gw.stop(signal.SIGTERM) == 0
            assert await host.until(lambda ms: bdseqs("NDEATH") == [0, 1, 2])  # published
        finally:
            if gw.proc is not None and gw.proc.returncode is None:
                gw.proc.kill()
                await gw.proc.wait()
    msgs = host.snapshot()
    assert seqs_contiguous(msgs), " ".join(f"{m.type}:{m.seq}" for m in msgs)
    assert all(m.qos == 1 and not m.retain for m in host.of("NDEATH"))
    assert json.loads((tmp_path / "state" / "sparkplug-bdseq.json").read_text()) == {
        "last_bdseq": 2}


async def test_data_qos_1_survives_broker_side_drops_without_stale_seq(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any
) -> None:
    """Unacknowledged QoS 1 data of a dropped connection is not retransmitted with its old
    seq: it is replayed after the new births, historical, with seq of the new session."""
    config = sparkplug_config(tmp_path, mosquitto, [meter_device("meter", waveform_meter.port)],
                              data_qos=1)  # fmt: skip
    with SparkplugHost(mosquitto.port) as host:
        async with running(config) as gw:
            nb = gw.gateway.northbound
            assert nb is not None
            for n in (1, 2):
                assert await host.until(lambda ms, n=n: len(host.of("DDATA")) >= 5 * n)
                await asyncio.to_thread(kick, mosquitto, "chenxing-gw-test")
                assert await host.until(lambda ms, n=n: len(host.of("NBIRTH")) == n + 1)
            assert await host.until(lambda ms: host.snapshot()[-1].type == "DDATA")
            await gw.stop()
        assert await host.until(lambda ms: len(host.of("NDEATH")) == 3)
        msgs = host.snapshot()
        assert [m.metric("bdSeq")["value"] for m in host.of("NBIRTH")] == [0, 1, 2]
        assert [m.metric("bdSeq")["value"] for m in host.of("NDEATH")] == [0, 1, 2]
        assert seqs_contiguous(msgs), " ".join(f"{m.type}:{m.seq}" for m in msgs)
        keys = {(s["tag"], s["timestamp"]) for s in host.samples(msgs)}
        assert len(keys) == nb.counters.samples_published  # none lost


async def test_qos_1_data_unacknowledged_by_a_frozen_broker_is_replayed_not_retransmitted(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter: Any
) -> None:
    """The broker freezes (SIGSTOP: no PUBACKs) and dies: the data paho still holds comes back
    after the new births, historical, with new seq; the host republishes its STATE."""
    import os
    import signal

    config = sparkplug_config(tmp_path, mosquitto, [meter_device("meter", waveform_meter.port)],
                              data_qos=1, primary_host_id="scada")  # fmt: skip
    with SparkplugHost(mosquitto.port) as host:
        host.publish_state("scada", True)
        async with running(config) as gw:
            nb = gw.gateway.northbound
            assert nb is not None
            assert await host.until(lambda ms: len(host.of("DDATA")) >= 3)
            assert mosquitto.pid is not None
            # acknowledged or in flight: grows with each send only, however the acks come
            def handed_over() -> int:
                return nb.counters.messages_published + nb.outbox.stats().inflight

            os.kill(mosquitto.pid, signal.SIGSTOP)
            frozen_at = handed_over()
            # a DDATA sent after the freeze, never to be acknowledged
            await until(lambda: handed_over() > frozen_at, "a DDATA sent to the frozen broker")
            await asyncio.to_thread(mosquitto.kill)
            await asyncio.to_thread(mosquitto.start)
            assert await host.until(lambda ms: host.subscriptions >= 2)
            host.publish_state("scada", True)  # a host's STATE birth on its new connection
            assert await host.until(lambda ms: len(host.of("NBIRTH")) == 2)
            assert nb.counters.taken_back > 0
            assert await host.until(lambda ms: nb.outbox.stats().messages == 0 and any(
                m.type == "DDATA" and not historical([m]) for m in ms[-3:]))
            # taken back after being encoded live: re-encoded historical when replayed
            spb = nb.contract.counters  # type: ignore[attr-defined]
            assert spb.historical_reencoded >= nb.counters.taken_back
            await gw.stop()
        msgs = host.snapshot()
        assert seqs_contiguous(msgs), " ".join(f"{m.type}:{m.seq}" for m in msgs)
        assert [m.metric("bdSeq")["value"] for m in host.of("NBIRTH")] == [0, 1]
        second = msgs[msgs.index(host.of("NBIRTH")[1]):]
        assert historical(second)
        keys = {(s["tag"], s["timestamp"]) for s in host.samples(msgs)}
        assert len(keys) == nb.counters.samples_published  # nothing lost


async def test_junk_on_the_state_topic_is_counted_and_logged_once_per_kind(
    tmp_path: Path, mosquitto: MqttBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone allowed to publish on spBv1.0/STATE/<host> can send junk at any rate."""
    caplog.set_level(logging.WARNING, "gateway.northbound.sparkplug.edge_node")
    device = meter_device("meter", 1, enabled=False)
    config = sparkplug_config(tmp_path, mosquitto, [device], primary_host_id="scada")
    with SparkplugHost(mosquitto.port) as host:
        async with running(config) as gw:
            nb = gw.gateway.northbound
            assert nb is not None
            assert await host.until(lambda ms: nb.link.connected.is_set(), timeout=10)
            for i in range(30):
                host._client.publish("spBv1.0/STATE/scada", b"{not json" if i % 2 else b"[1]",
                                     qos=1).wait_for_publish(5)  # fmt: skip
            counters = nb.contract.counters  # type: ignore[attr-defined]
            assert await host.until(lambda ms: counters.bad_state_messages == 30)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2, warnings  # one per kind of junk (before: 30)
    assert all(w.startswith("primary host STATE ignored: ") for w in warnings)
