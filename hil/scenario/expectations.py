"""Evaluate a scenario's expectations against what the recorder received."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from gateway.plural import plural
from hil.recorder import ReceivedSample
from hil.scenario.commands import CommandRecord
from hil.scenario.firmware import FirmwareRecord
from hil.scenario.model import (
    CommandRoundTrip,
    DeviceDeathRebirth,
    Expectation,
    FirmwareUpdateExpect,
    LatencyP99,
    MaxGap,
    ModelAlarm,
    NoSequenceGaps,
    ResourceGrowth,
    TagQuality,
    TagValue,
)
from hil.scenario.resources import ResourceSample, growth_per_run

__all__ = ["ExpectationResult", "Recording", "describe", "evaluate"]


@dataclass(frozen=True, slots=True)
class Recording:
    """What arrived over MQTT, with ``t0`` (epoch seconds of the first birth) as time zero."""

    t0: float
    births: list[dict[str, Any]]
    deaths: list[dict[str, Any]]
    data_messages: list[dict[str, Any]]
    samples: list[ReceivedSample]
    resources: list[ResourceSample] = field(default_factory=list)
    commands: list[CommandRecord] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    firmware: list[FirmwareRecord] = field(default_factory=list)
    #: JSON device messages (a device up or down within a session)
    devices: list[dict[str, Any]] = field(default_factory=list)

    def rel(self, ts_ms: float) -> float:
        """Seconds after ``t0``."""
        return ts_ms / 1000.0 - self.t0


@dataclass(frozen=True, slots=True)
class ExpectationResult:
    """One expectation: its one-line description, verdict and why."""

    name: str
    passed: bool
    detail: str


def describe(exp: Expectation) -> str:
    """A one-line description of an expectation."""
    win = getattr(exp, "between", None)
    within = f" in [{win[0]:g}, {win[1]:g}] s" if win else ""
    match exp:
        case TagValue():
            return f"{exp.tag} = {exp.value:g} ± {exp.tolerance:g}{within}"
        case TagQuality():
            return f"{exp.tag} quality {exp.quality} seen{within}"
        case LatencyP99():
            return f"latency p99 of {exp.tag_prefix or 'all tags'} < {exp.max:g} s{within}"
        case NoSequenceGaps():
            runs = f" over {exp.sessions} gateway runs" if exp.sessions else ""
            return f"no sequence gaps{runs}"
        case DeviceDeathRebirth():
            return f"device {exp.device} death and rebirth observed{within}"
        case ModelAlarm():
            verb = "" if exp.raised else "not "
            return f"model alarm {exp.tag} {verb}raised (>= {exp.threshold:g}){within}"
        case CommandRoundTrip():
            also = "".join(
                [", seen in telemetry" if exp.telemetry else "", ", held by the device"
                 if exp.on_device else ""]
            )
            return f"command {exp.command} {exp.status} within {exp.within:g} s{also}"
        case ResourceGrowth():
            return f"gateway growth < {exp.max_rss_mb:g} MB RSS and <= {exp.max_fds} fds per run"
        case MaxGap():
            return f"no gap > {exp.max:g} s in {exp.tag_prefix}*{within}"
        case FirmwareUpdateExpect():
            parts = [f"firmware update {exp.update} {exp.outcome}"]
            if exp.version:
                parts.append(f"running {exp.version}")
            if exp.within is not None:
                parts.append(f"within {exp.within:g} s")
            if exp.resume_within is not None:
                parts.append(f"readings again within {exp.resume_within:g} s")
            return ", ".join(parts)
    return exp.type  # pragma: no cover


def _in_window(rec: Recording, ts_ms: float, between: tuple[float, float] | None) -> bool:
    if between is None:
        return True
    t = rec.rel(ts_ms)
    return between[0] <= t <= between[1]


def _tag_samples(
    rec: Recording, tag: str, between: tuple[float, float] | None
) -> list[ReceivedSample]:
    return [s for s in rec.samples if s.tag == tag and _in_window(rec, s.ts_ms, between)]


def _is_number(value: object) -> bool:
    """A sample value ``float()`` takes (a tag of text values is no number to compare)."""
    return isinstance(value, int | float)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, math.ceil(q * len(ordered)) - 1)
    return ordered[k]


def evaluate(exp: Expectation, rec: Recording) -> ExpectationResult:
    """Check one expectation; the detail says what was measured and, on failure, why."""
    name = describe(exp)
    match exp:
        case TagValue():
            samples = [s for s in _tag_samples(rec, exp.tag, exp.between) if s.quality == "good"]
            if len(samples) < exp.min_samples:
                return ExpectationResult(
                    name,
                    False,
                    f"{len(samples)} good samples of {exp.tag} "
                    f"arrived, expected at least {exp.min_samples}",
                )
            text = next((s for s in samples if not _is_number(s.value)), None)
            if text is not None:
                return ExpectationResult(
                    name,
                    False,
                    f"{exp.tag} was {text.value!r} at t={rec.rel(text.ts_ms):.2f} s: not a number",
                )
            worst = max(samples, key=lambda s: abs(float(s.value) - exp.value))
            dev = abs(float(worst.value) - exp.value)
            where = f"at t={rec.rel(worst.ts_ms):.2f} s"
            if dev > exp.tolerance:
                return ExpectationResult(
                    name,
                    False,
                    f"{exp.tag} was {worst.value:g} {where}: "
                    f"off by {dev:g} > tolerance {exp.tolerance:g} "
                    f"({len(samples)} samples)",
                )
            return ExpectationResult(
                name, True, f"{len(samples)} samples, worst {worst.value:g} {where}"
            )
        case TagQuality():
            samples = [
                s for s in _tag_samples(rec, exp.tag, exp.between) if s.quality == exp.quality
            ]
            ok = len(samples) >= exp.min_samples
            first = f", first at t={rec.rel(samples[0].ts_ms):.2f} s" if samples else ""
            return ExpectationResult(
                name,
                ok,
                f"{len(samples)} {exp.quality} samples{first}"
                + ("" if ok else f", expected at least {exp.min_samples}"),
            )
        case LatencyP99():
            lat = [
                s.received_ns / 1e9 - s.ts_ms / 1000.0
                for s in rec.samples
                if s.tag.startswith(exp.tag_prefix) and _in_window(rec, s.ts_ms, exp.between)
            ]
            if not lat:
                return ExpectationResult(name, False, "no samples to measure")
            p99 = _percentile(lat, 0.99)
            ok = p99 < exp.max
            return ExpectationResult(
                name,
                ok,
                f"p99 {p99 * 1000:.0f} ms over {len(lat)} samples"
                + ("" if ok else f", bound {exp.max * 1000:.0f} ms"),
            )
        case NoSequenceGaps():
            return _no_gaps(exp, rec, name)
        case DeviceDeathRebirth():
            return _death_rebirth(exp, rec, name)
        case ModelAlarm():
            hits = [
                s
                for s in _tag_samples(rec, exp.tag, exp.between)
                if s.quality == "good" and _is_number(s.value) and float(s.value) >= exp.threshold
            ]
            if not exp.raised:
                if hits:
                    return ExpectationResult(
                        name, False, f"raised at t={rec.rel(hits[0].ts_ms):.2f} s"
                    )
                return ExpectationResult(name, True, f"not raised (value >= {exp.threshold:g})")
            if not hits:
                return ExpectationResult(
                    name, False, f"no value of {exp.tag} >= {exp.threshold:g} arrived"
                )
            raised = [
                e for e in rec.events
                if e.get("tag") == exp.tag and e.get("state") == "raised"
                and _in_window(rec, e.get("ts", 0), exp.between)
            ]
            event = f", event at t={rec.rel(raised[0]['ts']):.2f} s" if raised else ", no event"
            return ExpectationResult(
                name, True, f"raised at t={rec.rel(hits[0].ts_ms):.2f} s{event}"
            )
        case CommandRoundTrip():
            return _command_round_trip(exp, rec, name)
        case ResourceGrowth():
            return _resource_growth(exp, rec, name)
        case MaxGap():
            return _max_gap(exp, rec, name)
        case FirmwareUpdateExpect():
            return _firmware_update(exp, rec, name)
    raise AssertionError(exp)  # pragma: no cover


def _no_gaps(exp: NoSequenceGaps, rec: Recording, name: str) -> ExpectationResult:
    by_session: dict[int, set[int]] = defaultdict(set)
    for m in rec.data_messages:
        by_session[m["session"]].add(m["seq"])
    first_birth: dict[int, int] = {}
    for b in rec.births:
        first_birth.setdefault(b["session"], b["seq"])
    if not by_session:
        return ExpectationResult(name, False, "no data message arrived")
    problems: list[str] = []
    total = 0
    for session, seqs in sorted(by_session.items()):
        lo, hi = min(seqs), max(seqs)
        total += len(seqs)
        missing = sorted(set(range(lo, hi + 1)) - seqs)
        if missing:
            problems.append(f"session {session}: {len(missing)} lost, first {missing[:5]}")
        head = first_birth.get(session)
        if head is not None and lo > head:
            problems.append(f"session {session}: seq {head}..{lo - 1} never arrived")
    if exp.sessions is not None and len(by_session) != exp.sessions:
        problems.append(f"{plural(len(by_session), 'gateway run')}, expected {exp.sessions}")
    if problems:
        return ExpectationResult(name, False, "; ".join(problems))
    return ExpectationResult(
        name, True, f"{plural(total, 'data message')} in {plural(len(by_session), 'run')}")


def _states_reported(rec: Recording, device: str) -> list[tuple[int, str]]:
    """``(ts ms, state)`` of ``device`` as births and device messages reported it, in time
    order (a birth lists every device; a device message says one device's change)."""
    reports = [(b["ts"], d["state"]) for b in rec.births for d in b.get("devices", [])
               if d.get("name") == device]  # fmt: skip
    reports += [(m["ts"], m["device"]["state"]) for m in rec.devices
                if m.get("device", {}).get("name") == device]  # fmt: skip
    return sorted(reports, key=lambda r: r[0])


def _death_rebirth(exp: DeviceDeathRebirth, rec: Recording, name: str) -> ExpectationResult:
    down_at: float | None = None
    was_up = False  # a device is reported down before its first connect: not a death
    for ts, state in _states_reported(rec, exp.device):  # reports before the window
        if not _in_window(rec, ts, exp.between):  # still tell whether the device was up
            if down_at is None and rec.rel(ts) < (exp.between or (0, 0))[0]:
                was_up = state == "up"
            continue
        if state == "up" and down_at is None:
            was_up = True
        elif state != "up" and was_up and down_at is None:
            down_at = rec.rel(ts)
        elif state == "up" and down_at is not None:
            return ExpectationResult(
                name, True, f"down at t={down_at:.2f} s, up again at t={rec.rel(ts):.2f} s"
            )
    if down_at is None:
        return ExpectationResult(name, False, f"no birth or device message reported "
                                              f"{exp.device} down")
    return ExpectationResult(name, False, f"{exp.device} down at t={down_at:.2f} s, never up again")


def _command_round_trip(exp: CommandRoundTrip, rec: Recording, name: str) -> ExpectationResult:
    cmd = next((c for c in rec.commands if c.name == exp.command), None)
    if cmd is None:
        return ExpectationResult(name, False, f"command {exp.command} was never sent")
    if cmd.result is None or cmd.answered_at is None:
        return ExpectationResult(
            name, False, f"no cmd-result for {cmd.id} (sent at t={cmd.sent_at:.2f} s)"
        )
    took = cmd.answered_at - cmd.sent_at
    status = cmd.result.get("status")
    if status != exp.status:
        reasons = "; ".join(
            f"{w.get('tag')}: {w.get('status')} ({w.get('reason')})"
            for w in cmd.result.get("results") or []
        )
        return ExpectationResult(
            name, False, f"cmd-result {status}: {cmd.result.get('reason')}; {reasons}"
        )
    if took > exp.within:
        return ExpectationResult(
            name, False, f"cmd-result {status} after {took:.2f} s > {exp.within:g} s"
        )
    detail = f"{status} after {took * 1000:.0f} ms"
    if exp.telemetry:
        after = [
            s for s in rec.samples
            if s.tag == cmd.tag and s.quality == "good" and rec.rel(s.ts_ms) >= cmd.sent_at
        ]
        hit = next((s for s in after if _close(s.value, cmd.value, exp.tolerance)), None)
        if hit is None:
            last = f"; last value {after[-1].value!r}" if after else "; no good sample after it"
            return ExpectationResult(
                name, False, f"{detail}, but {cmd.tag} = {cmd.value!r} never seen in telemetry"
                f"{last}"
            )
        detail += f", in telemetry at t={rec.rel(hit.ts_ms):.2f} s"
    if exp.on_device:
        if cmd.device_value is None or not _close(cmd.device_value, cmd.value, exp.tolerance):
            return ExpectationResult(
                name, False, f"{detail}, but the device holds {cmd.device_value!r}"
            )
        detail += f", device holds {cmd.device_value!r}"
    return ExpectationResult(name, True, detail)


def _close(a: object, b: object, tolerance: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) == bool(b)
    try:
        return abs(float(a) - float(b)) <= tolerance  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _resource_growth(exp: ResourceGrowth, rec: Recording, name: str) -> ExpectationResult:
    growths = growth_per_run(rec.resources, exp.warmup)
    if not growths:
        return ExpectationResult(
            name, False, f"too few RSS/fd samples after the {exp.warmup:g} s warm-up"
        )
    parts = [
        f"run {g.run}: RSS {g.rss_start_mb:.1f} MB {g.rss_mb:+.1f} MB, "
        f"fds {g.fds_start:.0f} {g.fds:+.0f} ({g.samples} samples)"
        for g in growths
    ]
    bad = [g for g in growths if g.rss_mb > exp.max_rss_mb or g.fds > exp.max_fds]
    return ExpectationResult(name, not bad, "; ".join(parts))


def _max_gap(exp: MaxGap, rec: Recording, name: str) -> ExpectationResult:
    stamps: dict[str, list[float]] = defaultdict(list)
    for s in rec.samples:
        if s.tag.startswith(exp.tag_prefix) and s.quality == "good" \
                and _in_window(rec, s.ts_ms, exp.between):
            stamps[s.tag].append(rec.rel(s.ts_ms))
    if len(stamps) < exp.min_tags:
        return ExpectationResult(
            name, False, f"{len(stamps)} tags of {exp.tag_prefix}* had good samples, "
            f"expected at least {exp.min_tags}"
        )
    worst_tag, worst, at = "", 0.0, 0.0
    for tag, times in stamps.items():
        times.sort()
        edges = times
        if exp.between is not None:  # a tag silent at the window's edges is a gap too
            edges = [exp.between[0], *times, exp.between[1]]
        for a, b in itertools.pairwise(edges):
            if b - a > worst:
                worst_tag, worst, at = tag, b - a, a
    detail = f"largest gap {worst:.2f} s ({worst_tag} after t={at:.2f} s) over {len(stamps)} tags"
    if worst > exp.max:
        return ExpectationResult(name, False, f"{detail} > {exp.max:g} s")
    return ExpectationResult(name, True, detail)


def _firmware_update(exp: FirmwareUpdateExpect, rec: Recording, name: str) -> ExpectationResult:
    upd = next((f for f in rec.firmware if f.name == exp.update), None)
    if upd is None:
        return ExpectationResult(name, False, f"firmware update {exp.update} was never started")
    if upd.result is None:
        why = upd.error or "it did not end before the scenario did"
        return ExpectationResult(name, False, f"no result: {why}")
    res = upd.result
    took = float(res.get("seconds") or 0.0)
    detail = (f"{res.get('outcome')} {res.get('old_version')} -> {res.get('running_version')} "
              f"in {took:.2f} s ({res.get('resumes', 0)} resumes)")
    if res.get("outcome") != exp.outcome:
        extra = f": {res['detail']}" if res.get("detail") else ""
        return ExpectationResult(name, False, f"{detail}, expected {exp.outcome}{extra}")
    if exp.version is not None and res.get("running_version") != exp.version:
        return ExpectationResult(
            name, False, f"{detail}: the node runs {res.get('running_version')}, "
            f"expected {exp.version}"
        )
    if exp.within is not None and took > exp.within:
        return ExpectationResult(name, False, f"{detail}: took {took:.2f} s > {exp.within:g} s")
    if exp.resume_within is not None:
        assert upd.ended_at is not None
        after = [s for s in rec.samples if s.tag.startswith(f"{upd.device}.")
                 and s.quality == "good" and rec.rel(s.ts_ms) >= upd.ended_at]
        if not after:
            return ExpectationResult(
                name, False, f"{detail}, but no good reading of {upd.device} after it ended "
                f"(t={upd.ended_at:.2f} s)"
            )
        wait = rec.rel(after[0].ts_ms) - upd.ended_at
        if wait > exp.resume_within:
            return ExpectationResult(
                name, False, f"{detail}, but {upd.device}'s readings resumed only after "
                f"{wait:.2f} s > {exp.resume_within:g} s"
            )
        detail += f"; readings again {wait:.2f} s after it"
    return ExpectationResult(name, True, detail)
