"""Reports: JUnit XML for CI and one self-contained HTML file (inline SVG, no scripts)."""

from __future__ import annotations

import html
import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hil.scenario.runner import ScenarioResult

__all__ = ["write_html", "write_junit"]

_W, _H, _PAD = 720, 180, 40


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


def _svg(res: ScenarioResult, tag: str) -> str:
    rec = res.recording
    assert rec is not None
    pts = [(rec.rel(s.ts_ms), s.value, s.quality) for s in rec.samples if s.tag == tag]
    num = [
        (t, float(v))
        for t, v, q in pts
        if q == "good" and isinstance(v, int | float) and math.isfinite(float(v))
    ]
    bad = [t for t, _, q in pts if q != "good"]
    t_end = max([res.scenario.duration] + [t for t, _ in num])
    t_lo = min([0.0] + [t for t, _ in num])
    lo = min((v for _, v in num), default=0.0)
    hi = max((v for _, v in num), default=1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1

    def x(t: float) -> float:
        return _PAD + (t - t_lo) / max(t_end - t_lo, 1e-9) * (_W - 2 * _PAD)

    def y(v: float) -> float:
        return _H - 20 - (v - lo) / (hi - lo) * (_H - 40)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'role="img" aria-label="{html.escape(tag)}">',
        f'<rect x="0" y="0" width="{_W}" height="{_H}" fill="#fff" stroke="#ccc"/>',
    ]
    for fw in res.faults:
        parts.append(
            f'<rect x="{x(fw.start):.1f}" y="10" width="{max(1.0, x(fw.end) - x(fw.start)):.1f}" '
            f'height="{_H - 30}" fill="#f5a623" fill-opacity="0.25">'
            f"<title>{html.escape(fw.label)}</title></rect>"
        )
        parts.append(
            f'<text x="{x(fw.start) + 2:.1f}" y="22" font-size="10" fill="#a0600a">'
            f"{html.escape(fw.label)}</text>"
        )
    if num:
        path = " ".join(
            f"{'M' if i == 0 else 'L'}{x(t):.1f},{y(v):.1f}" for i, (t, v) in enumerate(sorted(num))
        )
        parts.append(f'<path d="{path}" fill="none" stroke="#1f6fb2" stroke-width="1.2"/>')
    for t in bad:
        parts.append(
            f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{_H - 20}" y2="{_H - 14}" '
            'stroke="#c0392b"/>'
        )
    parts.append(
        f'<text x="4" y="{y(hi) + 4:.1f}" font-size="10">{hi:.4g}</text>'
        f'<text x="4" y="{y(lo):.1f}" font-size="10">{lo:.4g}</text>'
        f'<text x="{_PAD}" y="{_H - 2}" font-size="10">{t_lo:.0f} s</text>'
        f'<text x="{_W - _PAD - 20}" y="{_H - 2}" font-size="10">{t_end:.0f} s</text>'
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
                "<h3>signals</h3><p class='legend'>blue: good values; red ticks: "
                "samples that were not good; orange: fault windows. Time in seconds "
                "after the gateway's first birth (sample timestamps).</p>"
            )
            for tag in _plot_tags(res):
                out.append(f"<h4>{html.escape(tag)}</h4>{_svg(res, tag)}")
    out.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out), encoding="utf-8")
    return path
