"""Evaluate a scenario's expectations against what the recorder received."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from hil.recorder import ReceivedSample
from hil.scenario.model import (
    DeviceDeathRebirth,
    Expectation,
    LatencyP99,
    ModelAlarm,
    NoSequenceGaps,
    TagQuality,
    TagValue,
)

__all__ = ["ExpectationResult", "Recording", "describe", "evaluate"]


@dataclass(frozen=True, slots=True)
class Recording:
    """What arrived over MQTT, with ``t0`` (epoch seconds of the first birth) as time zero."""

    t0: float
    births: list[dict[str, Any]]
    deaths: list[dict[str, Any]]
    data_messages: list[dict[str, Any]]
    samples: list[ReceivedSample]

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
            return f"model alarm {exp.tag} >= {exp.threshold:g}{within}"
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
                if s.quality == "good" and float(s.value) >= exp.threshold
            ]
            if not hits:
                return ExpectationResult(
                    name, False, f"no value of {exp.tag} >= {exp.threshold:g} arrived"
                )
            return ExpectationResult(name, True, f"raised at t={rec.rel(hits[0].ts_ms):.2f} s")
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
        problems.append(f"{len(by_session)} gateway runs, expected {exp.sessions}")
    if problems:
        return ExpectationResult(name, False, "; ".join(problems))
    return ExpectationResult(name, True, f"{total} data messages in {len(by_session)} runs")


def _death_rebirth(exp: DeviceDeathRebirth, rec: Recording, name: str) -> ExpectationResult:
    down_at: float | None = None
    was_up = False  # a device is reported down before its first connect: not a death
    for b in rec.births:
        if not _in_window(rec, b["ts"], exp.between):
            continue
        state = {d["name"]: d["state"] for d in b.get("devices", [])}.get(exp.device)
        if state is None:
            continue
        if state == "up" and down_at is None:
            was_up = True
        elif state != "up" and was_up and down_at is None:
            down_at = rec.rel(b["ts"])
        elif state == "up" and down_at is not None:
            return ExpectationResult(
                name, True, f"down at t={down_at:.2f} s, up again at t={rec.rel(b['ts']):.2f} s"
            )
    if down_at is None:
        return ExpectationResult(name, False, f"no birth reported {exp.device} down")
    return ExpectationResult(name, False, f"{exp.device} down at t={down_at:.2f} s, never up again")
