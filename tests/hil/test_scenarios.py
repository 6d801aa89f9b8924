"""The shipped CI scenarios (hil/scenarios/*.yaml with ``ci: true``), one test each.

Each runs the real gateway process against simulators and Mosquitto; on failure the
assertion message is the scenario's pass/fail table. Reports land in the test's tmp dir.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hil.scenario import load_scenario, run_scenario, scenario_files, write_html, write_junit

pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.serial]

CI_SCENARIOS = [p for p in scenario_files() if load_scenario(p).ci]


def test_at_least_six_scenarios_ship_and_all_validate() -> None:
    files = scenario_files()
    assert len(files) >= 6
    names = {load_scenario(p).name for p in files}
    assert len(names) == len(files)


@pytest.mark.parametrize("path", CI_SCENARIOS, ids=lambda p: p.stem)
async def test_scenario(path: Path, tmp_path: Path) -> None:
    scenario = load_scenario(path)
    result = await run_scenario(scenario, str(path), tmp_path / scenario.name)
    write_junit([result], tmp_path / "junit.xml")
    write_html([result], tmp_path / "report.html")
    table = "\n".join(
        f"{'PASS' if r.passed else 'FAIL'} {r.name}: {r.detail}" for r in result.results
    )
    assert result.passed, f"{scenario.name}: {result.error or ''}\n{table}\n{tmp_path}"
