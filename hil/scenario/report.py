"""Reports: JUnit XML for CI and one self-contained HTML file (inline SVG, no scripts)."""

from __future__ import annotations

import html
import itertools
import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hil.scenario.model import TagValue

if TYPE_CHECKING:
    from hil.scenario.runner import ScenarioResult

__all__ = ["write_html", "write_junit"]

_W, _H = 720, 200


def write_junit(results: Sequence[ScenarioResult], path: Path) -> Path:
    """One ``testsuite`` per scenario, one ``testcase`` per expectation."""
    suites = ET.Element("testsuites", name="chenxing-hil")
    for res in results:
        cases = res.results or []
        failures = sum(not r.passed for r in cases)
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=res.scenario.name,
            tests=str(max(1, len(cases))),
            failures=str(failures),
            errors=str(int(res.error is not None)),
            time=f"{res.wall_s:.2f}",
            file=res.file,
        )
        if res.error is not None:
            case = ET.SubElement(suite, "testcase", classname=res.scenario.name, name="run")
            ET.SubElement(case, "error", message=res.error[:200]).text = res.error
        for r in cases:
            case = ET.SubElement(suite, "testcase", classname=res.scenario.name, name=r.name)
            if not r.passed:
                ET.SubElement(case, "failure", message=r.detail).text = r.detail
            else:
                ET.SubElement(case, "system-out").text = r.detail
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
    return path


def _plot_tags(res: ScenarioResult) -> list[str]:
    tags = list(res.scenario.plots)
    for exp in res.scenario.expect:
        tag = getattr(exp, "tag", None)
        if tag and tag not in tags:
            tags.append(tag)
    return tags


#: a pause this many times the usual interval between samples breaks the line
_GAP_FACTOR = 3.0
#: and never less than this many seconds
_MIN_GAP_S = 1.0


def units_of(res: ScenarioResult) -> dict[str, str]:
    """``device.tag`` -> unit, from the gateway config the run wrote (and JSON births)."""
    units: dict[str, str] = {}
    config = Path(res.workdir) / "gateway.yaml" if res.workdir else None
    if config is not None and config.is_file():
        try:
            body = json.loads(config.read_text())
        except ValueError:
            body = {}
        for device in body.get("devices", []):
            for tag in device.get("tags", []):
                if isinstance(tag, dict) and tag.get("unit"):
                    units[f"{device.get('name')}.{tag.get('name')}"] = str(tag["unit"])
    if res.recording is not None:
        for birth in res.recording.births:
            for tag in birth.get("tags") or []:
                if isinstance(tag, dict) and tag.get("unit") and isinstance(tag.get("tag"), str):
                    units[tag["tag"]] = str(tag["unit"])
    return units


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]: steps of 1, 2 or 5 times a power of ten."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)  # no "-0"
        value += step
    return ticks


def _tick_text(value: float) -> str:
    return f"{value:.6g}"


