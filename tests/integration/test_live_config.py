"""Live config changes on a running gateway, with a real Mosquitto and the simulated meter:
only the devices that changed restart, the others publish every sample throughout; a change
whose device does not come up, or that loses the broker session, is rolled back by itself;
of two edits based on one version the second is refused; a bad config changes nothing."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config.loader import load_config
from gateway.runtime.gateway import Gateway
from hil.broker import MqttBroker
from hil.devices.modbus_meter import meter_tag_configs
from hil.netutil import free_port
from hil.recorder import TelemetryRecorder
from tests.integration.gateway_harness import METER_TAGS, gateway_body, meter_device, running
from tests.waiting import until

pytestmark = pytest.mark.broker

POLL_MS = 100


def _write(path: Path, body: dict[str, Any]) -> str:
    text = yaml.safe_dump(body, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return text


def _text(body: dict[str, Any]) -> str:
    return yaml.safe_dump(body, sort_keys=False)


def _copy(body: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(body))  # no list shared between devices


def _no_gap(gw: Gateway, samples: list[Any], device: str) -> None:
    """Every poll of ``device`` reached the broker, in order, none late past its overruns."""
    runner = gw.runners[device]
    stamps = [s.ts_ms for s in samples]
    assert len(stamps) == runner.stats.polls, "a poll of the device was not published"
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) > 0
    assert max(gaps) < POLL_MS * (2 + runner.stats.overruns), (max(gaps), runner.stats)


async def test_a_tag_added_and_a_device_removed_while_the_others_publish_without_a_gap(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter
) -> None:
    port = waveform_meter.port
    body = gateway_body(tmp_path, mosquitto.port, [
        meter_device("steady", port), meter_device("grows", port), meter_device("gone", port)])
    path = tmp_path / "gateway.yaml"
    _write(path, body)
    with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec:
        async with running(load_config(path), config_path=path) as run:
            gw = run.gateway
            steady = gw.runners["steady"]
            assert await rec.until(
                lambda s: len([x for x in s.samples if x.tag == "steady.voltage"]) >= 5,
                timeout=15)
            assert gw.live.version == 1

            body["devices"][1]["tags"] = [*METER_TAGS, *meter_tag_configs("frequency")]
            del body["devices"][2]
            result = await gw.live.apply(_text(body), "tester", expected_version=1)
            assert result.outcome == "applied", result.describe()
            assert result.version == 2 and result.previous == 1
            assert result.summary == "removed: gone; changed: grows"
            assert result.devices == {"grows": "up"}
            assert await rec.until(
                lambda s: len([x for x in s.samples if x.tag == "grows.frequency"]) >= 3,
                timeout=15)
            polls = steady.stats.polls
            await until(lambda: steady.stats.polls >= polls + 3)
            report = await run.stop()
        assert await rec.until(lambda s: len(s.deaths) >= 1, timeout=5)
    assert report.drained

    # the unchanged device ran on, on its first connection; the changed one restarted
    assert gw.runners["steady"] is steady and steady.stats.connects == 1
    assert gw.runners["grows"].stats.connects == 2 and "gone" not in gw.runners
    snap = rec.snapshot()
    _no_gap(gw, [s for s in snap.samples if s.tag == "steady.voltage"], "steady")
    seqs = [m["seq"] for m in snap.data_messages]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a data message was lost"

    # the catalog, births and metrics follow
    assert gw.catalog.get("gone.voltage") is None and gw.catalog.get("grows.frequency")
    birth = snap.births[-1]
    tags = {t["tag"] for t in birth["tags"]}
    assert "grows.frequency" in tags and not any(t.startswith("gone.") for t in tags)
    assert birth["config_version"] == 2 and snap.births[0]["config_version"] == 1
    first_new = min(s.ts_ms for s in snap.samples if s.tag == "grows.frequency")
    assert all(s.ts_ms < first_new for s in snap.samples if s.tag.startswith("gone."))

    # the store keeps both versions, the diff to the parent, the author
    record = gw.live.store.get(2)
    assert (record.author, record.source, record.parent, record.status) == \
        ("tester", "api", 1, "applied")
    diff = gw.live.store.diff(2)
    assert diff.startswith("--- v1\n+++ v2\n")
    assert "+  - name: frequency\n" in diff and "-- name: gone\n" in diff
    assert path.read_text(encoding="utf-8") == _text(body), "the file shows the version running"


async def test_a_device_that_never_delivers_is_rolled_back_by_itself(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter
) -> None:
    port = waveform_meter.port
    body = gateway_body(tmp_path, mosquitto.port, [meter_device("steady", port)])
    body["management"] = {"watch": "1.5s"}
    path = tmp_path / "gateway.yaml"
    before = _write(path, body)
    async with running(load_config(path), config_path=path) as run:
        gw = run.gateway
        await until(lambda: gw.runners["steady"].delivering, timeout=15)
        changed = _copy(body)
        # it connects (the connect test passes) but unit 9 answers every read with an error
        changed["devices"].append(meter_device("mute", port, unit_id=9))
        changed["devices"][0]["poll_interval"] = "150ms"
        result = await gw.live.apply(_text(changed), "tester", expected_version=1)
        assert result.outcome == "rolled_back", result.describe()
        assert (result.version, result.previous, result.rolled_back) == (3, 1, 2)
        assert "not up within 1.5s: mute (connected, no good value read" in (result.reason or "")
        assert result.devices["steady"] == "up"
        # back where it was: devices, file, store
        assert set(gw.runners) == {"steady"} and gw.catalog.get("mute.voltage") is None
        assert gw.config.devices[0].poll_interval == 0.1
        assert path.read_text(encoding="utf-8") == before
        store = gw.live.store
        assert store.get(2).status == "rolled_back" and "mute" in (store.get(2).reason or "")
        assert (store.get(3).source, store.get(3).restores) == ("rollback", 1)
        assert store.text(3) == store.text(1) and gw.live.version == 3
        await until(lambda: gw.runners["steady"].delivering, timeout=15)

        # a device that cannot connect at all is refused by the connect test: nothing changes
        ghost = _copy(body)
        ghost["devices"].append(meter_device("ghost", free_port(), timeout="300ms"))
        result = await gw.live.apply(_text(ghost), "tester", expected_version=3)
        assert result.outcome == "connect_failed" and "ghost" in result.devices
        assert gw.live.version == 3 and store.current().version == 3  # type: ignore[union-attr]

        # without the connect test it is applied, then rolled back by itself
        ghost["management"]["connect_test"] = False
        result = await gw.live.apply(_text(ghost), "tester", expected_version=3)
        assert result.outcome == "rolled_back" and result.rolled_back == 4, result.describe()
        assert "ghost (down" in (result.reason or "")
        assert set(gw.runners) == {"steady"} and gw.live.version == 5
        assert gw.runners["steady"].stats.connects == 3  # restarted by v2 and by its rollback


async def test_two_edits_based_on_one_version_one_is_refused(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter
) -> None:
    port = waveform_meter.port
    body = gateway_body(tmp_path, mosquitto.port, [meter_device("a", port)])
    path = tmp_path / "gateway.yaml"
    _write(path, body)
    async with running(load_config(path), config_path=path) as run:
        gw = run.gateway
        first, second = _copy(body), _copy(body)
        first["devices"].append(meter_device("b", port))
        second["devices"].append(meter_device("c", port))
        results = await asyncio.gather(gw.live.apply(_text(first), "alice", 1),
                                       gw.live.apply(_text(second), "bob", 1))
        assert [r.outcome for r in results] == ["applied", "conflict"]
        assert "based on version 1, but version 2 runs now" in (results[1].reason or "")
        assert set(gw.runners) == {"a", "b"} and gw.live.version == 2
        # based on the new version it goes through
        second["devices"].insert(1, meter_device("b", port))
        result = await gw.live.apply(_text(second), "bob", 2)
        assert result.outcome == "applied" and set(gw.runners) == {"a", "b", "c"}


async def test_a_bad_config_is_refused_with_file_line_and_key_and_nothing_changes(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter
) -> None:
    port = waveform_meter.port
    body = gateway_body(tmp_path, mosquitto.port, [meter_device("a", port)])
    path = tmp_path / "gateway.yaml"
    before = _write(path, body)
    async with running(load_config(path), config_path=path) as run:
        gw = run.gateway
        runner = gw.runners["a"]
        await until(lambda: runner.delivering, timeout=15)
        bad = _copy(body)
        bad["devices"][0]["tags"][1]["type"] = "float99"
        bad["devices"].append(meter_device("b", port, poll_interval="soon"))
        text = _text(bad)
        result = await gw.live.apply(text, "tester", 1)
        assert result.outcome == "invalid" and len(result.problems) == 2
        lines = text.splitlines()
        where = [(p.file, p.line, p.path_text) for p in result.problems]
        assert where == [
            (str(path), lines.index("    type: float99") + 1, "devices[0].tags[1].type"),
            (str(path), lines.index("  poll_interval: soon") + 1, "devices[1].poll_interval"),
        ]
        assert result.as_dict()["problems"][0]["key"] == "devices[0].tags[1].type"
        # a change that needs a restart is refused too
        other = _copy(body)
        other["northbound"]["publish_interval"] = "1s"
        result = await gw.live.apply(_text(other), "tester", 1)
        assert result.outcome == "refused" and "northbound changed: restart required" in \
            (result.reason or "")
        assert gw.live.version == 1 and gw.live.store.numbers() == [1]
        assert path.read_text(encoding="utf-8") == before
        assert gw.runners["a"] is runner and runner.stats.connects == 1

        # an edit of the file not applied yet is not overwritten by an API edit
        path.write_text(before + "# a comment\n", encoding="utf-8")
        added = _copy(body)
        added["devices"].append(meter_device("b", port))
        result = await gw.live.apply(_text(added), "tester", 1)
        assert result.outcome == "refused" and "not applied" in (result.reason or "")
        assert await gw.reload_config() == "applied" and gw.live.version == 2
        assert gw.live.store.get(2).summary == "no device changed (text only)"


async def test_a_change_that_loses_the_broker_session_is_rolled_back(
    tmp_path: Path, waveform_meter
) -> None:
    broker = MqttBroker(kind="mosquitto", max_packet_size=8000)
    broker.start()
    try:
        port = waveform_meter.port
        body = gateway_body(tmp_path, broker.port, [meter_device("steady", port)])
        path = tmp_path / "gateway.yaml"
        _write(path, body)
        with TelemetryRecorder(broker.host, broker.port) as rec:
            async with running(load_config(path), config_path=path) as run:
                gw = run.gateway
                assert await rec.until(lambda s: len(s.births) >= 1, timeout=15)
                wordy = _copy(body)
                tags = [{**t, "description": "x" * 1500} for t in METER_TAGS]
                wordy["devices"].append(meter_device("wordy", port, tags=tags))
                result = await gw.live.apply(_text(wordy), "tester", 1)
                assert result.outcome == "rolled_back", result.describe()
                assert "the broker session was lost after the change" in (result.reason or "")
                assert set(gw.runners) == {"steady"} and gw.live.version == 3
                # the session comes back at once with the old (small) birth, named version
                # 3, and data flows again; the refused birth is not re-sent after the
                # reconnect (paho would re-send it, unacknowledged, on every connect, and
                # the broker would end every session: it took 30-40 s and many reconnects
                # before unacknowledged births were dropped at a reconnect)
                await until(lambda: gw.northbound is not None and gw.northbound.in_session(),
                            timeout=30)
                assert await rec.until(lambda s: s.births[-1]["config_version"] == 3,
                                       timeout=30), rec.snapshot().births
                assert [d["name"] for d in rec.snapshot().births[-1]["devices"]] == ["steady"]
                count = len(rec.samples_of("steady.voltage"))
                assert await rec.until(lambda s: len([x for x in s.samples
                                                      if x.tag == "steady.voltage"]) > count + 2)
                assert gw.northbound is not None
                assert gw.northbound.link.disconnects == 1  # only the one the change caused
    finally:
        broker.close()


async def test_sparkplug_a_tag_added_rebirths_while_the_other_device_publishes_every_poll(
    tmp_path: Path, mosquitto: MqttBroker, waveform_meter
) -> None:
    from tests.integration.sparkplug_host import SparkplugHost, seqs_contiguous

    port = waveform_meter.port
    body = gateway_body(tmp_path, mosquitto.port, [meter_device("a", port),
                                                    meter_device("b", port)], format="sparkplug")
    path = tmp_path / "gateway.yaml"
    _write(path, body)
    with SparkplugHost(mosquitto.port) as host:
        async with running(load_config(path), config_path=path) as run:
            gw = run.gateway
            await host.until(lambda ms: len([m for m in ms if m.type == "DDATA"]) >= 5)
            body["devices"][1]["tags"] = [*METER_TAGS, *meter_tag_configs("frequency")]
            result = await gw.live.apply(_text(body), "tester", 1)
            assert result.outcome == "applied", result.describe()
            await host.until(lambda ms: any(s["tag"] == "b.frequency"
                                            for s in host.samples(ms)))
            polls = gw.runners["a"].stats.polls
            await until(lambda: gw.runners["a"].stats.polls >= polls + 3)
            await run.stop()
    messages = host.snapshot()
    nbirths = [m for m in messages if m.type == "NBIRTH"]
    assert len(nbirths) == 2  # the start, and the rebirth after the change
    assert nbirths[0].metric("Node Info/Config Version")["value"] == 1
    assert nbirths[1].metric("Node Info/Config Version")["value"] == 2
    b_births = [m for m in messages if m.type == "DBIRTH" and m.topic.device_id == "b"]
    assert "frequency" in {x["name"] for x in b_births[-1].body["metrics"]}
    assert "frequency" not in {x["name"] for x in b_births[0].body["metrics"]}
    assert seqs_contiguous([m for m in messages if m.type != "STATE"])
    runner = gw.runners["a"]
    assert runner.stats.connects == 1
    a_volts = [s for s in host.samples(messages) if s["tag"] == "a.voltage"]
    stamps = [s["timestamp"] for s in a_volts]
    assert len(stamps) == runner.stats.polls, "a poll of the unchanged device was not published"
    assert max(b - a for a, b in itertools.pairwise(stamps)) < POLL_MS * (2 + runner.stats.overruns)
