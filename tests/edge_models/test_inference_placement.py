"""Where inference runs: tiny models inline on the loop, slow ones in the inference thread,
and a slow model never holds up the event loop for more than one run."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_models.engine import INLINE_BUDGET_S, RECENT_RUNS, SLOW_FACTOR, _Installed
from gateway.types import SampleBatch

from .helpers import NS, Sink, catalog_for, identity_manifest, service, write_model

BLOB = b"x" * 2_000_000  # hashing it burns ~1-5 ms of CPU without holding the GIL
SLOW_S = 0.3  # CPU seconds of a slow run: far over the budget, far over OS scheduling hiccups


class SlowSession:
    """A real session that burns CPU (GIL released, like onnxruntime) before each run."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def run(self, names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        start = time.thread_time()
        while time.thread_time() - start < SLOW_S:
            hashlib.sha256(BLOB).digest()
        return self.real.run(names, feed)


def interval_model(tmp_path: Path) -> None:
    write_model(tmp_path, "kpi", identity_manifest(
        inputs=[{"tag": "plc.Temp", "aggregation": "last", "window": "1s"}],
        cycle=None, trigger={"on": "interval", "every": "1s", "settle": 0}))


async def tick_watching_the_loop(svc: Any, now: int) -> tuple[int, int, float]:
    """Run one tick while a task beats every millisecond on the loop: the output samples,
    the beats made while the tick was in progress, and the tick's duration."""
    during = [False, 0]
    stop = asyncio.Event()

    async def heartbeat() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.001)  # the beat: counts loop turns, nothing waits on it
            during[1] += during[0]

    beat = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.005)  # the heartbeat in its stride before the tick; no assertion
    during[0] = True
    start = time.perf_counter()
    emitted = await svc.engine.tick(svc.executor, now=now)
    took = time.perf_counter() - start
    during[0] = False
    stop.set()
    await beat
    return emitted, int(during[1]), took


async def test_a_slow_model_is_moved_off_the_loop_after_one_run(tmp_path: Path) -> None:
    interval_model(tmp_path)
    catalog = catalog_for(tmp_path)
    sink = Sink(catalog)
    svc = service(tmp_path, catalog, sink)
    await svc.reload()
    temp = catalog.id_of("plc.Temp")
    c = svc.engine.counters[("kpi", "active")]
    model = svc.engine.models()[0]

    async def step(i: int) -> tuple[int, int, float]:
        svc.engine.ingest(SampleBatch.of([temp], [float(i)], i * NS))
        return await tick_watching_the_loop(svc, i * NS)

    for i in range(1, 4):  # the first interval arms the trigger; then a run per tick
        await step(i)
    assert (c.runs, c.inline_runs) == (2, 2)  # tiny: inline, no hand-off
    assert SLOW_S > SLOW_FACTOR * INLINE_BUDGET_S
    model.session = SlowSession(model.session)  # the model turns slow
    _, beats, took = await step(4)  # its first slow run is inline: the documented bound
    assert (c.runs, c.inline_runs) == (3, 3)
    assert beats == 0 and took >= SLOW_S  # the loop was held for that run
    for i in range(5, 8):
        emitted, beats, took = await step(i)
        assert emitted == 1 and took >= SLOW_S
        assert beats >= 5  # the loop kept running while the model ran
    assert (c.runs, c.inline_runs) == (6, 3)  # in the thread from then on
    values = [v for _, v, _ in sink.samples("models.kpi/value")]
    assert values == [2.0, 3.0, 4.0, 5.0, 6.0, 7.0]  # every output, in order
    svc.close()


async def test_inline_off_runs_everything_in_the_thread(tmp_path: Path) -> None:
    interval_model(tmp_path)
    catalog = catalog_for(tmp_path)
    sink = Sink(catalog)
    svc = service(tmp_path, catalog, sink)
    svc.engine.inline_budget_s = 0.0
    await svc.reload()
    temp = catalog.id_of("plc.Temp")
    for i in range(1, 6):
        svc.engine.ingest(SampleBatch.of([temp], [float(i)], i * NS))
        await svc.engine.tick(svc.executor, now=i * NS)
    c = svc.engine.counters[("kpi", "active")]
    assert (c.runs, c.inline_runs) == (4, 0)
    assert [v for _, v, _ in sink.samples("models.kpi/value")] == [2.0, 3.0, 4.0, 5.0]
    families = {f.name: f for f in svc.metrics()}
    inline = families["chenxing_model_inline_runs"].samples
    assert [(s.labels["model"], s.value) for s in inline] == [("kpi", 0)]
    svc.close()


def test_inline_decision() -> None:
    budget = 500e-6
    inst = _Installed(model=None, output_ids=np.zeros(1), counters=None)  # type: ignore[arg-type]
    assert inst.inline_cost(1, budget) == float("inf")  # nothing measured yet
    inst.recent.extend([(20e-6, 1), (30e-6, 2), (25e-6, 1)])
    assert inst.inline_cost(1, budget) == pytest.approx(25e-6)  # the second slowest
    assert inst.inline_cost(20, budget) == pytest.approx(250e-6)  # scaled past rows seen
    inst.recent.append((1.5 * budget, 1))  # one run a little over: forgiven (a GC pause)
    assert inst.inline_cost(1, budget) == pytest.approx(30e-6)
    inst.recent.append((budget, 1))  # a second one: off the loop
    assert inst.inline_cost(1, budget) == float("inf")
    inst.recent.extend([(10e-6, 1)] * (RECENT_RUNS - 1))
    assert inst.inline_cost(1, budget) == pytest.approx(10e-6)  # one left among the last
    inst.recent.append((SLOW_FACTOR * budget, 1))  # far over: off the loop at once
    assert inst.inline_cost(1, budget) == float("inf")
    inst.recent.extend([(10e-6, 1)] * (RECENT_RUNS - 1))
    assert inst.inline_cost(1, budget) == float("inf")  # still among the last runs
    inst.recent.append((10e-6, 1))
    assert inst.inline_cost(1, budget) == pytest.approx(10e-6)  # back after RECENT_RUNS runs
