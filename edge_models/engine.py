"""The model engine: pipeline batches in, triggers, batched inference, output tags and alarms out.

Model outputs are ordinary tags of a synthetic device (``models`` by default):
``models.{model}/{output}``, shadow candidates ``models.{model}/shadow/{output}``,
alarms ``models.{model}/{alarm}`` (bool). They are declared from the manifests
when the gateway starts (:func:`model_device`), so they are in the tag catalog,
the birth, the pipeline and the spool like any tag.

:meth:`ModelEngine.ingest` runs on the event loop for every pipeline batch: it
appends to the ring buffers and notes cycle edges (vector ops only).
:meth:`ModelEngine.tick` computes the features of every inference due, runs each
model once for all of its due rows, and emits one output batch.

Where inference runs: in the single inference thread (:mod:`edge_models.worker`), so
a model never stalls drivers and publishing, except when every model due in a tick
has proven tiny: a model runs inline on the event loop while each of its last
:data:`RECENT_RUNS` runs (the load's smoke runs included) took less than the inline
budget (:data:`INLINE_BUDGET_S`, 500 µs) of CPU time (one of them may have gone up to
4x, a garbage collection or a page fault), and the tick's estimated total stays under
that budget. A thread hand-off costs two thread wake-ups and GIL hand-overs
(tens of µs idle, milliseconds on a busy 2-core box), more than such a model's run; and
500 µs is what the loop already spends on one pipeline batch of 10,000 tags. (A tiny
model's run measured back to back takes ~10 µs; once per tick, after the CPU did other
work, 50-200 µs: the budget is set for those cold runs.) A run over 4x the budget, or
a second run over the budget, sends its model to the thread until its last
:data:`RECENT_RUNS` runs qualify again, so a model that turns slow holds up the loop
for one run (two when it turns only a little slow, under 4x the budget), and a model
slow from the start never runs on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from edge_models.manifest import Manifest
from edge_models.runtime import LoadedModel
from edge_models.windows import AGGREGATION_CODES, WindowStore, cycle_edges
from edge_models.worker import InferenceWorker
from gateway.config.device import DeviceConfig, TagConfig
from gateway.errors import ModelLoadError
from gateway.tags import SEPARATOR, CatalogChange, TagCatalog
from gateway.types import GOOD_CODE, DataType, Quality, SampleBatch, now_ns

log = logging.getLogger(__name__)

ACTIVE, SHADOW = "active", "shadow"

#: a tick's inferences run inline on the event loop only when their estimated time is
#: below this (see the module doc); 0 turns inline runs off
INLINE_BUDGET_S = 500e-6
#: how many recent runs of a model the inline decision looks at
RECENT_RUNS = 64
#: one run over this many budgets sends a model to the thread at once
SLOW_FACTOR = 4


def output_tag(model: str, output: str, shadow: bool = False) -> str:
    """Tag name (inside the models device) of a model output or alarm."""
    return f"{model}/shadow/{output}" if shadow else f"{model}/{output}"


def model_tags(manifest: Manifest) -> list[TagConfig]:
    """The tags a manifest declares: its outputs (and alarms, unless it is a shadow)."""
    tags = [
        TagConfig(
            name=output_tag(manifest.name, o.name, manifest.shadow),
            type=DataType.FLOAT64,
            unit=o.unit,
            description=o.description or f"output of model {manifest.name}",
        )
        for o in manifest.outputs
    ]
    if not manifest.shadow:
        tags += [
            TagConfig(
                name=output_tag(manifest.name, a.name),
                type=DataType.BOOL,
                description=a.description or f"alarm of model {manifest.name} on {a.output}",
            )
            for a in manifest.alarms
        ]
    return tags


def model_device(name: str, manifests: Iterable[Manifest]) -> DeviceConfig | None:
    """The synthetic device holding every model output tag (None when there is none)."""
    tags: dict[str, TagConfig] = {}
    for manifest in manifests:
        for tag in model_tags(manifest):
            tags.setdefault(tag.name, tag)
    if not tags:
        return None
    return DeviceConfig(name=name, protocol="models", description="edge model outputs",
                        tags=list(tags.values()))


@dataclass(slots=True)
class ModelCounters:
    """Per model and role; read by /metrics."""

    inferences: int = 0  # rows inferred
    runs: int = 0  # session runs (one per model per tick)
    errors: int = 0  # runs that raised
    skipped: int = 0  # rows skipped for missing or bad inputs
    uncertain: int = 0  # rows published as uncertain
    inline_runs: int = 0  # session runs made on the event loop (the rest in the thread)
    latency_sum_s: float = 0.0
    last_latency_s: float = 0.0
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """An alarm raised or cleared."""

    model: str
    alarm: str
    tag: str
    state: str  # "raised" or "cleared"
    value: float
    ts_ns: int

    def as_dict(self) -> dict[str, object]:
        return {"model": self.model, "alarm": self.alarm, "tag": self.tag, "state": self.state,
                "value": self.value, "ts": self.ts_ns // 1_000_000}


@dataclass(slots=True)
class _Alarm:
    name: str
    column: int
    tag_id: int
    above: float | None
    below: float | None
    hysteresis: float
    min_duration_ns: int
    active: bool = False
    pending_since: int | None = None

    def update(self, value: float, ts: int) -> bool | None:
        """Feed one output value; return the new state when it changed."""
        if not np.isfinite(value):
            return None
        if self.above is not None:
            set_, clear = value > self.above, value < self.above - self.hysteresis
        else:
            assert self.below is not None
            set_, clear = value < self.below, value > self.below + self.hysteresis
        if self.active:
            if clear:
                self.active, self.pending_since = False, None
                return False
            return None
        if not set_:
            self.pending_since = None
            return None
        if self.pending_since is None:
            self.pending_since = ts
        if ts - self.pending_since >= self.min_duration_ns:
            self.active = True
            return True
        return None


@dataclass(slots=True)
class _Installed:
    model: LoadedModel
    output_ids: np.ndarray
    counters: ModelCounters
    #: CPU seconds per run and rows of the last runs: the inline decision
    recent: deque[tuple[float, int]] = field(
        default_factory=lambda: deque(maxlen=RECENT_RUNS))

    def inline_cost(self, rows: int, budget: float) -> float:
        """Estimated seconds of a run of ``rows`` rows; ``inf`` when it must not run inline:
        too few runs seen, two of the recent runs took ``budget`` or more, or one took
        :data:`SLOW_FACTOR` times that. (One run just over the budget is forgiven: a
        garbage collection or a page fault inside a tiny model's run.)"""
        if len(self.recent) < 3:
            return float("inf")
        times = sorted([s for s, _ in self.recent])
        if times[-2] >= budget or times[-1] >= SLOW_FACTOR * budget:
            return float("inf")
        if rows == 1:
            return times[-2]
        return times[-2] * max(1.0, rows / max([n for _, n in self.recent]))


@dataclass(slots=True)
class _Slot:
    """One model name: its triggers and windows; the active model and a shadow candidate."""

    name: str
    spec: Manifest  # the manifest triggers and windows follow (the active's, else the shadow's)
    input_slots: np.ndarray
    codes: np.ndarray
    durations_ns: np.ndarray  # 0 for cycle windows
    scale: np.ndarray
    offset: np.ndarray
    fill: np.ndarray
    cycle_key: tuple[int, str] | None
    every_ns: int
    settle_ns: int
    roles: dict[str, _Installed] = field(default_factory=dict)
    alarms: list[_Alarm] = field(default_factory=list)
    last_due_ns: int = 0
    cycle_bounds: tuple[int, int] | None = None  # the last complete cycle


@dataclass(slots=True)
class _Due:
    slot: str
    end_ns: int
    cycle: tuple[int, int] | None


class ModelEngine:
    """Runs the installed models on the tags flowing through the pipeline."""

    def __init__(
        self,
        catalog: TagCatalog,
        device: str,
        emit: Callable[[SampleBatch], None],
        on_alarm: Callable[[AlarmEvent], None] | None = None,
        capacity: int = 4096,
        clock: Callable[[], int] = now_ns,
        inline_budget_s: float = INLINE_BUDGET_S,
        current: Callable[[np.ndarray], SampleBatch] | None = None,
    ) -> None:
        """``current(tag_ids)``: the last samples already seen of those tags; a model
        loaded late starts from them (values reported by exception may not come again)."""
        self.catalog = catalog
        self.current = current
        self.inline_budget_s = inline_budget_s
        self.device = device
        self.emit = emit
        self.on_alarm = on_alarm
        self.clock = clock
        self.windows = WindowStore(len(catalog), capacity)
        self.slots: dict[str, _Slot] = {}
        #: counters survive swaps: keyed by (model name, role)
        self.counters: dict[tuple[str, str], ModelCounters] = {}
        self._pending: list[_Due] = []
        # cycle tags: tag id -> last value; (tag id, edge) -> last edge time
        self._cycle_prev: dict[int, float] = {}
        self._cycle_last: dict[tuple[int, str], int] = {}

    # --- a live config change -------------------------------------------------------------------
    def revise(self, catalog: TagCatalog, change: CatalogChange) -> None:
        """Follow a new tag catalog (ids of tags that stay do not move): the windows grow to
        the new ids, those of redefined or removed tags start empty."""
        self.catalog = catalog
        self.windows.grow(len(catalog))
        self.windows.forget(change.redefined + change.retired)

    def tags_read(self) -> dict[str, list[str]]:
        """Per model in service: the tag paths it reads (inputs and cycle tag)."""
        read: dict[str, list[str]] = {}
        for slot in self.slots.values():
            for installed in slot.roles.values():
                m = installed.model.manifest
                paths = [i.tag for i in m.inputs] + ([m.cycle.tag] if m.cycle else [])
                read.setdefault(m.name, [])
                read[m.name] += [p for p in paths if p not in read[m.name]]
        return read

    # --- installing models ------------------------------------------------------------------
    def install(self, model: LoadedModel) -> LoadedModel | None:
        """Put a validated model in service (replacing the one of the same name and role,
        which is returned). Raises :class:`ModelLoadError` when its tags are unknown."""
        m = model.manifest
        role = model.role
        out_ids = self._output_ids(m)
        slot = self.slots.get(m.name)
        if role == SHADOW and slot is not None and ACTIVE in slot.roles:
            active = slot.roles[ACTIVE].model.manifest
            if [i.model_dump() for i in active.inputs] != [i.model_dump() for i in m.inputs] or \
                    active.trigger != m.trigger or active.cycle != m.cycle:
                raise ModelLoadError(
                    f"shadow model {m.name}: its inputs, trigger and cycle must equal the "
                    "active model's (it runs on the same features)"
                )
        new_slot = self._build_slot(m) if role == ACTIVE or slot is None else slot
        if slot is not None and new_slot is not slot:
            new_slot.roles = {r: i for r, i in slot.roles.items() if r != ACTIVE}
            new_slot.last_due_ns, new_slot.cycle_bounds = slot.last_due_ns, slot.cycle_bounds
            old_alarms = {a.name: a for a in slot.alarms}
            for alarm in new_slot.alarms:  # keep the state of alarms that still exist
                old = old_alarms.get(alarm.name)
                if old is not None:
                    alarm.active, alarm.pending_since = old.active, old.pending_since
        counters = self.counters.setdefault((m.name, role), ModelCounters())
        previous = new_slot.roles.get(role) if new_slot is slot else (
            slot.roles.get(role) if slot is not None else None)
        installed = _Installed(model, out_ids, counters)
        installed.recent.extend(model.smoke_runs)
        new_slot.roles[role] = installed
        self.slots[m.name] = new_slot
        return previous.model if previous is not None else None

    def remove(self, name: str, role: str) -> None:
        slot = self.slots.get(name)
        if slot is None:
            return
        slot.roles.pop(role, None)
        if not slot.roles:
            del self.slots[name]
        elif role == ACTIVE:  # the shadow stays, on its own manifest's triggers
            rest = self._build_slot(slot.roles[SHADOW].model.manifest)
            rest.roles = slot.roles
            self.slots[name] = rest

    def models(self) -> list[LoadedModel]:
        return [i.model for s in self.slots.values() for i in s.roles.values()]

    def _path(self, tag: str) -> str:
        return f"{self.device}{SEPARATOR}{tag}"

    def _tag_id(self, path: str, what: str) -> int:
        info = self.catalog.get(path)
        if info is None:
            raise ModelLoadError(f"{what} {path} is not in the tag catalog")
        return info.id

    def _output_ids(self, m: Manifest) -> np.ndarray:
        hint = " (new output tags need a gateway restart)"
        try:
            return np.array(
                [self._tag_id(self._path(output_tag(m.name, o.name, m.shadow)), "output tag")
                 for o in m.outputs], np.int32)
        except ModelLoadError as exc:
            raise ModelLoadError(f"model {m.name}: {exc}{hint}") from None

    def _build_slot(self, m: Manifest) -> _Slot:
        ids = [self._tag_id(i.tag, f"model {m.name}: input tag") for i in m.inputs]
        cycle_key = None
        if m.cycle is not None:
            cycle_id = self._tag_id(m.cycle.tag, f"model {m.name}: cycle tag")
            cycle_key = (cycle_id, m.cycle.edge)
            ids.append(cycle_id)
        alarms = []
        if not m.shadow:
            columns = {o.name: c for c, o in enumerate(m.outputs)}
            for a in m.alarms:
                alarm_id = self._tag_id(self._path(output_tag(m.name, a.name)),
                                        f"model {m.name}: alarm tag")
                alarms.append(_Alarm(a.name, columns[a.output], alarm_id, a.above, a.below,
                                     a.hysteresis, int(a.min_duration * 1e9)))
        self._watch(ids, cycle_key)
        return _Slot(
            name=m.name,
            spec=m,
            input_slots=np.array([self.windows.slot(t) for t in ids[: len(m.inputs)]]),
            codes=np.array([AGGREGATION_CODES[i.aggregation] for i in m.inputs]),
            durations_ns=np.array([0 if i.window == "cycle" else int(float(i.window) * 1e9)
                                   for i in m.inputs], np.int64),
            scale=np.array([i.scale for i in m.inputs]),
            offset=np.array([i.offset for i in m.inputs]),
            fill=np.array([i.fill for i in m.inputs]),
            cycle_key=cycle_key,
            every_ns=int((m.trigger.every or 0) * 1e9),
            settle_ns=int(m.trigger.settle * 1e9),
            alarms=alarms,
        )

    def _watch(self, ids: list[int], cycle_key: tuple[int, str] | None) -> None:
        """Buffer these tags; tags new to the windows start from their current values."""
        new = [t for t in dict.fromkeys(ids) if self.windows.slot(t) < 0]
        self.windows.watch(ids)
        if not new or self.current is None:
            return
        seen = self.current(np.array(new, np.int64))
        self.windows.append(seen)
        if cycle_key is not None and cycle_key[0] not in self._cycle_prev:
            good = (seen.tag_ids == cycle_key[0]) & (seen.quality == GOOD_CODE)
            if good.any():  # the next edge then starts the first complete cycle
                self._cycle_prev[cycle_key[0]] = float(seen.values[good][-1])

    # --- hot path ------------------------------------------------------------------------------
    def ingest(self, batch: SampleBatch) -> None:
        """Buffer a pipeline batch and note the cycles it ends."""
        if not len(batch) or not self.slots:
            return
        self.windows.append(batch)
        keys = {s.cycle_key for s in self.slots.values() if s.cycle_key is not None}
        if not keys:
            return
        for tag_id in {k[0] for k in keys}:
            sel = batch.tag_ids == tag_id
            if not sel.any():
                continue
            sub = batch.select(sel & (batch.quality == GOOD_CODE))
            if not len(sub):
                continue
            order = np.argsort(sub.ts_ns, kind="stable")
            values = sub.values[order].astype(np.float64)
            ts = sub.ts_ns[order]
            prev = self._cycle_prev.get(tag_id, np.nan)
            self._cycle_prev[tag_id] = float(values[-1])
            for edge in {k[1] for k in keys if k[0] == tag_id}:
                for end in ts[cycle_edges(prev, values, edge)].tolist():
                    self._cycle_edge((tag_id, edge), int(end))

    def _cycle_edge(self, key: tuple[int, str], end: int) -> None:
        start = self._cycle_last.get(key)
        self._cycle_last[key] = end
        if start is None:
            return  # the first edge seen starts the first complete cycle
        for slot in self.slots.values():
            if slot.cycle_key != key:
                continue
            slot.cycle_bounds = (start, end)
            if slot.spec.trigger.on == "cycle":
                self._pending.append(_Due(slot.name, end, (start, end)))

    def due(self, now: int | None = None) -> list[_Due]:
        """Take the inferences due at ``now``: cycle ends past their settle time, interval
        triggers whose time came (missed intervals are not caught up)."""
        now = self.clock() if now is None else now
        ready: list[_Due] = []
        waiting: list[_Due] = []
        for d in self._pending:
            slot = self.slots.get(d.slot)
            if slot is None:
                continue
            (ready if d.end_ns + slot.settle_ns <= now else waiting).append(d)
        self._pending = waiting
        for slot in self.slots.values():
            if slot.every_ns:
                t = (now - slot.settle_ns) // slot.every_ns * slot.every_ns
                if t > slot.last_due_ns:
                    if slot.last_due_ns:
                        ready.append(_Due(slot.name, t, slot.cycle_bounds))
                    slot.last_due_ns = t
        return ready

    def features(self, slot: _Slot, dues: list[_Due]) -> tuple[np.ndarray, np.ndarray]:
        """``[rows, inputs]`` features (scaled) and a per-row 'all inputs good' mask."""
        n, k = len(dues), len(slot.input_slots)
        # per row (a column): the trigger time, and the cycle's bounds (the trigger time
        # when the row has no cycle); per input (a row): its duration, 0 for cycle windows
        end = np.array([[d.end_ns for d in dues]], np.int64)
        cyc_start = np.array([[d.cycle[0] if d.cycle else d.end_ns for d in dues]], np.int64)
        cyc_end = np.array([[d.cycle[1] if d.cycle and d.cycle[1] > 0 else d.end_ns
                             for d in dues]], np.int64)
        dur = slot.durations_ns[:, None]
        is_cycle = dur == 0
        start = np.where(is_cycle, cyc_start, end - dur)  # [k, n]
        stop = np.where(is_cycle, cyc_end, end)
        size = (k, n)
        raw = self.windows.aggregate(np.broadcast_to(slot.input_slots[:, None], size).ravel(),
                                     start.ravel(), np.broadcast_to(stop, size).ravel(),
                                     np.broadcast_to(slot.codes[:, None], size).ravel())
        x = raw.reshape(k, n).T * slot.scale + slot.offset
        return x, np.isfinite(x).all(axis=1)

    async def tick(self, executor: Executor | None = None, now: int | None = None) -> int:
        """Run every inference due; emit the outputs. Returns the number of output samples."""
        dues = self.due(now)
        if not dues:
            return 0
        jobs: list[tuple[_Slot, list[_Due], np.ndarray, np.ndarray]] = []
        by_slot: dict[str, list[_Due]] = {}
        for d in dues:
            by_slot.setdefault(d.slot, []).append(d)
        for name, slot_dues in by_slot.items():
            slot = self.slots[name]
            x, ok = self.features(slot, slot_dues)
            jobs.append((slot, slot_dues, x, ok))
        if self._inline(jobs):
            results = self._infer_all(jobs, inline=True)
        elif isinstance(executor, InferenceWorker):
            results = await executor.call(self._infer_all, jobs)
        else:
            loop = asyncio.get_running_loop()
            results = await loop.run_in_executor(executor, self._infer_all, jobs)
        return self._publish(results)

    def _inline(self, jobs: list[tuple[_Slot, list[_Due], np.ndarray, np.ndarray]]) -> bool:
        """Whether this tick's runs are small enough for the event loop (module doc)."""
        budget = self.inline_budget_s
        if budget <= 0:
            return False
        total = 0.0
        for slot, dues, _, _ in jobs:
            for installed in slot.roles.values():
                total += installed.inline_cost(len(dues), budget)
                if total >= budget:
                    return False
        return True

    def _infer_all(self, jobs: list[tuple[_Slot, list[_Due], np.ndarray, np.ndarray]],
                   inline: bool = False
                   ) -> list[tuple[_Slot, _Installed, list[_Due], np.ndarray, np.ndarray]]:
        """One run per model and role for all its due rows (in the inference thread, or
        inline on the loop)."""
        out = []
        for slot, dues, x, ok in jobs:
            for installed in list(slot.roles.values()):
                c = installed.counters
                all_ok = bool(ok.all())
                if all_ok:  # the usual case
                    rows, xi = ok, x
                else:
                    bad_mode = installed.model.manifest.on_bad_input
                    rows = np.ones(len(x), bool) if bad_mode == "uncertain" else ok
                    c.skipped += int((~rows).sum())
                    if not rows.any():
                        continue
                    xi = np.where(np.isfinite(x[rows]), x[rows], slot.fill)
                start, cpu = time.perf_counter(), time.thread_time()
                try:
                    y = installed.model.run(xi)
                except Exception as exc:  # a model that raises must not stop anything else
                    c.errors += 1
                    c.last_error = str(exc)
                    if c.errors == 1 or c.errors % 100 == 0:
                        log.error("model %s (%s): %s [%d errors]", slot.name,
                                  installed.model.role, exc, c.errors)
                    continue
                finally:
                    elapsed = time.perf_counter() - start
                    c.latency_sum_s += elapsed
                    c.last_latency_s = elapsed
                    c.runs += 1
                    c.inline_runs += inline
                    # CPU time: in the thread, waits for the GIL would inflate wall time
                    installed.recent.append((time.thread_time() - cpu, len(xi)))
                c.inferences += len(xi)
                if all_ok:
                    out.append((slot, installed, dues, y, ok))
                    continue
                c.uncertain += int((~ok[rows]).sum())
                kept = [d for d, r in zip(dues, rows, strict=True) if r]
                out.append((slot, installed, kept, y, ok[rows]))
        return out

    def _publish(self, results: list[tuple[_Slot, _Installed, list[_Due], np.ndarray,
                                           np.ndarray]]) -> int:
        parts: list[SampleBatch] = []
        for slot, installed, dues, y, ok in results:
            n, k = y.shape
            ts = np.array([d.end_ns for d in dues], np.int64)
            quality = np.where(ok, Quality.GOOD, Quality.UNCERTAIN).astype(np.uint8)
            parts.append(SampleBatch(
                np.tile(installed.output_ids, n), y.reshape(-1), np.repeat(ts, k),
                np.repeat(quality, k)))
            if installed.model.role == ACTIVE:
                parts.extend(self._alarms(slot, y, ts, ok))
        batch = SampleBatch.concat(parts)
        if len(batch):
            self.emit(batch)
        return len(batch)

    def _alarms(self, slot: _Slot, y: np.ndarray, ts: np.ndarray, ok: np.ndarray
                ) -> list[SampleBatch]:
        out = []
        for alarm in slot.alarms:
            for i in np.flatnonzero(ok).tolist():  # one step per inference, not per sample
                state = alarm.update(float(y[i, alarm.column]), int(ts[i]))
                if state is None:
                    continue
                out.append(SampleBatch.of([alarm.tag_id], [float(state)], int(ts[i])))
                event = AlarmEvent(slot.name, alarm.name, self.catalog[alarm.tag_id].path,
                                   "raised" if state else "cleared",
                                   float(y[i, alarm.column]), int(ts[i]))
                log.warning("alarm %s %s (value %g)", event.tag, event.state, event.value)
                if self.on_alarm is not None:
                    self.on_alarm(event)
        return out