def segments(points: Sequence[tuple[float, object, str]]) -> list[list[tuple[float, float]]]:
    """The good numeric points as runs to draw as lines: a sample that is not good, or a
    pause much longer than the usual interval (an outage), ends a run."""
    ordered = sorted(points, key=lambda p: p[0])
    times = [t for t, _, _ in ordered]
    steps = sorted(b - a for a, b in itertools.pairwise(times) if b > a)
    usual = steps[len(steps) // 2] if steps else 0.0
    gap = max(_MIN_GAP_S, _GAP_FACTOR * usual)
    runs: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    last_t: float | None = None
    for t, value, quality in ordered:
        number = float(value) if quality == "good" and isinstance(value, int | float) \
            else math.nan  # bools are ints: 0 and 1
        usable = math.isfinite(number)
        if not usable or (last_t is not None and t - last_t > gap):
            if current:
                runs.append(current)
            current = []
        if usable:
            current.append((t, number))
        last_t = t
    if current:
        runs.append(current)
    return runs


def bad_periods(points: Sequence[tuple[float, object, str]]) -> list[tuple[float, float, str]]:
    """(from, to, quality) of the stretches of samples that were not good: from the first
    such sample to the next good one (or the last sample)."""
    ordered = sorted(points, key=lambda p: p[0])
    out: list[tuple[float, float, str]] = []
    start: tuple[float, str] | None = None
    for t, _, quality in ordered:
        if quality != "good" and start is None:
            start = (t, quality)
        elif quality == "good" and start is not None:
            out.append((start[0], t, start[1]))
            start = None
    if start is not None:
        out.append((start[0], ordered[-1][0], start[1]))
    return out


def _bands(res: ScenarioResult, tag: str) -> list[tuple[float, float, float, float, str]]:
    """(t from, t to, low, high, label) of each tag_value expectation on ``tag``."""
    out = []
    for exp in res.scenario.expect:
        if not isinstance(exp, TagValue) or exp.tag != tag:
            continue
        value, tolerance = float(exp.value), float(exp.tolerance)
        between = exp.between or (0.0, res.scenario.duration)
        out.append((between[0], between[1], value - tolerance, value + tolerance,
                    f"{value:g} ± {tolerance:g}"))
    return out


def _svg(res: ScenarioResult, tag: str, unit: str = "") -> str:
    rec = res.recording
    assert rec is not None
    pts = [(rec.rel(s.ts_ms), s.value, s.quality) for s in rec.samples if s.tag == tag]
    runs = segments(pts)
    num = [p for run in runs for p in run]
    bands = _bands(res, tag)
    bad = bad_periods(pts)
    t_end = max([res.scenario.duration] + [t for t, _, _ in pts])
    t_lo = min([0.0] + [t for t, _, _ in pts])
    values = [v for _, v in num] + [b[2] for b in bands] + [b[3] for b in bands]
    lo, hi = min(values, default=0.0), max(values, default=1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    margin = (hi - lo) * 0.05
    lo, hi = lo - margin, hi + margin
    left, right, top, bottom = 64, _W - 12, 12, _H - 34

    def x(t: float) -> float:
        return left + (t - t_lo) / max(t_end - t_lo, 1e-9) * (right - left)

    def y(v: float) -> float:
        return bottom - (v - lo) / (hi - lo) * (bottom - top)

    label = f"{tag} ({unit})" if unit else tag
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'role="img" aria-label="{html.escape(label)}">',
        f'<rect x="0" y="0" width="{_W}" height="{_H}" fill="#fff" stroke="#ccc"/>',
    ]
    for value in nice_ticks(lo, hi):  # value grid and ticks
        parts.append(f'<line x1="{left}" x2="{right}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
                     'stroke="#eee"/>'
                     f'<text x="{left - 4}" y="{y(value) + 3:.1f}" font-size="10" '
                     f'text-anchor="end">{_tick_text(value)}</text>')
    for second in nice_ticks(t_lo, t_end, 8):
        parts.append(f'<line x1="{x(second):.1f}" x2="{x(second):.1f}" y1="{bottom}" '
                     f'y2="{bottom + 4}" stroke="#888"/>'
                     f'<text x="{x(second):.1f}" y="{bottom + 14}" font-size="10" '
                     f'text-anchor="middle">{_tick_text(second)}</text>')
    for fw in res.faults:
        parts.append(
            f'<rect x="{x(fw.start):.1f}" y="{top}" '
            f'width="{max(1.0, x(fw.end) - x(fw.start)):.1f}" '
            f'height="{bottom - top}" fill="#f5a623" fill-opacity="0.25">'
            f"<title>{html.escape(fw.label)}</title></rect>"
            f'<text x="{x(fw.start) + 2:.1f}" y="{top + 10}" font-size="10" fill="#a0600a">'
            f"{html.escape(fw.label)}</text>"
        )
    for start, end, quality in bad:
        parts.append(
            f'<rect x="{x(start):.1f}" y="{top}" width="{max(1.0, x(end) - x(start)):.1f}" '
            f'height="{bottom - top}" fill="#c0392b" fill-opacity="0.12">'
            f"<title>{html.escape(quality)} from {start:.1f} s to {end:.1f} s</title></rect>"
        )
    for start, end, low, high, text in bands:
        parts.append(
            f'<rect x="{x(start):.1f}" y="{y(high):.1f}" '
            f'width="{max(1.0, x(end) - x(start)):.1f}" '
            f'height="{max(1.0, y(low) - y(high)):.1f}" fill="#2e9d4f" fill-opacity="0.15" '
            f'stroke="#2e9d4f" stroke-dasharray="4 2"><title>expected {html.escape(text)}'
            f"</title></rect>"
            f'<text x="{x(end) - 2:.1f}" y="{y(high) - 2:.1f}" font-size="10" fill="#2e7d32" '
            f'text-anchor="end">{html.escape(text)}</text>'
        )
    for run in runs:
        if len(run) == 1:
            t, v = run[0]
            parts.append(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="1.5" fill="#1f6fb2"/>')
            continue
        path = " ".join(f"{'M' if i == 0 else 'L'}{x(t):.1f},{y(v):.1f}"
                        for i, (t, v) in enumerate(run))
        parts.append(f'<path d="{path}" fill="none" stroke="#1f6fb2" stroke-width="1.2"/>')
    parts.append(
        f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="#888"/>'
        f'<line x1="{left}" x2="{left}" y1="{top}" y2="{bottom}" stroke="#888"/>'
        f'<text x="{(left + right) / 2:.1f}" y="{_H - 4}" font-size="10" text-anchor="middle">'
        "time after the first birth (s)</text>"
        f'<text transform="translate(12,{(top + bottom) / 2:.1f}) rotate(-90)" font-size="10" '
        f'text-anchor="middle">{html.escape(unit or "value")}</text>'
        "</svg>"
    )
    return "".join(parts)


_CSS = """body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
.pass{color:#1a7f37;font-weight:bold}.fail{color:#c0392b;font-weight:bold}
h2{margin-top:2em}.legend{font-size:90%;color:#555}"""


def write_html(results: Sequence[ScenarioResult], path: Path) -> Path:
    """A self-contained HTML report: verdicts, pass/fail tables, plots with fault windows."""
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>chenxing-hil report</title>",
        f"<style>{_CSS}</style></head><body><h1>chenxing-hil report</h1>",
        "<table><tr><th>scenario</th><th>verdict</th><th>expectations</th><th>wall time</th></tr>",
    ]
    for res in results:
        ok = sum(r.passed for r in res.results)
        verdict = "PASS" if res.passed else "FAIL"
        out.append(
            f"<tr><td><a href='#{res.scenario.name}'>{html.escape(res.scenario.name)}</a>"
            f"</td><td class='{verdict.lower()}'>{verdict}</td>"
            f"<td>{ok}/{len(res.results)}</td><td>{res.wall_s:.1f} s</td></tr>"
        )
    out.append("</table>")
    for res in results:
        name = html.escape(res.scenario.name)
        out.append(
            f"<h2 id='{name}'>{name}: "
            f"<span class='{'pass' if res.passed else 'fail'}'>"
            f"{'PASS' if res.passed else 'FAIL'}</span></h2>"
        )
        out.append(
            f"<p>{html.escape(res.scenario.description)}</p>"
            f"<p class='legend'>file {html.escape(res.file)}, seed {res.scenario.seed}, "
            f"time scale {res.scenario.time_scale:g}, duration "
            f"{res.scenario.duration:g} s, work dir {html.escape(res.workdir)}</p>"
        )
        if res.error:
            out.append(f"<p class='fail'>run error</p><pre>{html.escape(res.error)}</pre>")
        out.append("<table><tr><th>expectation</th><th>result</th><th>why</th></tr>")
        for r in res.results:
            cls = "pass" if r.passed else "fail"
            out.append(
                f"<tr><td>{html.escape(r.name)}</td><td class='{cls}'>"
                f"{cls.upper()}</td><td>{html.escape(r.detail)}</td></tr>"
            )
        out.append("</table>")
        if res.faults:
            out.append(
                "<h3>fault windows</h3><table><tr><th>fault</th><th>from</th><th>to</th></tr>"
            )
            for fw in res.faults:
                out.append(
                    f"<tr><td>{html.escape(fw.label)}</td><td>{fw.start:.1f} s</td>"
                    f"<td>{fw.end:.1f} s</td></tr>"
                )
            out.append("</table>")
        if res.recording is not None:
            out.append(
                "<h3>signals</h3><p class='legend'>blue: good values (the line breaks where "
                "values stopped or were not good); red: samples that were not good; orange: "
                "fault windows; green: the band an expectation allows. Time in seconds after "
                "the gateway's first birth (sample timestamps).</p>"
            )
            units = units_of(res)
            for tag in _plot_tags(res):
                unit = units.get(tag, "")
                title = f"{tag} ({unit})" if unit else tag
                out.append(f"<h4>{html.escape(title)}</h4>{_svg(res, tag, unit)}")
    out.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out), encoding="utf-8")
    return path
