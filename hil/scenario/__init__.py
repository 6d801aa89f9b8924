"""HIL scenarios: describe a production situation and its faults in YAML, run it against
the real gateway process on real protocols, get a verdict and a report."""

from hil.scenario.expectations import ExpectationResult, Recording
from hil.scenario.model import Scenario, load_scenario, scenario_files
from hil.scenario.report import write_html, write_junit
from hil.scenario.runner import FaultWindow, ScenarioResult, run_scenario

__all__ = [
    "ExpectationResult",
    "FaultWindow",
    "Recording",
    "Scenario",
    "ScenarioResult",
    "load_scenario",
    "run_scenario",
    "scenario_files",
    "write_html",
    "write_junit",
]
