"""The HTML report's charts: lines break across outages and bad samples, an expectation's
tolerance band is drawn, axes have round ticks (no "-0") and the tag's unit."""

from __future__ import annotations

import json
import re
from pathlib import Path

from hil.recorder import ReceivedSample
from hil.scenario import Recording, ScenarioResult, load_scenario
from hil.scenario.report import _svg, bad_periods, nice_ticks, segments, units_of

SCENARIO = """\
name: chart
description: one meter
duration: 30
devices:
  - {kind: modbus_meter, name: meter}
expect:
  - {type: tag_value, tag: meter.voltage, value: 230, tolerance: 10, between: [20, 30]}
"""


def sample(t: float, value: object, quality: str = "good") -> ReceivedSample:
    return ReceivedSample("meter.voltage", value, int(t * 1000), quality, 0, 0)


def test_a_pause_or_a_bad_sample_breaks_the_line() -> None:
    points = [(t / 2, 230.0, "good") for t in range(10)]           # 0 .. 4.5 s every 0.5 s
    points += [(16.0 + t / 2, 231.0, "good") for t in range(4)]     # back after an outage
    points += [(18.0, None, "bad"), (18.5, 232.0, "good"), (19.0, 232.0, "good")]
    runs = segments(points)
    assert [(run[0][0], run[-1][0]) for run in runs] == [(0.0, 4.5), (16.0, 17.5), (18.5, 19.0)]
    assert bad_periods(points) == [(18.0, 18.5, "bad")]


def test_ticks_are_round_and_never_negative_zero() -> None:
    assert nice_ticks(-0.4, 30.2, 6) == [0.0, 10.0, 20.0, 30.0]
    assert nice_ticks(-0.4, 30.2, 8) == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0]
    assert nice_ticks(219.5, 241.0) == [220.0, 225.0, 230.0, 235.0, 240.0]
    assert all(str(t) != "-0.0" for t in nice_ticks(-1e-12, 1.0))


def test_the_chart_has_the_band_the_unit_and_broken_lines(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    scenario = load_scenario(path)
    (tmp_path / "gateway.yaml").write_text(json.dumps({"devices": [
        {"name": "meter", "tags": [{"name": "voltage", "unit": "V"}]}]}))
    samples = [sample(t, 230.0) for t in range(0, 8)] + [sample(t, 229.0) for t in range(19, 30)]
    rec = Recording(0.0, [], [], [], samples)
    res = ScenarioResult(scenario, str(path), [], [], rec, workdir=str(tmp_path))
    assert units_of(res) == {"meter.voltage": "V"}
    svg = _svg(res, "meter.voltage", "V")
    assert svg.count("<path ") == 2  # the outage between 7 s and 19 s is not bridged
    assert "230 ± 10" in svg and 'fill="#2e9d4f"' in svg
    assert ">V</text>" in svg and "time after the first birth (s)" in svg
    ticks = re.findall(r'text-anchor="middle">(-?[\d.]+)</text>', svg)
    assert "0" in ticks and "-0" not in ticks
