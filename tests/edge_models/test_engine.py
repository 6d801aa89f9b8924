"""The engine and the model lifecycle: triggers, bad inputs, failures, hot swap, shadow, alarms."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from edge_models.engine import AlarmEvent
from gateway.errors import ModelRunError
from gateway.pipeline import Pipeline
from gateway.types import Quality, SampleBatch
from tests.waiting import until

from .helpers import NS, Sink, catalog_for, feed_cycles, identity_manifest, service, write_model

LATER = 10**6 * NS  # a "now" past every settle time


async def test_cycle_trigger_publishes_each_complete_cycle(tmp_path: Path) -> None:
    write_model(tmp_path, "kpi", identity_manifest())
    catalog = catalog_for(tmp_path)
    sink = Sink(catalog)
    svc = service(tmp_path, catalog, sink)
    await svc.reload()
    assert svc.describe() == [{"name": "kpi", "version": "1", "sha256": svc.describe()[0]
                               ["sha256"], "role": "active"}]
    last = feed_cycles(svc, catalog, first_part=7, cycles=4)
    assert await svc.engine.tick(now=LATER) == 3  # the first edge only starts a cycle
    out = sink.samples("models.kpi/value")
    assert [v for _, v, _ in out] == pytest.approx([20.0, 20.0, 20.0])  # 2 kW over the 10 s cycle
    assert out[-1][0] == last and {q for *_, q in out} == {Quality.GOOD}
    c = svc.engine.counters[("kpi", "active")]
    assert (c.inferences, c.runs, c.errors) == (3, 1, 0)  # three rows, one batched run
    svc.close()


async def test_settle_time_delays_the_inference(tmp_path: Path) -> None:
    write_model(tmp_path, "kpi", identity_manifest(trigger={"on": "cycle", "settle": "2s"}))
    catalog = catalog_for(tmp_path)
    sink = Sink(catalog)
    svc = service(tmp_path, catalog, sink)
    await svc.reload()
    last = feed_cycles(svc, catalog, first_part=0, cycles=2)
    assert await svc.engine.tick(now=last + NS) == 0
    assert await svc.engine.tick(now=last + 2 * NS) == 1
    svc.close()


@pytest.mark.parametrize("mode", ["skip", "uncertain"])
async def test_bad_inputs_skip_or_publish_uncertain(tmp_path: Path, mode: str) -> None:
    manifest = identity_manifest(on_bad_input=mode)
    manifest["inputs"][0]["fill"] = -1.0
    write_model(tmp_path, "kpi", manifest)
    catalog = catalog_for(tmp_path)
    sink = Sink(catalog)
    svc = service(tmp_path, catalog, sink)
    await svc.reload()
    ts = feed_cycles(svc, catalog, first_part=0, cycles=2)  # one good cycle
    pc, pw = catalog.id_of("plc.PartCount"), catalog.id_of("plc.Power")
    for _ in range(10):  # a cycle where the power reads NaN / bad
        ts += NS
        svc.engine.ingest(SampleBatch.of([pw, pc], [np.nan, 2.0], ts, [Quality.BAD,
                                                                       Quality.GOOD]))
    svc.engine.ingest(SampleBatch.of([pc], [3.0], ts))
    await svc.engine.tick(now=LATER)
    out = sink.samples("models.kpi/value")
    c = svc.engine.counters[("kpi", "active")]
    if mode == "skip":
        assert [(v, q) for _, v, q in out] == [(20.0, Quality.GOOD)]
        assert (c.skipped, c.uncertain) == (1, 0)
    else:
        assert [(v, q) for _, v, q in out] == [(20.0, Quality.GOOD), (-1.0, Quality.UNCERTAIN)]
        assert (c.skipped, c.uncertain) == (0, 1)
    svc.close()


@pytest.mark.parametrize("where", ["inline", "thread"])
async def test_a_model_that_raises_stops_nothing_else(tmp_path: Path, where: str) -> None:
    write_model(tmp_path, "kpi", identity_manifest())
    write_model(tmp_path, "other", identity_manifest(name="other"))
    catalog = catalog_for(tmp_path)
    sink = Sink(catalog)
    svc = service(tmp_path, catalog, sink)
    if where == "thread":
        svc.engine.inline_budget_s = 0.0
    await svc.reload()
    broken = next(m for m in svc.engine.models() if m.name == "kpi")

    class Raising:
        def run(self, *args: object) -> None:
            raise RuntimeError("kernel exploded")

    broken.session = Raising()  # type: ignore[assignment]
    feed_cycles(svc, catalog, first_part=0, cycles=3)
    await svc.engine.tick(svc.executor, now=LATER)
    assert sink.samples("models.kpi/value") == []
    assert len(sink.samples("models.other/value")) == 2
    c = svc.engine.counters[("kpi", "active")]
    assert c.errors == 1 and "kernel exploded" in (c.last_error or "")
    inline = svc.engine.counters[("other", "active")].inline_runs
    assert inline == (1 if where == "inline" else 0)
    with pytest.raises(ModelRunError):
        broken.run(np.zeros((1, 1)))
    svc.close()


@pytest.mark.parametrize("breakage", ["corrupt", "wrong_hash", "wrong_output", "bad_yaml"])
async def test_a_bad_update_keeps_the_old_model_running(tmp_path: Path, breakage: str) -> None:
    path = write_model(tmp_path, "kpi", identity_manifest())
    catalog = catalog_for(tmp_path)
    sink = Sink(catalog)
    changes: list[int] = []
    svc = service(tmp_path, catalog, sink)
    svc.on_change = lambda: changes.append(1)
    await svc.reload()
    ts = feed_cycles(svc, catalog, first_part=0, cycles=2)
    if breakage == "corrupt":
        junk = b"garbage" * 50
        write_model(tmp_path, "kpi", identity_manifest(
            version="2", sha256=hashlib.sha256(junk).hexdigest()), onnx=junk)
    elif breakage == "wrong_hash":
        write_model(tmp_path, "kpi", identity_manifest(version="2", sha256="cd" * 32))
    elif breakage == "wrong_output":
        write_model(tmp_path, "kpi", identity_manifest(
            version="2", outputs=[{"name": "value", "onnx": "nope"}]))
    else:
        path.write_text("name: kpi\nversion: [unclosed\n")
    changed = await svc.reload()
    status = svc.status[path]
    assert changed == [status] and status.loaded and status.load_failures == 1
    assert changes == [1]  # refused: no rebirth, the birth still names version 1
    assert status.version == "1" and status.last_error
    assert svc.describe()[0]["version"] == "1"
    feed_cycles(svc, catalog, first_part=2, cycles=2, t0=ts)
    await svc.engine.tick(now=LATER)
    assert len(sink.samples("models.kpi/value")) == 3  # the old model kept running
    assert await svc.reload() == []  # the same broken files are not retried
    assert status.load_failures == 1
    families = {f.name: f for f in svc.metrics()}
    failures = families["chenxing_model_load_failures"].samples
    assert [(s.labels["file"], s.value) for s in failures] == [("kpi.yaml", 1)]
    svc.close()


async def test_hot_swap_loses_no_outputs(tmp_path: Path) -> None:
    write_model(tmp_path, "kpi", identity_manifest())
    catalog = catalog_for(tmp_path)
    sink = Sink(catalog)
    svc = service(tmp_path, catalog, sink)
    await svc.reload()
    ts = feed_cycles(svc, catalog, first_part=0, cycles=3)  # two inferences pending
    manifest = identity_manifest(version="2")
    manifest["inputs"][0]["scale"] = 10.0
    write_model(tmp_path, "kpi", manifest)
    await svc.reload()  # swapped between the trigger and the tick
    ts = feed_cycles(svc, catalog, first_part=3, cycles=2, t0=ts)
    await svc.engine.tick(now=LATER)
    out = sink.samples("models.kpi/value")
    assert [v for _, v, _ in out] == pytest.approx([200.0] * 4)  # every cycle, by v2
    assert len({t for t, _, _ in out}) == 4
    assert svc.describe()[0]["version"] == "2"
    assert svc.engine.counters[("kpi", "active")].inferences == 4
    svc.close()


async def test_shadow_publishes_under_shadow_tags_only(tmp_path: Path) -> None:
    write_model(tmp_path, "kpi", identity_manifest())
    shadow = identity_manifest(version="2-rc", shadow=True,
                               alarms=[{"name": "hot", "output": "value", "above": 0}])
    write_model(tmp_path, "kpi-candidate", shadow)
    catalog = catalog_for(tmp_path)
    assert catalog.get("models.kpi/shadow/value") is not None
    assert catalog.get("models.kpi/shadow/hot") is None  # shadows raise no alarms
    sink = Sink(catalog)
    svc = service(tmp_path, catalog, sink)
    await svc.reload()
    assert sorted((d["role"], d["version"]) for d in svc.describe()) == [
        ("active", "1"), ("shadow", "2-rc")]
    feed_cycles(svc, catalog, first_part=0, cycles=3)
    await svc.engine.tick(now=LATER)
    assert len(sink.samples("models.kpi/value")) == 2
    assert len(sink.samples("models.kpi/shadow/value")) == 2
    emitted = {catalog[int(i)].path for b in sink.batches for i in b.tag_ids}
    assert emitted == {"models.kpi/value", "models.kpi/shadow/value"}
    # removing the active model leaves the shadow running on its own
    (tmp_path / "kpi.yaml").unlink()
    await svc.reload()
    assert [d["role"] for d in svc.describe()] == ["shadow"]
    svc.close()


async def test_alarm_threshold_hysteresis_and_min_duration(tmp_path: Path) -> None:
    alarm = {"name": "high", "output": "value", "above": 5.0, "hysteresis": 1.0,
             "min_duration": "4s"}
    write_model(tmp_path, "kpi", identity_manifest(
        inputs=[{"tag": "plc.Temp", "aggregation": "last", "window": "1s"}],
        cycle=None, trigger={"on": "interval", "every": "1s", "settle": 0}, alarms=[alarm]))
    catalog = catalog_for(tmp_path)
    sink = Sink(catalog)
    events: list[AlarmEvent] = []
    svc = service(tmp_path, catalog, sink)
    svc.engine.on_alarm = events.append
    await svc.reload()
    temp = catalog.id_of("plc.Temp")
    # 1 s ticks; the value crosses 5 briefly (2 s), then for long, then drops in steps
    series = [4, 6, 6, 4, 6, 6, 6, 6, 6, 6, 4.5, 4.5, 3.9, 3.9, 6, 6]
    for i, value in enumerate(series):
        ts = (i + 1) * NS
        svc.engine.ingest(SampleBatch.of([temp], [float(value)], ts))
        await svc.engine.tick(now=ts)
    states = [(e.state, e.ts_ns // NS) for e in events]
    # raised once the condition held 4 s (from t=5 to t=9); cleared only below 4 (t=13)
    assert states == [("raised", 9), ("cleared", 13)]
    alarm_samples = sink.samples("models.kpi/high")
    assert [(t // NS, v) for t, v, _ in alarm_samples] == [(9, 1.0), (13, 0.0)]
    assert events[0].tag == "models.kpi/high" and events[0].as_dict()["model"] == "kpi"
    assert len(sink.samples("models.kpi/value")) == len(series) - 1
    svc.close()


async def test_new_output_tags_need_a_restart_and_inputs_must_exist(tmp_path: Path) -> None:
    catalog = catalog_for(tmp_path)  # declared before the model arrived
    sink = Sink(catalog)
    svc = service(tmp_path, catalog, sink)
    path = write_model(tmp_path, "kpi", identity_manifest())
    await svc.reload()
    assert "not in the tag catalog" in (svc.status[path].last_error or "")
    assert "restart" in (svc.status[path].last_error or "")
    other = tmp_path / "other"
    write_model(other, "kpi", identity_manifest(
        inputs=[{"tag": "plc.Nope", "aggregation": "last", "window": "1s"}]))
    catalog2 = catalog_for(other)
    svc2 = service(other, catalog2, Sink(catalog2))
    await svc2.reload()
    assert "input tag plc.Nope is not in the tag catalog" in (
        svc2.status[other / "kpi.yaml"].last_error or "")
    svc.close()
    svc2.close()


async def test_service_run_loads_ticks_and_watches(tmp_path: Path) -> None:
    import asyncio

    write_model(tmp_path, "kpi", identity_manifest(
        inputs=[{"tag": "plc.Temp", "aggregation": "count", "window": "10s"}],
        cycle=None, trigger={"on": "interval", "every": "50ms", "settle": 0}))
    catalog = catalog_for(tmp_path)
    sink = Sink(catalog)
    svc = service(tmp_path, catalog, sink, tick_interval=0.02)
    svc.watch_interval = 0.05
    task = asyncio.create_task(svc.run())
    try:
        await until(lambda: len(sink.samples("models.kpi/value")) >= 2, "two outputs")
        manifest = identity_manifest(version="2", inputs=[
            {"tag": "plc.Temp", "aggregation": "count", "window": "10s"}],
            cycle=None, trigger={"on": "interval", "every": "50ms", "settle": 0})
        write_model(tmp_path, "kpi", manifest)
        await until(lambda: svc.describe()[0]["version"] == "2",
                    "version 2 picked up by the folder watch")
    finally:
        task.cancel()
        with __import__("contextlib").suppress(asyncio.CancelledError):
            await task
        svc.close()


@pytest.mark.parametrize("seeded", [True, False])
async def test_a_model_loaded_late_starts_from_the_values_already_seen(
    tmp_path: Path, seeded: bool
) -> None:
    """Values reported by exception (a hold time that never changes) reached the pipeline
    before the model was loaded: the model's windows start from them, and the cycle
    counter's current value makes the next increment start the first cycle."""
    write_model(tmp_path, "kpi", identity_manifest(
        inputs=[{"tag": "plc.Temp", "aggregation": "last", "window": "cycle"}]))
    catalog = catalog_for(tmp_path)
    pipeline = Pipeline(catalog)
    temp, pc = catalog.id_of("plc.Temp"), catalog.id_of("plc.PartCount")
    pipeline.process(SampleBatch.of([temp, pc], [42.0, 5.0], NS))
    sink = Sink(catalog)
    svc = service(tmp_path, catalog, sink, current=pipeline.current if seeded else None)
    await svc.reload()
    for part, ts in ((6.0, 2 * NS), (7.0, 3 * NS), (8.0, 4 * NS)):  # only the counter moves
        svc.engine.ingest(SampleBatch.of([pc], [part], ts))
    await svc.engine.tick(now=LATER)
    c = svc.engine.counters[("kpi", "active")]
    if seeded:
        assert [(t, v) for t, v, _ in sink.samples("models.kpi/value")] == [
            (3 * NS, 42.0), (4 * NS, 42.0)]
        assert c.skipped == 0
    else:  # the held value is unknown to the windows; the first increment only sets prev
        assert sink.samples("models.kpi/value") == [] and c.skipped == 1
    svc.close()
